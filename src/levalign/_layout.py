"""The cohort's columnar layout: one registry of follower columns, and the kernels' indices.

Every follower column is one :class:`Column` entry in :data:`COLUMNS` (name, kind, default,
meaning). From it come the cohort's two matrices, each column one contiguous row:

* ``floats``: float64, ``(len(FLOAT_COLUMNS), n)``;
* ``codes``: int8, ``(len(CODE_COLUMNS), n)``: categorical columns as codes (``-1`` marks an
  unknown value) and flags as 0/1.

The kernels index them with the ``F_*`` and ``C_*`` constants below, and write their results
into the result matrices (``O_*`` rows of a float64 matrix, ``B_*`` rows of an int8 matrix,
and a uint32 ``reasons`` column). Market scalars travel as one float vector (``MK_*``) and the
tier table as one matrix (``T_*`` rows). Adding a follower column is one entry in
:data:`COLUMNS` (and an index constant if a kernel reads it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
from numpy.typing import NDArray

from levalign._codes import DERISK_ACTIONS, MARGIN_MODES, MODES, POLICIES

__all__ = ["COLUMNS", "Column"]


@dataclass(frozen=True)
class Column:
    """One follower column.

    Attributes
    ----------
    name
        The column's name in tables, JSON rows and :class:`~levalign.schemas.FollowerProfile`.
    kind
        ``float`` (float64), ``code`` (one of ``names``) or ``flag`` (true/false).
    default
        The value of an absent cell: a float, a name of ``names``, a bool; None when the column
        is required.
    meaning
        What the value means, and what its default means (the README's cohort table).
    names
        The values of a ``code`` column, in code order.
    """

    name: str
    kind: Literal["float", "code", "flag"]
    default: float | str | bool | None
    meaning: str
    names: tuple[str, ...] = ()


_NAN, _INF = math.nan, math.inf

#: Every follower column but ``id``, in layout order.
COLUMNS: tuple[Column, ...] = (
    Column("equity", "float", None, "capital allocated to this lead (settle currency)"),
    Column(
        "available_balance",
        "float",
        _NAN,
        "free margin; empty: equity less isolated collateral",
    ),
    Column("position", "float", 0.0, "signed contracts held"),
    Column("entry_price", "float", _NAN, "entry price of the position (needed when one is held)"),
    Column("collateral", "float", 0.0, "isolated margin posted to the position"),
    Column("other_notional", "float", 0.0, "notional of the follower's other positions"),
    Column(
        "other_maintenance_margin",
        "float",
        0.0,
        "maintenance margin of the follower's other positions (cross)",
    ),
    Column("scale", "float", 1.0, "multiplier of the lead's size or leverage"),
    Column("fixed_notional", "float", _NAN, "notional of an opening (`fixed_notional` mode)"),
    Column("risk_fraction", "float", _NAN, "equity lost at the stop (`risk_constant` mode)"),
    Column("vol_target", "float", _NAN, "annualized volatility target (`vol_target` mode)"),
    Column("sigma", "float", _NAN, "annualized volatility; empty: the event's"),
    Column("stop_sigmas", "float", 2.0, "stop distance in sigmas when the lead states no stop"),
    # a follower who sets nothing runs at no more than a new exchange account starts at
    # (20x, the default leverage of Binance USD-M futures), not at the tier's maximum
    Column(
        "max_leverage",
        "float",
        20.0,
        "account effective leverage cap, `(notional + other) / equity`; a safe default: set "
        "it (`inf` for none) to follow a lead beyond 20x",
    ),
    Column("max_position_leverage", "float", _INF, "cap on this position's notional / equity"),
    Column(
        "min_liq_distance",
        "float",
        _NAN,
        "liquidation at least this fraction of price away; empty: the lead's own distance "
        "(0.99 when no price liquidates the lead; none under a `max_liq_probability`)",
    ),
    Column(
        "max_liq_probability",
        "float",
        _NAN,
        "cap on P(liquidation within `horizon_hours`); empty: none",
    ),
    Column("horizon_hours", "float", 24.0, "horizon of `max_liq_probability`"),
    Column("max_notional", "float", _INF, "cap on this position's notional"),
    Column(
        "expected_return",
        "float",
        _NAN,
        "annualized drift of the price, for `optimal` (Kelly `μ/σ²`); empty: the event's",
    ),
    Column(
        "leverage_setting",
        "float",
        _NAN,
        "the follower's leverage setting: initial margin `N / min(setting, tier max)`; empty: "
        "chosen per order (isolated: the smallest whose initial margin fits the collateral)",
    ),
    Column("residual", "float", 0.0, "contracts carried by `accumulate`"),
    Column(
        "derisk_distance",
        "float",
        _NAN,
        "hard floor: when price brings liquidation closer than this fraction, de-risk back to "
        "`max(floor, min_liq_distance)`; empty: never",
    ),
    Column("mode", "code", "proportional", "sizing mode", MODES),
    Column("margin_mode", "code", "isolated", "margin mode of the position", MARGIN_MODES),
    Column(
        "min_size_policy",
        "code",
        "skip",
        "below the exchange minimum: skip, round up (only if every limit still holds), or "
        "accumulate the residual",
        POLICIES,
    ),
    Column(
        "derisk",
        "code",
        "reduce",
        "de-risk action: cut the position, or top up isolated margin from the free balance first",
        DERISK_ACTIONS,
    ),
    Column("allowed", "flag", True, "whether the follower copies this symbol"),
)

FLOAT_COLUMNS = tuple(c.name for c in COLUMNS if c.kind == "float")
CODE_COLUMNS = tuple(c.name for c in COLUMNS if c.kind != "float")
#: the categorical columns (codes with names); flags are the other code rows
CATEGORICAL_COLUMNS = tuple(c.name for c in COLUMNS if c.kind == "code")
FLOAT_INDEX = {name: k for k, name in enumerate(FLOAT_COLUMNS)}
CODE_INDEX = {name: k for k, name in enumerate(CODE_COLUMNS)}
BY_NAME = {c.name: c for c in COLUMNS}

# ---- float rows the kernels read
F_EQUITY = FLOAT_INDEX["equity"]
F_AVAILABLE = FLOAT_INDEX["available_balance"]
F_POSITION = FLOAT_INDEX["position"]
F_ENTRY_PRICE = FLOAT_INDEX["entry_price"]
F_COLLATERAL = FLOAT_INDEX["collateral"]
F_OTHER_NOTIONAL = FLOAT_INDEX["other_notional"]
F_OTHER_MM = FLOAT_INDEX["other_maintenance_margin"]
F_SCALE = FLOAT_INDEX["scale"]
F_FIXED_NOTIONAL = FLOAT_INDEX["fixed_notional"]
F_RISK_FRACTION = FLOAT_INDEX["risk_fraction"]
F_VOL_TARGET = FLOAT_INDEX["vol_target"]
F_SIGMA = FLOAT_INDEX["sigma"]
F_STOP_SIGMAS = FLOAT_INDEX["stop_sigmas"]
F_MAX_LEVERAGE = FLOAT_INDEX["max_leverage"]
F_MAX_POSITION_LEVERAGE = FLOAT_INDEX["max_position_leverage"]
F_MIN_LIQ_DISTANCE = FLOAT_INDEX["min_liq_distance"]
F_MAX_LIQ_PROBABILITY = FLOAT_INDEX["max_liq_probability"]
F_HORIZON_HOURS = FLOAT_INDEX["horizon_hours"]
F_MAX_NOTIONAL = FLOAT_INDEX["max_notional"]
F_EXPECTED_RETURN = FLOAT_INDEX["expected_return"]
F_LEVERAGE_SETTING = FLOAT_INDEX["leverage_setting"]
F_RESIDUAL = FLOAT_INDEX["residual"]
F_DERISK_DISTANCE = FLOAT_INDEX["derisk_distance"]
# ---- code rows
C_MODE = CODE_INDEX["mode"]
C_MARGIN_MODE = CODE_INDEX["margin_mode"]
C_POLICY = CODE_INDEX["min_size_policy"]
C_DERISK = CODE_INDEX["derisk"]
C_ALLOWED = CODE_INDEX["allowed"]

# ---- result layout: float rows, one-byte rows, and the uint32 reasons column
RESULT_FLOATS = (
    "amount",
    "close_amount",
    "leverage",
    "collateral",
    "target_position",
    "raw_amount",
    "effective_leverage",
    "liquidation_price",
    "liquidation_distance",
    "residual",
)
RESULT_BYTES = ("side", "reduce_only")
(
    O_AMOUNT,
    O_CLOSE_AMOUNT,
    O_LEVERAGE,
    O_COLLATERAL,
    O_TARGET,
    O_RAW,
    O_EFF_LEV,
    O_LIQ,
    O_LIQ_DIST,
    O_RESIDUAL,
) = range(len(RESULT_FLOATS))
B_SIDE, B_REDUCE_ONLY = range(len(RESULT_BYTES))
#: the result's columns as printed and written (``id`` first)
RESULT_COLUMNS = (
    "id",
    "side",
    "amount",
    "close_amount",
    "reduce_only",
    "leverage",
    "collateral",
    "target_position",
    "raw_amount",
    "reasons",
    "effective_leverage",
    "liquidation_price",
    "liquidation_distance",
    "residual",
)

# ---- market vector and tier matrix
MK_CONTRACT_SIZE, MK_AMOUNT_STEP, MK_AMOUNT_DECIMALS, MK_MIN_AMOUNT, MK_MIN_COST, MK_SIZE = range(6)
T_FLOOR, T_CAP, T_MMR, T_CUM, T_MAX_LEV = range(5)


def cohort_table_markdown() -> str:
    """The README's cohort table, rendered from :data:`COLUMNS` (a test keeps them equal)."""
    lines = ["| column | default | meaning |", "|---|---|---|", "| `id` | required | follower id |"]
    lines += [f"| `{c.name}` | {_render_default(c)} | {_render_meaning(c)} |" for c in COLUMNS]
    return "\n".join(lines) + "\n"


def _render_default(column: Column) -> str:
    default = column.default
    if default is None:
        return "required"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, str):
        return f"`{default}`"
    if math.isnan(default):
        return "empty"
    return "∞" if math.isinf(default) else f"{default:g}"


