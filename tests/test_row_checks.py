"""Follower ids are checked before any sizing; every invalid row says which field and why."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from levalign import _codes as nk
from levalign._columns import checked_ids
from levalign._row_checks import explain_invalid_rows
from levalign.errors import InvalidInput
from levalign.markets import load_markets
from levalign.normalize import Cohort, normalize

SYMBOL = "BTC/USDT:USDT"
EVENT = {
    "event_id": "e1",
    "symbol": SYMBOL,
    "price": 20_000.0,
    "lead_equity": 10_000.0,
    "lead_position_before": 0.0,
    "lead_position_after": 5.0,
}


MARKETS = load_markets("binance")


@pytest.fixture(scope="module")
def markets():
    return MARKETS


@pytest.mark.parametrize(
    ("ids", "field", "message"),
    [
        (["a", "b", "a"], "followers[2].id", r"id 'a' is given twice \(rows 0 and 2\)"),
        (["a", None], "followers[1].id", "is missing or empty"),
        ([1.0, math.nan], "followers[1].id", "is missing or empty"),
        (["a", "  "], "followers[1].id", "is missing or empty"),
        (["", "b"], "followers[0].id", "is missing or empty"),
        # 1 and "1" print alike in every output: one follower twice
        (["x", 1, "1"], "followers[2].id", r"id '1' is given twice \(rows 1 and 2\)"),
        ([7, 8, 7], "followers[2].id", r"id 7 is given twice"),
    ],
)
def test_bad_ids_are_refused_naming_the_row(ids, field, message):
    with pytest.raises(InvalidInput, match=message) as info:
        checked_ids(np.asarray(ids, dtype=object))
    assert info.value.field == field


def test_good_ids_pass_in_every_form():
    checked_ids(np.array(["a", "b"]))
    checked_ids(np.array([1, 2, 3]))
    checked_ids(pa.chunked_array([["a"], ["b"]]))
    checked_ids(np.array([], dtype=object))


def test_normalize_refuses_a_repeated_id_before_sizing(markets):
    # two rows for "a" would give follower "a" two orders
    with pytest.raises(InvalidInput, match=r"follower id 'a' is given twice \(rows 0 and 1\)"):
        normalize(EVENT, [{"id": "a", "equity": 1_000}, {"id": "a", "equity": 2_000}], markets)
    with pytest.raises(InvalidInput, match=r"follower id of row 1 is missing or empty"):
        normalize(EVENT, pa.table({"id": ["a", None], "equity": [1.0, 2.0]}), markets)


@pytest.mark.parametrize(
    ("column", "value", "field", "reason"),
    [
        ("equity", -5.0, "equity", "equity must be a positive finite number"),
        ("equity", math.nan, "equity", "equity must be a positive finite number"),
        ("position", math.inf, "position", "position must be a finite number"),
        ("entry_price", math.nan, "entry_price", "when position is not 0"),
        ("collateral", -1.0, "collateral", "collateral must be a non-negative"),
        ("available_balance", -1.0, "available_balance", "must be a non-negative number"),
        ("other_notional", math.inf, "other_notional", "non-negative finite"),
        ("scale", -1.0, "scale", "scale must be a non-negative number"),
        ("min_liq_distance", 1.5, "min_liq_distance", r"in \[0, 1\)"),
        ("max_liq_probability", 2.0, "max_liq_probability", r"probability in \(0, 1\]"),
        ("mode", "propotional", "mode", "unknown value; valid: proportional, fixed_notional"),
        ("margin_mode", "isolatd", "margin_mode", "valid: isolated, cross"),
        ("max_leverage", 0.0, "max_leverage", "must be positive"),
        ("max_notional", -1.0, "max_notional", "must not be negative"),
        ("leverage_setting", -2.0, "leverage_setting", "must be positive"),
    ],
)
def test_an_invalid_row_names_its_field_and_reason(markets, column, value, field, reason):
    # Arrange: a valid follower beside one with a single bad field (a position where the
    # entry price is the fault)
    good = {"id": "ok", "equity": 1_000.0, "position": 0.0, column: _VALUES[column][0]}
    bad = {**good, "id": "bad", column: value}
    if column == "entry_price":
        bad["position"] = 0.1
    rows = pa.table({k: [good[k], bad[k]] for k in good})
    # Act
    ok, out = normalize(EVENT, rows, markets).orders()
    # Assert
    assert out["reasons"] == ["invalid_row"]
    assert out["invalid_field"] == field
    assert re.search(reason, out["invalid_reason"])
    assert ok["invalid_field"] is None
    assert ok["invalid_reason"] is None


def test_a_valid_cohort_has_no_invalid_columns_to_pay_for(markets):
    result = normalize(EVENT, [{"id": "a", "equity": 1_000.0}], markets)
    assert "invalid_field" not in result.columns
    assert result.orders()[0]["invalid_field"] is None


_VALUES: dict[str, list[Any]] = {
    "equity": [1_000.0, 0.0, -1.0, math.nan, math.inf],
    "position": [0.0, 0.2, -0.2, math.nan],
    "entry_price": [math.nan, 19_000.0, -1.0],
    "collateral": [0.0, 50.0, -1.0, math.inf],
    "available_balance": [500.0, -1.0, math.nan, math.inf],
    "other_notional": [0.0, -1.0, math.inf],
    "scale": [1.0, 0.0, -1.0, math.nan],
    "min_liq_distance": [0.05, 0.0, 1.0, -0.1, math.nan],
    "residual": [0.0, math.inf],
    "max_leverage": [math.inf, 5.0, 0.0, -1.0],
    "max_liq_probability": [math.nan, 2.0],
    "max_notional": [math.inf, 0.0, -1.0],
    "leverage_setting": [math.nan, 10.0, 0.0, -2.0],
    "mode": ["proportional", "fixed_notional", "nope"],
    "margin_mode": ["isolated", "cross", "nope"],
}


@given(
    st.lists(
        st.fixed_dictionaries({k: st.sampled_from(v) for k, v in _VALUES.items()}),
        min_size=1,
        max_size=12,
    )
)
def test_the_python_checks_and_the_kernel_agree_on_every_row(rows):
    # Two implementations: the kernel's INVALID_ROW flag against the plain checks run on
    # every row. With min_liq_distance NaN the buffer is the lead's distance (9.6%, valid), so
    # a row is invalid exactly when a stated value fails a check.
    table = pa.Table.from_pylist([{"id": str(i), **r} for i, r in enumerate(rows)])
    result = normalize(EVENT, table, MARKETS)
    kernel_invalid = (result["reasons"] & nk.R_INVALID_ROW) != 0
    everything = np.full(len(rows), nk.R_INVALID_ROW, dtype=np.uint32)
    fields = explain_invalid_rows(Cohort.from_table(table), everything)["invalid_reason"]
    python_invalid = np.array(["is not set and the buffer" not in f for f in fields])
    np.testing.assert_array_equal(kernel_invalid, python_invalid)
