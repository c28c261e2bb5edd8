"""Errors as data: strict JSON whatever the offending value."""

from __future__ import annotations

import json
import math

import numpy as np

from levalign.errors import InvalidInput, Rejected


def test_non_finite_values_are_strings_in_strict_json():
    err = InvalidInput("x", field="f", value=math.nan, details={"a": [math.inf, np.int64(3)]})
    data = err.to_dict()
    # allow_nan=False raises on NaN or Infinity: the output is JSON as RFC 8259 defines it
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text) == {
        "kind": "invalid_input",
        "message": "x",
        "field": "f",
        "value": "nan",
        "details": {"a": ["inf", 3]},
    }


def test_a_non_json_value_is_its_repr():
    assert Rejected("no", value=(1, 2)).to_dict()["value"] == [1, 2]
    assert Rejected("no", value=np.zeros(2)).to_dict()["value"] == "array([0., 0.])"