def _render_meaning(column: Column) -> str:
    if column.kind != "code":
        return column.meaning
    return f"{column.meaning}: " + ", ".join(f"`{name}`" for name in column.names)


@dataclass(frozen=True, eq=False)
class ResultArrays:
    """A result's output matrices: what the kernels write.

    Attributes
    ----------
    floats
        float64 ``(len(RESULT_FLOATS), n)``, rows ``O_*``.
    bytes
        int8 ``(len(RESULT_BYTES), n)``, rows ``B_*`` (``reduce_only`` as 0/1).
    reasons
        uint32 ``(n,)``, :class:`~levalign._codes.Reason` bits.
    """

    floats: NDArray[np.float64]
    bytes: NDArray[np.int8]
    reasons: NDArray[np.uint32]

    @classmethod
    def empty(cls, n: int) -> ResultArrays:
        """Uninitialized matrices for ``n`` followers (the kernels write every cell)."""
        return cls(
            floats=np.empty((len(RESULT_FLOATS), n)),
            bytes=np.empty((len(RESULT_BYTES), n), dtype=np.int8),
            reasons=np.empty(n, dtype=np.uint32),
        )

    def columns(self) -> dict[str, NDArray[np.generic]]:
        """The result columns as views into the matrices, in :data:`RESULT_COLUMNS` order."""
        views: dict[str, NDArray[np.generic]] = {
            name: self.floats[k] for k, name in enumerate(RESULT_FLOATS)
        }
        views["side"] = self.bytes[B_SIDE]
        views["reduce_only"] = self.bytes[B_REDUCE_ONLY].view(np.bool_)
        views["reasons"] = self.reasons
        return {name: views[name] for name in RESULT_COLUMNS[1:]}

    @classmethod
    def of_columns(cls, cols: dict[str, NDArray[np.generic]]) -> ResultArrays | None:
        """The matrices behind columns made by :meth:`columns`; None when they are not views."""
        try:
            floats = cols["amount"].base
            bytes_ = cols["side"].base
            reasons = cols["reasons"]
        except KeyError:
            return None
        if not (
            isinstance(floats, np.ndarray)
            and isinstance(bytes_, np.ndarray)
            and floats.dtype == np.float64
            and bytes_.dtype == np.int8
            and reasons.dtype == np.uint32
            and floats.shape == (len(RESULT_FLOATS), reasons.shape[0])
            and bytes_.shape == (len(RESULT_BYTES), reasons.shape[0])
            and floats.flags.c_contiguous
            and bytes_.flags.c_contiguous
            and reasons.flags.c_contiguous
        ):
            return None
        arrays = cls(floats=floats, bytes=bytes_, reasons=cast(NDArray[np.uint32], reasons))
        expected = arrays.columns()
        for name, view in expected.items():
            col = cols.get(name)
            if col is None or not _same_view(col, view):
                return None
        return arrays


def _same_view(a: NDArray[np.generic], b: NDArray[np.generic]) -> bool:
    """Whether ``a`` and ``b`` are the same memory, shape and type."""
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and a.strides == b.strides
        and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    )
