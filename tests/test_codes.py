"""The shared codes: one classification of lead changes, names matching the schemas."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import get_args

import pytest

from levalign import _codes as codes
from levalign import schemas


@pytest.mark.parametrize(
    ("before", "after", "kind", "side", "phi"),
    [
        # flat to long 2: an open on the long side
        (0.0, 2.0, codes.EV_OPEN, 1.0, math.nan),
        # long 2 to long 3: an increase
        (2.0, 3.0, codes.EV_INCREASE, 1.0, math.nan),
        # short 4 to short 1: a reduce cutting 1 - 1/4 = 0.75, side the short's
        (-4.0, -1.0, codes.EV_REDUCE, -1.0, 0.75),
        # short 4 to flat: a close on the short side
        (-4.0, 0.0, codes.EV_CLOSE, -1.0, math.nan),
        # long 1 to short 2: a flip, side the new short
        (1.0, -2.0, codes.EV_FLIP, -1.0, math.nan),
        # no change, flat: no side
        (0.0, 0.0, codes.EV_NONE, 0.0, math.nan),
        # no change, long
        (5.0, 5.0, codes.EV_NONE, 1.0, math.nan),
    ],
)
def test_classify_change_by_hand(
    before: float, after: float, kind: int, side: float, phi: float
) -> None:
    got_kind, got_side, got_phi = codes.classify_change(before, after)
    assert (got_kind, got_side) == (kind, side)
    assert got_phi == phi or (math.isnan(got_phi) and math.isnan(phi))


def test_schema_literals_are_the_code_names() -> None:
    assert get_args(schemas.SizingMode) == codes.MODES
    assert get_args(schemas.MarginMode) == codes.MARGIN_MODES
    assert get_args(schemas.MinSizePolicy) == codes.POLICIES
    assert get_args(schemas.DeriskAction) == codes.DERISK_ACTIONS


def test_reason_bits_are_distinct_powers_of_two() -> None:
    values = [int(r) for r in codes.Reason]
    assert values == [1 << k for k in range(len(values))]


def test_kernels_import_no_risk_code_and_set_no_llvm_option() -> None:
    script = (
        "import sys\n"
        "import levalign._normalize_kernel as nk, levalign._derisk_kernel\n"
        "print(sorted(m for m in sys.modules if m.startswith('levalign.risk')))\n"
        "print(nk._allow_wide_vectorization.cache_info().currsize)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout.split("\n")
    assert out[0] == "[]"
    assert out[1] == "0"
