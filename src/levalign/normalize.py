r"""Leverage normalization: size one lead event for a whole cohort of followers.

The semantics are those of docs/design.md, "Normalization".

The cohort is a table with one row per follower (pyarrow, pandas, polars, a dict of columns,
or a list of JSON rows). :func:`normalize` digests the event once, then runs one numba kernel
over the columns; a single follower and a million take the same path.

Sizing an increase :math:`\Delta q_L` at price :math:`p` (lead equity :math:`E_L`, follower
equity :math:`E_F`, base quantities):

=================  ==============================================================
mode               follower quantity
=================  ==============================================================
proportional       :math:`\Delta q_F = \text{scale}\cdot\Delta q_L\, E_F / E_L`
fixed_notional     opening: ``fixed_notional / p``; later: grows as the lead's position
target_leverage    position at :math:`\min(\text{scale}\,\lambda_L, \text{max\_leverage})
                   \,E_F \cdot \text{share} / p`
risk_constant      position at :math:`\text{risk\_fraction}\,E_F / |p - \text{stop}|`; the
                   stop is the lead's or ``stop_sigmas`` · σ·√(horizon) away
vol_target         position at :math:`\text{vol\_target} / \sigma \cdot E_F / p`
optimal            position at the Kelly leverage :math:`s\,\mu/\sigma^2 \cdot E_F / p`
                   (``expected_return`` μ, σ of the follower or event), capped by
                   the constraints below, ``max_liq_probability`` included
=================  ==============================================================

Reductions are fractions: a lead cutting :math:`\phi` of its position cuts :math:`\phi` of
every follower's, to the nearest lot; a lead close closes each follower exactly, reduce-only.

Constraints, in order, each setting a :class:`Reason` bit when it binds: symbol allowed;
``max_position_leverage``; the tier table's largest notional; account ``max_leverage`` on
``(notional + other_notional) / equity``; the liquidation buffer (``min_liq_distance``, or the
smallest distance whose P(liquidation within ``horizon_hours``) is at most
``max_liq_probability`` on the event's :class:`~levalign.risk.LiquidationCurve`, whichever is
larger); available margin for the
initial margin; ``max_notional``; lot rounding (toward zero); exchange minimum amount and cost
with the ``min_size_policy``.

The liquidation buffer is solved exactly against the tier table: the margin balance needed
at price :math:`p` for liquidation to be a fraction :math:`d` away is

.. math:: R(Q) = Q\,p\,d + \mathrm{MM}\big(Q\,p\,(1 - s\,d)\big),

continuous and increasing in :math:`Q` and linear within a tier, so the largest :math:`Q`
with :math:`R(Q) \le` budget (isolated: collateral + available + PnL; cross: equity − other
positions' maintenance margin) has a closed form in one tier. Where the follower's venue
takes maintenance margin at the entry value (Bybit, KuCoin: the margin model's
``mm_at_entry``), the maintenance term is :math:`\mathrm{MM}(N_e)` at the entry notional after
the order (:math:`N_e = Q\,p` from flat) and the liquidation price is the venue's
(:meth:`levalign.margin.BybitMarginModel.liquidation_price`). The isolated margin to post is
:math:`\max(R(Q) - \text{PnL}, N / \text{maxLev}(N))`, and the leverage setting the smallest
integer whose initial margin fits in it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from levalign import _derisk_kernel as _dk
from levalign import _layout as layout
from levalign import _normalize_kernel as nk
from levalign._codes import (
    DERISK_ACTIONS,
    EV_FLIP,
    EV_INCREASE,
    EV_MARGIN,
    EV_NONE,
    EV_OPEN,
    EVENT_KINDS,
    MARGIN_MODES,
    MM_ISOLATED,
    MODES,
    POLICIES,
    Reason,
    classify_change,
)
from levalign._columns import (
    check_columns,
    checked_ids,
    code_column,
    columns_of,
    explicit_nan,
    flag_column,
    float_column,
)
from levalign._margin_kernels import liquidation_price_one_leg
from levalign._row_checks import INVALID_COLUMNS, explain_invalid_rows
from levalign.errors import ConfigurationError, InvalidInput
from levalign.margin import liquidation_market, margin_model
from levalign.markets import Markets, MarketSpec, as_markets
from levalign.schemas import FollowerProfile, LeadEvent, parse

if TYPE_CHECKING:
    from levalign.risk.curve import LiquidationCurve

__all__ = [
    "DERISK_ACTIONS",
    "EVENT_KINDS",
    "MARGIN_MODES",
    "MODES",
    "POLICIES",
    "Cohort",
    "NormalizeResult",
    "Reason",
    "derisk",
    "normalize",
    "prepare_event",
]


# column -> default (None: required), and categorical column -> (names, default), from the
# registry (levalign._layout.COLUMNS)
_FLOAT_COLUMNS: dict[str, float | None] = {
    c.name: None if c.default is None else float(c.default)
    for c in layout.COLUMNS
    if c.kind == "float"
}
_CATEGORY_COLUMNS: dict[str, tuple[tuple[str, ...], str]] = {
    c.name: (c.names, str(c.default)) for c in layout.COLUMNS if c.kind == "code"
}
COHORT_COLUMNS = ("id", *(c.name for c in layout.COLUMNS))


class _Rows(Mapping[str, NDArray[Any]]):
    """Named rows of a cohort matrix: reading gives a view, assigning writes into the row."""

    def __init__(
        self, matrix: NDArray[Any], index: Mapping[str, int], names: tuple[str, ...]
    ) -> None:
        self._matrix = matrix
        self._index = index
        self._names = names

    def __getitem__(self, name: str) -> NDArray[Any]:
        if name not in self._names:
            raise KeyError(name)
        return self._matrix[self._index[name]]  # type: ignore[no-any-return]

    def __setitem__(self, name: str, values: Any) -> None:
        if name not in self._names:
            raise KeyError(name)
        self._matrix[self._index[name]] = values

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class Cohort:
    """Followers of one lead in one symbol, in the columnar layout of :mod:`levalign._layout`.

    Build it with :meth:`from_table`; keep it across events to skip conversion, and update
    follower state in place with :meth:`update`. The columns live in two matrices, one row per
    column: ``float_matrix`` (float64) and ``code_matrix`` (int8: categorical columns as codes,
    ``-1`` marking an unknown value, whose row gets ``INVALID_ROW`` while the rest of the
    cohort is unaffected; ``allowed`` as 0/1). ``floats[name]`` and ``codes[name]`` are views of
    their rows (assigning to one writes into the matrix), ``allowed`` a boolean view.

    ``Cohort(ids, floats, codes, allowed)`` builds one from columns (copied into the layout;
    absent columns take their defaults).
    """

    __slots__ = ("_row_index", "code_matrix", "float_matrix", "ids")

    ids: NDArray[Any]
    float_matrix: NDArray[np.float64]
    code_matrix: NDArray[np.int8]

    def __init__(
        self,
        ids: Any,
        floats: Mapping[str, Any] | None = None,
        codes: Mapping[str, Any] | None = None,
        allowed: Any = None,
    ) -> None:
        ids = np.asarray(ids)
        n = len(ids)
        fm = _default_floats(n)
        cm = _default_codes(n)
        for name, values in (floats or {}).items():
            fm[layout.FLOAT_INDEX[name]] = values
        for name, values in (codes or {}).items():
            cm[layout.CODE_INDEX[name]] = values
        if allowed is not None:
            cm[layout.C_ALLOWED] = np.asarray(allowed, dtype=np.bool_)
        self.ids = ids
        self.float_matrix = fm
        self.code_matrix = cm
        self._row_index: dict[Any, int] | None = None

    @classmethod
    def _of_matrices(
        cls, ids: NDArray[Any], float_matrix: NDArray[np.float64], code_matrix: NDArray[np.int8]
    ) -> Cohort:
        """A cohort over these matrices (not copied)."""
        cohort = cls.__new__(cls)
        cohort.ids = ids
        cohort.float_matrix = float_matrix
        cohort.code_matrix = code_matrix
        cohort._row_index = None
        return cohort

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def floats(self) -> _Rows:
        """The float columns by name (views of ``float_matrix``'s rows)."""
        return _Rows(self.float_matrix, layout.FLOAT_INDEX, layout.FLOAT_COLUMNS)

    @property
    def codes(self) -> _Rows:
        """The categorical columns by name (views of ``code_matrix``'s rows)."""
        return _Rows(self.code_matrix, layout.CODE_INDEX, layout.CATEGORICAL_COLUMNS)

    @property
    def allowed(self) -> NDArray[np.bool_]:
        """Whether each follower copies the symbol (a boolean view of its code row)."""
        view: NDArray[np.bool_] = self.code_matrix[layout.C_ALLOWED].view(np.bool_)
        return view

    def rows_of(self, ids: Any) -> NDArray[np.intp]:
        """The row numbers of the followers ``ids`` (one id or a sequence of ids).

        The id index is built on the first call (a dict over the cohort's ids) and kept.

        Raises
        ------
        InvalidInput
            An id is not in the cohort (the first unknown one is named).
        """
        if self._row_index is None:
            self._row_index = {v: i for i, v in enumerate(self.ids.tolist())}
        index = self._row_index
        wanted = np.atleast_1d(np.asarray(ids, dtype=object))
        rows = np.empty(len(wanted), dtype=np.intp)
        for k, v in enumerate(wanted.tolist()):
            row = index.get(v)
            if row is None:
                raise InvalidInput(
                    f"follower id {v!r} is not in the cohort; update only followers it holds",
                    field="ids",
                    value=v,
                )
            rows[k] = row
        return rows

    def update(
        self,
        ids: Any = None,
        *,
        rows: Any = None,
        position: Any = None,
        entry_price: Any = None,
        equity: Any = None,
        collateral: Any = None,
        available_balance: Any = None,
        residual: Any = None,
    ) -> None:
        """Write follower state in place, after fills, without rebuilding the cohort.

        Select the followers by ``ids`` (through :meth:`rows_of`) or by ``rows`` (row numbers
        or a boolean mask), or neither for every follower; each state column given is a
        scalar or one value per selected follower. The new state is checked first and
        written only if every selected row is valid: ``equity`` finite and positive,
        ``position`` and ``residual`` finite, ``entry_price`` finite and positive where a
        position is held, ``collateral`` finite and non-negative, ``available_balance`` at
        least 0. ``available_balance`` is not re-derived from the others: pass it when it
        changed. Later :func:`normalize` and :func:`derisk` calls read the new state.

        Raises
        ------
        InvalidInput
            Both ``ids`` and ``rows`` given, an unknown id, a row out of range, a value that
            is not numeric or not one per selected follower, or a state that is not valid
            (the field and the follower are named); nothing is written then.
        """
        if ids is not None and rows is not None:
            raise InvalidInput("pass ids or rows, not both", field="rows")
        n = len(self)
        if ids is not None:
            selected = self.rows_of(ids)
        elif rows is None:
            selected = np.arange(n)
        else:
            selected = _selected_rows(rows, n)
        given = {
            "position": position,
            "entry_price": entry_price,
            "equity": equity,
            "collateral": collateral,
            "available_balance": available_balance,
            "residual": residual,
        }
        new = {
            name: _state_values(name, values, len(selected))
            for name, values in given.items()
            if values is not None
        }
        fm = self.float_matrix
        state = {
            name: new[name] if name in new else fm[layout.FLOAT_INDEX[name]][selected]
            for name in given
        }
        held = state["position"] != 0.0
        faults = {
            "equity": ~((state["equity"] > 0.0) & np.isfinite(state["equity"])),
            "position": ~np.isfinite(state["position"]),
            "entry_price": held
            & ~((state["entry_price"] > 0.0) & np.isfinite(state["entry_price"])),
            "collateral": ~((state["collateral"] >= 0.0) & np.isfinite(state["collateral"])),
            "available_balance": ~(state["available_balance"] >= 0.0),
            "residual": ~np.isfinite(state["residual"]),
        }
        for name, bad in faults.items():
            if bad.any():
                k = int(np.argmax(bad))
                i = int(selected[k])
                follower = self.ids[i : i + 1].tolist()[0]
                raise InvalidInput(
                    f"follower {follower!r} (row {i}) would have {name} {float(state[name][k])!r}, "
                    "not a valid state (see Cohort.update for the rules); nothing was updated",
                    field=name,
                    value=float(state[name][k]),
                )
        for name, values in new.items():
            fm[layout.FLOAT_INDEX[name], selected] = values

    def grouped_by_profile(self) -> Cohort:
        """The same followers, rows reordered so that followers of one profile sit together.

        Rows are sorted by sizing mode, margin mode, min-size policy, whether a buffer
        (``min_liq_distance``) is set and whether the position, account and notional caps are
        set, then by equity. Rows the vectorized pass leaves to the generic code then take the
        same branches as their neighbours, which the processor predicts; with nearly every
        row vectorized the gain is small (README, "Benchmarks": grouped against random
        order). Results come in this cohort's row order, each with its ``id``; a live engine
        keeps its cohort grouped across events (the sort is a one-off cost, like
        :meth:`from_table`).
        """
        f, c = self.floats, self.codes
        # np.lexsort sorts by the last key first
        order = np.lexsort(
            (
                f["equity"],
                np.isfinite(f["max_notional"]),
                np.isfinite(f["max_leverage"]),
                np.isfinite(f["max_position_leverage"]),
                np.isnan(f["min_liq_distance"]),
                c["min_size_policy"],
                c["margin_mode"],
                c["mode"],
            )
        )
        return Cohort._of_matrices(
            self.ids[order],
            np.ascontiguousarray(self.float_matrix[:, order]),
            np.ascontiguousarray(self.code_matrix[:, order]),
        )

    @classmethod
    def from_table(cls, table: Any) -> Cohort:
        """Convert a pyarrow/pandas/polars table, dict of columns or list of rows.

        Raises
        ------
        InvalidInput
            A required column (``id``, ``equity``) is missing, a column is not numeric, or a
            JSON row is malformed (the message names the row and field).
        """
        if isinstance(table, Cohort):
            return table
        columns = columns_of(table, FollowerProfile)
        check_columns(columns, COHORT_COLUMNS)
        ids = checked_ids(columns["id"])
        n = len(ids)
        fm = np.empty((len(layout.FLOAT_COLUMNS), n))
        for k, name in enumerate(layout.FLOAT_COLUMNS):
            default = layout.BY_NAME[name].default
            if name in columns:
                fm[k] = float_column(
                    columns[name], name, n, None if default is None else float(default)
                )
            else:
                fm[k] = math.nan if default is None else float(default)
        cm = np.empty((len(layout.CODE_COLUMNS), n), dtype=np.int8)
        for name, (names, fallback) in _CATEGORY_COLUMNS.items():
            cm[layout.CODE_INDEX[name]] = code_column(columns.get(name), names, fallback, n)
        cm[layout.C_ALLOWED] = flag_column(columns.get("allowed"), "allowed", n, True)
        _default_available(fm, cm, explicit_nan(columns.get("available_balance"), n))
        return cls._of_matrices(ids, fm, cm)


def _default_available(
    fm: NDArray[np.float64], cm: NDArray[np.int8], stated_nan: NDArray[np.bool_]
) -> None:
    """Set the unset ``available_balance`` cells (NaN, not stated NaN) to their default.

    The default is equity less isolated collateral, at least 0.
    """
    avail = fm[layout.F_AVAILABLE]
    missing = np.isnan(avail)
    missing &= ~stated_nan
    if not missing.any():
        return
    free = np.where(cm[layout.C_MARGIN_MODE] == MM_ISOLATED, fm[layout.F_COLLATERAL], 0.0)
    np.subtract(fm[layout.F_EQUITY], free, out=free)
    np.maximum(free, 0.0, out=free)
    np.copyto(avail, free, where=missing)


def _selected_rows(rows: Any, n: int) -> NDArray[np.intp]:
    """Row numbers from ``rows``: row numbers or a boolean mask of ``n``."""
    arr = np.asarray(rows)
    if arr.dtype == np.bool_:
        if arr.shape != (n,):
            raise InvalidInput(
                f"a row mask must have one value per follower ({n}), got shape {arr.shape}",
                field="rows",
            )
        return np.flatnonzero(arr)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInput("rows must be row numbers or a boolean mask", field="rows")
    arr = np.atleast_1d(arr).astype(np.intp)
    out = (arr < 0) | (arr >= n)
    if out.any():
        raise InvalidInput(
            f"row {int(arr[np.argmax(out)])} is outside the cohort's {n} rows", field="rows"
        )
    return arr


def _state_values(name: str, values: Any, k: int) -> NDArray[np.float64]:
    """``values`` for ``k`` selected followers as float64 (a scalar is broadcast)."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name} must be numeric: {exc}", field=name) from exc
    if arr.ndim == 0:
        return np.full(k, float(arr))
    if arr.shape != (k,):
        raise InvalidInput(
            f"{name} has {arr.size} values for {k} selected followers; give one per follower "
            "or a single value",
            field=name,
        )
    return arr


def _default_floats(n: int) -> NDArray[np.float64]:
    """The float matrix of ``n`` followers with every column at its default (NaN if required)."""
    defaults = np.array([math.nan if v is None else v for v in _FLOAT_COLUMNS.values()])
    return np.repeat(defaults[:, None], n, axis=1)


def _default_codes(n: int) -> NDArray[np.int8]:
    """The code matrix of ``n`` followers with every column at its default."""
    defaults = [
        c.names.index(str(c.default)) if c.kind == "code" else int(bool(c.default))
        for c in layout.COLUMNS
        if c.kind != "float"
    ]
    return np.repeat(np.array(defaults, dtype=np.int8)[:, None], n, axis=1)


# --------------------------------------------------------------------------- event


def prepare_event(
    event: LeadEvent, lead_market: MarketSpec, market: MarketSpec
) -> NDArray[np.float64]:
    """Digest a lead event into the kernel's event vector (layout in ``_normalize_kernel``)."""
    ev = np.full(nk.E_SIZE, math.nan)
    p = event.price
    before = lead_market.base_quantity(event.lead_position_before, p)
    after = lead_market.base_quantity(event.lead_position_after, p)
    kind, side, phi = classify_change(before, after)
    if kind == EV_NONE:
        c_before, c_after = event.lead_collateral_before, event.lead_collateral_after
        if after != 0 and c_after is not None and c_before is not None and c_after != c_before:
            if c_before <= 0:
                raise InvalidInput(
                    "lead_collateral_before must be positive to mirror a margin change",
                    field="event.lead_collateral_before",
                    value=c_before,
                )
            kind = EV_MARGIN
            ev[nk.E_MARGIN_RATIO] = c_after / c_before
    ev[nk.E_PHI] = phi
    opened = abs(after) if kind in (EV_OPEN, EV_FLIP) else abs(after) - abs(before)
    ev[nk.E_KIND] = kind
    ev[nk.E_SIDE] = side
    ev[nk.E_PRICE] = p
    if kind in (EV_OPEN, EV_INCREASE, EV_FLIP):
        ev[nk.E_UNITS] = opened / event.lead_equity
        ev[nk.E_OPEN_FRAC] = opened / abs(after)
        ev[nk.E_GROWTH] = opened / abs(before) if kind == EV_INCREASE else 0.0
        symbol_notional = abs(after) * p
        total = max(event.lead_total_notional or symbol_notional, symbol_notional)
        ev[nk.E_LEV_TOTAL] = total / event.lead_equity
        ev[nk.E_SHARE] = symbol_notional / total
    ev[nk.E_LEAD_DIST] = _lead_liquidation_distance(event, market, after)
    ev[nk.E_STOP] = event.lead_stop_price if event.lead_stop_price is not None else math.nan
    ev[nk.E_SIGMA] = event.sigma if event.sigma is not None else math.nan
    ev[nk.E_MU] = event.expected_return if event.expected_return is not None else math.nan
    ev[nk.E_MM_AT_ENTRY] = 1.0 if _mm_at_entry(market) else 0.0
    return ev


def _mm_at_entry(market: MarketSpec) -> bool:
    """Whether the market's venue takes maintenance margin at the entry value (Bybit, KuCoin)."""
    return margin_model(market.margin_family).mm_at_entry


def event_curve(event: LeadEvent, cohort: Cohort) -> LiquidationCurve | None:
    """The liquidation curve for this event: GBM at the event's ``sigma`` and drift.

    Built (or taken from the cache) only when some follower has a ``max_liq_probability``;
    None when no follower needs one or the event has no ``sigma`` (those followers then get
    ``RISK_MODEL_REQUIRED``).
    """
    if event.sigma is None or np.isnan(cohort.floats["max_liq_probability"]).all():
        return None
    from levalign.risk.curve import LiquidationCurve

    return LiquidationCurve.gbm(event.sigma, event.expected_return or 0.0)


def _lead_liquidation_distance(event: LeadEvent, market: MarketSpec, after: float) -> float:
    """The lead's liquidation distance after the event, priced on the follower's tier table.

    Isolated leads (``lead_collateral_after`` given) are liquidated by that margin, cross leads
    by their equity; PnL already in the position and other symbols' maintenance margin are not
    known from one event and are left out. NaN when the lead ends flat; the largest buffer
    when no price liquidates the lead.
    """
    if after == 0:
        return math.nan
    t = market.tiers
    balance = (
        event.lead_collateral_after
        if event.lead_collateral_after is not None
        else event.lead_equity
    )
    side = 1.0 if after > 0 else -1.0
    lp = liquidation_price_one_leg(
        balance, side, abs(after), event.price, True, t.floor, t.cap, t.mmr, t.cum
    )
    if math.isnan(lp):
        # no price liquidates the lead: its followers mirror that as closely as a buffer can
        return _MAX_BUFFER
    return min(max(abs(event.price - lp) / event.price, 0.0), _MAX_BUFFER)


# The largest liquidation buffer (a fraction of price below 1): liquidation at 1% of the price
_MAX_BUFFER = 0.99


# --------------------------------------------------------------------------- result

RESULT_COLUMNS = layout.RESULT_COLUMNS


@dataclass(frozen=True, eq=False)
class NormalizeResult:
    """Columnar result: one row per follower (field names: docs/design.md, "Normalization").

    ``side`` is +1 buy / −1 sell / 0 no order; ``amount`` is in contracts, whole lots except a
    close, which is the follower's exact position. ``close_amount`` is the reduce-only part of
    ``amount`` (a flip is this close, then an open of the rest). ``amount``, ``close_amount``
    and ``target_position`` are the nearest doubles to their decimals on the lot grid, so that
    ``repr`` prints whole lots (for a follower whose position is on the grid). ``collateral``
    is the isolated margin to post with the order, rounded down to 1e-8 of the settle currency
    and never more than the follower has (its free balance, plus what a flip's close releases;
    its equity when de-risking). ``reasons`` holds :class:`Reason` bits.
    """

    event_id: str
    event_kind: str
    symbol: str
    price: float
    columns: dict[str, NDArray[Any]]

    def __len__(self) -> int:
        return len(self.columns["id"])

    def __getitem__(self, name: str) -> NDArray[Any]:
        return self.columns[name]

    def to_arrow(self) -> Any:
        """The result as a ``pyarrow.Table``."""
        import pyarrow as pa

        return pa.table(self.columns)

    def to_pandas(self) -> Any:
        """The result as a ``pandas.DataFrame`` (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.columns)

    def orders(self, *, include_no_order: bool = True) -> list[dict[str, Any]]:
        """Rows as JSON-ready dicts: ``side`` as ``buy``/``sell``/None, ``reasons`` as names.

        ``invalid_field`` and ``invalid_reason`` name, on an ``invalid_row`` follower, the
        field at fault and why (None on the other rows).
        """
        cols = self.columns
        out = []
        for i in range(len(self)):
            side = int(cols["side"][i])
            if not include_no_order and side == 0:
                continue
            row: dict[str, Any] = {}
            for name in (*RESULT_COLUMNS, *INVALID_COLUMNS):
                v = cols[name][i] if name in cols else None
                if v is None or isinstance(v, str):
                    row[name] = v
                elif name == "side":
                    row[name] = {1: "buy", -1: "sell"}.get(side)
                elif name == "reasons":
                    row[name] = Reason.names(int(v))
                elif name == "id":
                    row[name] = v.item() if hasattr(v, "item") else v
                elif isinstance(v, np.bool_ | bool):
                    row[name] = bool(v)
                else:
                    f = float(v)
                    row[name] = f if math.isfinite(f) else None
            out.append(row)
        return out

    def summary(self) -> dict[str, Any]:
        """Counts of orders and reasons, notional ordered, leverage and distance quantiles."""
        cols = self.columns
        side = cols["side"]
        reasons = cols["reasons"]
        ordered = side != 0
        by_reason = {str(r.name).lower(): int(np.count_nonzero(reasons & r.value)) for r in Reason}
        dist = cols["liquidation_distance"]
        dist = dist[np.isfinite(dist)]
        lev = cols["effective_leverage"]
        lev = lev[np.isfinite(lev)]
        return {
            "event_id": self.event_id,
            "event_kind": self.event_kind,
            "symbol": self.symbol,
            "price": self.price,
            "followers": len(self),
            "orders": int(np.count_nonzero(ordered)),
            "no_order": int(np.count_nonzero(~ordered)),
            "buy": int(np.count_nonzero(side == 1)),
            "sell": int(np.count_nonzero(side == -1)),
            "reasons": {k: v for k, v in by_reason.items() if v},
            "effective_leverage": _quantiles(lev),
            "liquidation_distance": _quantiles(dist),
        }


def _quantiles(x: NDArray[np.float64]) -> dict[str, float] | None:
    if x.size == 0:
        return None
    q = np.quantile(x, [0.0, 0.5, 0.95, 1.0])
    return {"min": float(q[0]), "median": float(q[1]), "p95": float(q[2]), "max": float(q[3])}


def normalize(
    event: LeadEvent | Mapping[str, Any],
    followers: Any,
    markets: Markets | str,
    *,
    lead_markets: Markets | str | None = None,
    curve: LiquidationCurve | None = None,
    out: NormalizeResult | None = None,
) -> NormalizeResult:
    """Size one lead event for every follower.

    Parameters
    ----------
    event
        The lead's position change (:class:`~levalign.schemas.LeadEvent` or its JSON).
    followers
        The cohort: a :class:`Cohort`, pyarrow Table, pandas/polars DataFrame, dict of columns
        or list of follower rows. Columns are listed in ``COHORT_COLUMNS``; only ``id`` and
        ``equity`` are required.
    markets
        The followers' venue (:func:`levalign.load_markets`, or an exchange name).
    lead_markets
        The lead's venue when it differs (contract sizes and symbol mapping), else ``markets``.
    curve
        P(liquidation) against liquidation distance for the symbol's volatility model, for the
        ``max_liq_probability`` limit (:class:`~levalign.risk.LiquidationCurve`, e.g. from a
        Monte Carlo run of a GARCH-t model). Default: the closed-form GBM curve at the event's
        ``sigma`` and ``expected_return`` (:func:`event_curve`).
    out
        An earlier result for this cohort, whose output columns this call overwrites and
        returns in a new result: use the returned one, and copy whatever you still need from
        ``out`` first (its arrays and its ``to_arrow()`` / ``to_pandas()`` tables share the
        memory). A live engine sizing event after event for one cohort saves the fresh
        columns' cost: about 100 MB for a million followers, which the operating system zeroes
        page by page (a large part of the call; README, "Benchmarks").

    Returns
    -------
    NormalizeResult

    Raises
    ------
    InvalidInput
        Malformed event (the field is named), unknown symbol, missing follower column; an
        ``out`` whose columns are missing, of another length or type, read-only, strided, or
        share memory with a cohort column or with each other.
    ConfigurationError
        The follower market lacks an amount step, or is inverse (not yet supported here).
    """
    ev_model = event if isinstance(event, LeadEvent) else parse(LeadEvent, event, root="event")
    markets = as_markets(markets)
    lead_markets = None if lead_markets is None else as_markets(lead_markets, field="lead_markets")
    cohort = Cohort.from_table(followers)
    lead_venue = lead_markets or markets
    lead_spec = lead_venue[lead_venue.resolve(ev_model.symbol, field="event.symbol")]
    venue = lead_markets.exchange if lead_markets is not None else None
    spec = _linear_spec(
        markets,
        markets.resolve(ev_model.symbol, field="event.symbol", from_venue=venue),
        "event.symbol",
    )
    spec = liquidation_market(spec, ev_model.price)  # the follower venue's liquidation rule
    ev = prepare_event(ev_model, lead_spec, spec)
    cols = allocate_result(len(cohort)) if out is None else _reused_columns(out, cohort)
    run_kernel(ev, spec, cohort, cols, curve or event_curve(ev_model, cohort))
    return NormalizeResult(
        event_id=ev_model.event_id,
        event_kind=EVENT_KINDS[int(ev[nk.E_KIND])],
        symbol=spec.symbol,
        price=ev_model.price,
        columns={"id": cohort.ids, **cols, **explain_invalid_rows(cohort, cols["reasons"])},
    )


def derisk(
    symbol: str,
    price: float,
    followers: Any,
    markets: Markets | str,
    *,
    event_id: str | None = None,
    curve: LiquidationCurve | None = None,
) -> NormalizeResult:
    r"""De-risk every follower whom ``price`` put inside its ``derisk_distance`` (no lead fill).

    The pipeline of :func:`normalize` triggered by price: a follower whose liquidation
    distance at ``price`` is below its ``derisk_distance`` :math:`f` is cut back (reduce-only,
    whole lots rounded up) or, with ``derisk = "add_margin"`` on isolated margin, topped up
    from its free balance, until liquidation is :math:`\max(f, \text{buffer})` away, the
    buffer being its ``min_liq_distance`` or the distance its ``max_liq_probability`` needs on
    ``curve``. The largest quantity kept solves the buffer equation of :func:`normalize`:

    .. math:: Q\,p\,d + \mathrm{MM}\big(Q\,p\,(1 - s\,d)\big) \le B,

    with :math:`B` the cross equity less the other positions' maintenance margin, or the
    isolated position's own margin balance (plus the free balance for ``add_margin``); on a
    venue that takes maintenance margin at the entry value (Bybit, KuCoin) the maintenance
    term is :math:`\mathrm{MM}(Q\,EP)`.
    Details in :mod:`levalign._derisk_kernel`. The rows are :class:`NormalizeResult` rows:
    ``reasons`` has ``DERISK`` on every follower the price triggered, ``NO_LEAD_CHANGE`` on
    the others; ``collateral`` is the isolated margin to post after the cut (or the top-up).

    Parameters
    ----------
    symbol, price
        The market and the price (a mark or last trade) that triggered the check.
    followers
        The cohort, as for :func:`normalize` (``position``, ``entry_price``, ``collateral``,
        ``equity`` at ``price``, ``derisk_distance``, ``derisk``).
    markets
        The followers' venue.
    event_id
        Label of the result (default ``derisk:{symbol}@{price}``).
    curve
        Liquidation curve for followers with ``max_liq_probability`` (without one their
        buffer is ``min_liq_distance``).

    Returns
    -------
    NormalizeResult

    Raises
    ------
    InvalidInput
        ``price`` not a positive finite number, unknown symbol, malformed cohort.
    ConfigurationError
        The market has no amount step, or is inverse.
    """
    if not (isinstance(price, int | float) and math.isfinite(price) and price > 0):
        raise InvalidInput(f"price must be a positive finite number, got {price!r}", field="price")
    markets = as_markets(markets)
    cohort = Cohort.from_table(followers)
    spec = _linear_spec(markets, markets.resolve(symbol, field="symbol"), "symbol")
    spec = liquidation_market(spec, float(price))  # the follower venue's liquidation rule
    cols = allocate_result(len(cohort))
    # the normalization kernels' arguments, the price in place of the event vector
    args: tuple[Any, ...] = (
        float(price),
        *kernel_args(_NO_EVENT, spec, cohort, cols, curve)[1:],
        _mm_at_entry(spec),
    )
    _dk.derisk_kernel(*args)
    return NormalizeResult(
        event_id=event_id or f"derisk:{spec.symbol}@{price:g}",
        event_kind="derisk",
        symbol=spec.symbol,
        price=float(price),
        columns={"id": cohort.ids, **cols, **explain_invalid_rows(cohort, cols["reasons"])},
    )


def _linear_spec(markets: Markets, symbol: str, field: str) -> MarketSpec:
    """The follower market, which must have an amount step and be linear."""
    spec = markets[symbol]
    if spec.amount_step is None:
        raise ConfigurationError(
            f"{spec.symbol} has no amount step in the loaded markets: pass a ccxt markets JSON "
            "stating precision.amount and limits for it",
            field=f"markets.{spec.symbol}.precision.amount",
        )
    if not spec.linear:
        raise ConfigurationError(
            f"{spec.symbol} is an inverse (coin-margined) market: normalization supports linear "
            "markets; the margin engine (levalign margin) supports both",
            field=field,
            value=spec.symbol,
        )
    return spec


def _reused_columns(out: NormalizeResult, cohort: Cohort) -> dict[str, NDArray[Any]]:
    """``out``'s output columns, checked against what the kernel writes for ``cohort``.

    They must be the views of one earlier result's matrices
    (:class:`levalign._layout.ResultArrays`) for as many followers, writable; the kernel reads
    each block's inputs after writing some of its outputs, so no output may share memory with
    another or with the cohort.
    """
    n = len(cohort)
    cols: dict[str, NDArray[Any]] = {}
    for name, like in allocate_result(0).items():
        col = out.columns.get(name)
        fault = None
        if col is None:
            fault = "is missing"
        elif col.shape != (n,) or col.dtype != like.dtype:
            fault = f"is {col.dtype} of shape {col.shape}, not {like.dtype} of shape ({n},)"
        elif not (col.flags.writeable and col.flags.c_contiguous):
            fault = "is read-only or not contiguous"
        else:
            shared = [k for k, v in cols.items() if np.may_share_memory(col, v)]
            if shared:
                fault = f"shares memory with {shared[0]!r}"
            elif np.may_share_memory(col, cohort.float_matrix) or np.may_share_memory(
                col, cohort.code_matrix
            ):
                fault = "shares memory with the cohort's columns"
        if col is None or fault is not None:
            raise InvalidInput(
                f"out must be an earlier result for these {n} followers, and its column "
                f"{name!r} {fault}; pass the result of an earlier normalize() call on this "
                "cohort, or no out",
                field="out",
            )
        cols[name] = col
    if layout.ResultArrays.of_columns(cols) is None:
        raise InvalidInput(
            f"out must be an earlier result for these {n} followers: its columns are not the "
            "output columns of one normalize() result; pass such a result, or no out",
            field="out",
        )
    return cols


def allocate_result(n: int) -> dict[str, NDArray[Any]]:
    """Uninitialized output columns for ``n`` followers (every one is written by the kernel).

    Views of one :class:`levalign._layout.ResultArrays`: :func:`run_kernel` writes them through
    its matrices.
    """
    return layout.ResultArrays.empty(n).columns()


def _market_vector(spec: MarketSpec) -> NDArray[np.float64]:
    """The market's scalars in the kernels' ``MK_*`` layout."""
    vec = np.empty(layout.MK_SIZE)
    vec[layout.MK_CONTRACT_SIZE] = spec.contract_size
    vec[layout.MK_AMOUNT_STEP] = float(spec.amount_step or 0.0)
    vec[layout.MK_AMOUNT_DECIMALS] = spec.amount_decimals
    vec[layout.MK_MIN_AMOUNT] = float(spec.min_amount or 0.0)
    vec[layout.MK_MIN_COST] = float(spec.min_cost or 0.0)
    return vec


def _tier_matrix(spec: MarketSpec) -> NDArray[np.float64]:
    """The market's tier table in the kernels' ``T_*`` rows."""
    t = spec.tiers
    return np.ascontiguousarray(np.stack((t.floor, t.cap, t.mmr, t.cum, t.max_leverage)))


_NO_EVENT = np.empty(0)
CurveArrays = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]
_NO_CURVE: CurveArrays = (np.empty((2, 0, 0)), np.empty(0), np.empty(0))


def _curve_arrays(curve: LiquidationCurve | None) -> CurveArrays:
    """The curve's (table, log distances, horizons) kernel arguments; empty without a curve."""
    if curve is None:
        return _NO_CURVE
    return (curve.table, curve.log_distance, curve.horizon_hours)


def kernel_args(
    ev: NDArray[np.float64],
    spec: MarketSpec,
    cohort: Cohort,
    cols: Mapping[str, NDArray[Any]],
    curve: LiquidationCurve | None = None,
) -> tuple[Any, ...]:
    """The cohort kernels' arguments, in their order (outputs: the matrices behind ``cols``).

    ``cols`` are columns from :func:`allocate_result` or an earlier result.

    Raises
    ------
    InvalidInput
        ``cols`` are not views of one result's matrices.
    """
    arrays = layout.ResultArrays.of_columns(dict(cols))
    if arrays is None:
        raise InvalidInput(
            "output columns must come from allocate_result() or an earlier result", field="out"
        )
    return (
        ev,
        _market_vector(spec),
        _tier_matrix(spec),
        *_curve_arrays(curve),
        cohort.float_matrix,
        cohort.code_matrix,
        arrays.floats,
        arrays.bytes,
        arrays.reasons,
    )


def run_kernel(
    ev: NDArray[np.float64],
    spec: MarketSpec,
    cohort: Cohort,
    cols: Mapping[str, NDArray[Any]],
    curve: LiquidationCurve | None = None,
    *,
    fast_path: bool | None = None,
) -> None:
    """Run the cohort kernel into preallocated output columns (the benchmark's hot path).

    Opens, increases and flips run :func:`~levalign._normalize_kernel.open_kernel`: a
    vectorized pass for the common case, then the generic row code for the rows it leaves,
    block by block. Other events, and ``fast_path=False``, run
    :func:`~levalign._normalize_kernel.generic_kernel`. The results are identical either way
    (tested). ``None`` takes the fast path for cohorts of at least ``FAST_PATH_MIN_ROWS``
    followers. ``cols`` come from :func:`allocate_result` or an earlier result.
    """
    args = kernel_args(ev, spec, cohort, cols, curve)
    if fast_path is None:
        fast_path = len(cohort) >= FAST_PATH_MIN_ROWS
    if fast_path and int(ev[nk.E_KIND]) in nk.FAST_PATH_KINDS:
        # annotated tuples: mypy cannot count the arguments of a star-unpacked tuple
        open_args: tuple[Any, ...] = (*args, np.empty(len(cohort), dtype=np.bool_))
        nk.open_kernel(*open_args)
    else:
        nk.generic_kernel(*args)


# Smaller cohorts run the generic kernel alone: it sizes them quickly, and open_kernel would
# add its one-off compilation (long on a cold numba cache) to a first run, the demo's included
FAST_PATH_MIN_ROWS = 50_000
