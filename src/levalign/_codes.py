"""The codes kernels and their callers share, each defined once.

Sizing modes, margin modes, min-size policies, de-risk actions and lead event kinds are small
integers in the cohort's code columns and in the kernels; their names (the tuples below, in
code order) are what users write. Reason bits are the ``reasons`` column of a result.
:func:`classify_change` is the one classification of a lead's position change (futures and
options alike).

Pure Python: the numba kernels read these module constants as compile-time constants.
"""

from __future__ import annotations

import enum
import math

__all__ = [
    "DERISK_ACTIONS",
    "EVENT_KINDS",
    "MARGIN_MODES",
    "MODES",
    "POLICIES",
    "Reason",
    "classify_change",
]

# ---- sizing modes (cohort column ``mode``)
MODES = (
    "proportional",
    "fixed_notional",
    "target_leverage",
    "risk_constant",
    "vol_target",
    "optimal",
)
M_PROPORTIONAL, M_FIXED, M_TARGET_LEV, M_RISK, M_VOL, M_OPTIMAL = range(len(MODES))

# ---- margin modes (cohort column ``margin_mode``)
MARGIN_MODES = ("isolated", "cross")
MM_ISOLATED, MM_CROSS = range(len(MARGIN_MODES))

# ---- min-size policies (cohort column ``min_size_policy``)
POLICIES = ("skip", "round_up", "accumulate")
P_SKIP, P_ROUND_UP, P_ACCUMULATE = range(len(POLICIES))

# ---- de-risk actions (cohort column ``derisk``)
DERISK_ACTIONS = ("reduce", "add_margin")
DR_REDUCE, DR_ADD_MARGIN = range(len(DERISK_ACTIONS))

# ---- lead event kinds
EVENT_KINDS = ("none", "open", "increase", "reduce", "close", "flip", "margin")
EV_NONE, EV_OPEN, EV_INCREASE, EV_REDUCE, EV_CLOSE, EV_FLIP, EV_MARGIN = range(len(EVENT_KINDS))
#: the kinds that open or add exposure (sized by the sizing modes)
OPENING_KINDS = (EV_OPEN, EV_INCREASE, EV_FLIP)


class Reason(enum.IntFlag):
    """Why a follower's order is what it is (bits of the ``reasons`` column), pipeline order."""

    INVALID_ROW = 1 << 0
    SYMBOL_NOT_ALLOWED = 1 << 1
    MISSING_PARAMETER = 1 << 2
    RISK_MODEL_REQUIRED = 1 << 3
    POSITION_LEVERAGE = 1 << 4
    TIER_LIMIT = 1 << 5
    ACCOUNT_LEVERAGE = 1 << 6
    LIQ_BUFFER = 1 << 7
    AVAILABLE_MARGIN = 1 << 8
    MAX_NOTIONAL = 1 << 9
    LOT_ROUNDING = 1 << 10
    BELOW_MIN_AMOUNT = 1 << 11
    BELOW_MIN_COST = 1 << 12
    SKIPPED = 1 << 13
    ROUNDED_UP = 1 << 14
    ACCUMULATED = 1 << 15
    NOTHING_TO_CLOSE = 1 << 16
    AT_TARGET = 1 << 17
    MARGIN_TOPUP = 1 << 18
    FLIPPED = 1 << 19
    NO_LEAD_CHANGE = 1 << 20
    VEGA_LIMIT = 1 << 21  # options only (levalign.risk.options): max_vega bound the order
    DERISK = 1 << 22  # price moved the follower inside its derisk_distance (derisk())

    @classmethod
    def names(cls, bits: int) -> list[str]:
        """Lower-case names of the bits set in ``bits``, in pipeline order."""
        return [str(r.name).lower() for r in cls if r.value & bits]


# The bits as plain ints, for the numba kernels (which read module-level ints as constants)
R_INVALID_ROW = int(Reason.INVALID_ROW)
R_SYMBOL_NOT_ALLOWED = int(Reason.SYMBOL_NOT_ALLOWED)
R_MISSING_PARAMETER = int(Reason.MISSING_PARAMETER)
R_RISK_MODEL_REQUIRED = int(Reason.RISK_MODEL_REQUIRED)
R_POSITION_LEVERAGE = int(Reason.POSITION_LEVERAGE)
R_TIER_LIMIT = int(Reason.TIER_LIMIT)
R_ACCOUNT_LEVERAGE = int(Reason.ACCOUNT_LEVERAGE)
R_LIQ_BUFFER = int(Reason.LIQ_BUFFER)
R_AVAILABLE_MARGIN = int(Reason.AVAILABLE_MARGIN)
R_MAX_NOTIONAL = int(Reason.MAX_NOTIONAL)
R_LOT_ROUNDING = int(Reason.LOT_ROUNDING)
R_BELOW_MIN_AMOUNT = int(Reason.BELOW_MIN_AMOUNT)
R_BELOW_MIN_COST = int(Reason.BELOW_MIN_COST)
R_SKIPPED = int(Reason.SKIPPED)
R_ROUNDED_UP = int(Reason.ROUNDED_UP)
R_ACCUMULATED = int(Reason.ACCUMULATED)
R_NOTHING_TO_CLOSE = int(Reason.NOTHING_TO_CLOSE)
R_AT_TARGET = int(Reason.AT_TARGET)
R_MARGIN_TOPUP = int(Reason.MARGIN_TOPUP)
R_FLIPPED = int(Reason.FLIPPED)
R_NO_LEAD_CHANGE = int(Reason.NO_LEAD_CHANGE)
R_VEGA_LIMIT = int(Reason.VEGA_LIMIT)
R_DERISK = int(Reason.DERISK)


def classify_change(before: float, after: float) -> tuple[int, float, float]:
    """Classify a lead's position change from ``before`` to ``after`` (signed quantities).

    Returns
    -------
    kind
        ``EV_NONE`` (no change), ``EV_OPEN`` (from flat), ``EV_CLOSE`` (to flat), ``EV_FLIP``
        (through zero), ``EV_INCREASE`` or ``EV_REDUCE`` (same side, larger or smaller).
    side
        The lead's side after the change (open, increase, flip, none) or before it (reduce,
        close): +1.0 or −1.0; 0.0 for no change while flat.
    phi
        The fraction of its position the lead cut (reduce), :math:`1 - |after|/|before|`;
        NaN for every other kind.
    """
    sb = math.copysign(1.0, before) if before != 0 else 0.0
    sa = math.copysign(1.0, after) if after != 0 else 0.0
    phi = math.nan
    if before == after:
        kind, side = EV_NONE, sa
    elif before == 0:
        kind, side = EV_OPEN, sa
    elif after == 0:
        kind, side = EV_CLOSE, sb
    elif sb != sa:
        kind, side = EV_FLIP, sa
    elif abs(after) > abs(before):
        kind, side = EV_INCREASE, sa
    else:
        kind, side = EV_REDUCE, sb
        phi = 1.0 - abs(after) / abs(before)
    return kind, side, phi
