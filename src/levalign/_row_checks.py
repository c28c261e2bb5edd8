"""Checks of a follower table at the edge, in plain Python and numpy (no kernel).

:func:`explain_invalid_rows` says, for every row a kernel marked ``INVALID_ROW``, which field
made it invalid and why, from the row's own values; the kernels keep their single flag.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from levalign._codes import R_INVALID_ROW

__all__ = ["INVALID_COLUMNS", "explain_invalid_rows"]

INVALID_COLUMNS = ("invalid_field", "invalid_reason")
"""Result columns naming, for an ``invalid_row`` follower, the field at fault and why."""

FloatArray = NDArray[np.float64]
Mask = NDArray[np.bool_]


def _not_finite_positive(x: FloatArray) -> Mask:
    return ~(np.isfinite(x) & (x > 0.0))


def _not_finite_nonnegative(x: FloatArray) -> Mask:
    return ~(np.isfinite(x) & (x >= 0.0))


def _set_and_not_positive(x: FloatArray) -> Mask:
    return np.asarray(x <= 0.0)  # NaN: not set


_Check = tuple[str, Callable[[Mapping[str, FloatArray]], Mask], str]

# The kernels' row checks (levalign._normalize_kernel._valid_row, the de-risk kernel), in the
# kernels' order: the first that fails names the field.
_FLOAT_CHECKS: tuple[_Check, ...] = (
    ("equity", lambda f: _not_finite_positive(f["equity"]), "must be a positive finite number"),
    ("position", lambda f: ~np.isfinite(f["position"]), "must be a finite number"),
    (
        "entry_price",
        lambda f: (f["position"] != 0.0) & _not_finite_positive(f["entry_price"]),
        "must be a positive finite number when position is not 0",
    ),
    (
        "collateral",
        lambda f: _not_finite_nonnegative(f["collateral"]),
        "must be a non-negative finite number",
    ),
    (
        "available_balance",
        lambda f: ~(f["available_balance"] >= 0.0),
        "must be a non-negative number (leave it out to use equity less isolated collateral)",
    ),
    (
        "other_notional",
        lambda f: _not_finite_nonnegative(f["other_notional"]),
        "must be a non-negative finite number",
    ),
    (
        "other_maintenance_margin",
        lambda f: _not_finite_nonnegative(f["other_maintenance_margin"]),
        "must be a non-negative finite number",
    ),
    ("scale", lambda f: _not_finite_nonnegative(f["scale"]), "must be a non-negative number"),
    (
        "min_liq_distance",
        lambda f: (
            ~np.isnan(f["min_liq_distance"])
            & ~((f["min_liq_distance"] >= 0.0) & (f["min_liq_distance"] < 1.0))
        ),
        "must be a fraction of the price in [0, 1)",
    ),
    ("residual", lambda f: ~np.isfinite(f["residual"]), "must be a finite number"),
    (
        "max_liq_probability",
        lambda f: (
            ~np.isnan(f["max_liq_probability"])
            & ~((f["max_liq_probability"] > 0.0) & (f["max_liq_probability"] <= 1.0))
        ),
        "must be a probability in (0, 1]",
    ),
)
_CAP_CHECKS: tuple[_Check, ...] = (
    ("max_leverage", lambda f: _set_and_not_positive(f["max_leverage"]), "must be positive"),
    (
        "max_position_leverage",
        lambda f: _set_and_not_positive(f["max_position_leverage"]),
        "must be positive",
    ),
    ("max_notional", lambda f: np.asarray(f["max_notional"] < 0.0), "must not be negative"),
    (
        "leverage_setting",
        lambda f: _set_and_not_positive(f["leverage_setting"]),
        "must be positive",
    ),
    (
        "derisk_distance",
        lambda f: (
            ~np.isnan(f["derisk_distance"])
            & ~((f["derisk_distance"] >= 0.0) & (f["derisk_distance"] < 1.0))
        ),
        "must be a fraction of the price in [0, 1)",
    ),
)


class _CohortColumns(Protocol):
    @property
    def floats(self) -> Mapping[str, NDArray[Any]]: ...

    @property
    def codes(self) -> Mapping[str, NDArray[Any]]: ...


def explain_invalid_rows(cohort: _CohortColumns, reasons: NDArray[Any]) -> dict[str, NDArray[Any]]:
    """``invalid_field`` and ``invalid_reason`` of every row whose ``reasons`` has INVALID_ROW.

    Parameters
    ----------
    cohort
        The cohort (:class:`levalign.normalize.Cohort`): float columns and categorical code
        columns (``-1``: a value outside the valid ones).
    reasons
        The result's reason bits.

    Returns
    -------
    dict
        The two :data:`INVALID_COLUMNS` as object arrays (``None`` on valid rows); empty when
        no row is invalid, so that a valid cohort pays nothing.
    """
    from levalign.normalize import DERISK_ACTIONS, MARGIN_MODES, MODES, POLICIES

    floats, codes = cohort.floats, cohort.codes
    code_names = {
        "mode": MODES,
        "margin_mode": MARGIN_MODES,
        "min_size_policy": POLICIES,
        "derisk": DERISK_ACTIONS,
    }
    invalid = (np.asarray(reasons) & R_INVALID_ROW) != 0
    if not invalid.any():
        return {}
    n = invalid.shape[0]
    field = np.full(n, None, dtype=object)
    reason = np.full(n, None, dtype=object)
    todo = invalid.copy()
    checks: list[tuple[str, Mask, str]] = [(n_, fn(floats), why) for n_, fn, why in _FLOAT_CHECKS]
    for name, valid_names in code_names.items():
        if name not in codes:
            continue
        checks.append(
            (name, codes[name] < 0, f"has an unknown value; valid: {', '.join(valid_names)}")
        )
    checks += [(n_, fn(floats), why) for n_, fn, why in _CAP_CHECKS]
    for name, bad, why in checks:
        hit = todo & bad
        if hit.any():
            field[hit] = name
            reason[hit] = f"{name} {why}"
            todo &= ~hit
    if todo.any():  # every value in range: the buffer the kernel derived was not
        field[todo] = "min_liq_distance"
        reason[todo] = (
            "min_liq_distance is not set and the buffer it defaults to (the lead's liquidation "
            "distance, or what max_liq_probability requires) is not a fraction in [0, 1): set "
            "min_liq_distance"
        )
    return {"invalid_field": field, "invalid_reason": reason}
