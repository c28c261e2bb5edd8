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
positions' maintenance margin) has a closed form in one tier. The isolated margin to post is
:math:`\max(R(Q) - \text{PnL}, N / \text{maxLev}(N))`, and the leverage setting the smallest
integer whose initial margin fits in it.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from levalign import _derisk_kernel as _dk
from levalign import _normalize_kernel as nk
from levalign._margin_kernels import liquidation_price_one_leg
from levalign.errors import ConfigurationError, InvalidInput
from levalign.margin import liquidation_market
from levalign.markets import Markets, MarketSpec
from levalign.risk.curve import LiquidationCurve
from levalign.schemas import FollowerProfile, LeadEvent, parse

__all__ = ["Cohort", "NormalizeResult", "Reason", "derisk", "normalize", "prepare_event"]


class Reason(enum.IntFlag):
    """Why a follower's order is what it is (bits of the ``reasons`` column)."""

    INVALID_ROW = nk.R_INVALID_ROW
    SYMBOL_NOT_ALLOWED = nk.R_SYMBOL_NOT_ALLOWED
    MISSING_PARAMETER = nk.R_MISSING_PARAMETER
    RISK_MODEL_REQUIRED = nk.R_RISK_MODEL_REQUIRED
    POSITION_LEVERAGE = nk.R_POSITION_LEVERAGE
    TIER_LIMIT = nk.R_TIER_LIMIT
    ACCOUNT_LEVERAGE = nk.R_ACCOUNT_LEVERAGE
    LIQ_BUFFER = nk.R_LIQ_BUFFER
    AVAILABLE_MARGIN = nk.R_AVAILABLE_MARGIN
    MAX_NOTIONAL = nk.R_MAX_NOTIONAL
    LOT_ROUNDING = nk.R_LOT_ROUNDING
    BELOW_MIN_AMOUNT = nk.R_BELOW_MIN_AMOUNT
    BELOW_MIN_COST = nk.R_BELOW_MIN_COST
    SKIPPED = nk.R_SKIPPED
    ROUNDED_UP = nk.R_ROUNDED_UP
    ACCUMULATED = nk.R_ACCUMULATED
    NOTHING_TO_CLOSE = nk.R_NOTHING_TO_CLOSE
    AT_TARGET = nk.R_AT_TARGET
    MARGIN_TOPUP = nk.R_MARGIN_TOPUP
    FLIPPED = nk.R_FLIPPED
    NO_LEAD_CHANGE = nk.R_NO_LEAD_CHANGE
    VEGA_LIMIT = nk.R_VEGA_LIMIT  # options only (levalign.risk.options): max_vega bound the order
    DERISK = _dk.R_DERISK  # price moved the follower inside its derisk_distance (derisk())

    @classmethod
    def names(cls, bits: int) -> list[str]:
        """Lower-case names of the bits set in ``bits``, in pipeline order."""
        return [str(r.name).lower() for r in cls if r.value & bits]


EVENT_KINDS = ("none", "open", "increase", "reduce", "close", "flip", "margin")
MODES = (
    "proportional",
    "fixed_notional",
    "target_leverage",
    "risk_constant",
    "vol_target",
    "optimal",
)
MARGIN_MODES = ("isolated", "cross")
POLICIES = ("skip", "round_up", "accumulate")
DERISK_ACTIONS = ("reduce", "add_margin")

# column -> (default, dtype); None default means required
_FLOAT_COLUMNS: dict[str, float | None] = {
    "equity": None,
    "available_balance": math.nan,  # NaN: defaults to equity less isolated collateral
    "position": 0.0,
    "entry_price": math.nan,
    "collateral": 0.0,
    "other_notional": 0.0,
    "other_maintenance_margin": 0.0,
    "scale": 1.0,
    "fixed_notional": math.nan,
    "risk_fraction": math.nan,
    "vol_target": math.nan,
    "sigma": math.nan,
    "stop_sigmas": 2.0,
    "max_leverage": math.inf,
    "max_position_leverage": math.inf,
    "min_liq_distance": math.nan,  # NaN: the lead's own liquidation distance
    "max_liq_probability": math.nan,
    "horizon_hours": 24.0,
    "max_notional": math.inf,
    "expected_return": math.nan,  # NaN: the event's
    "leverage_setting": math.nan,  # NaN: chosen per order (isolated: from the buffer)
    "residual": 0.0,
    "derisk_distance": math.nan,  # NaN: no de-risking
}
_CATEGORY_COLUMNS: dict[str, tuple[tuple[str, ...], str]] = {
    "mode": (MODES, "proportional"),
    "margin_mode": (MARGIN_MODES, "isolated"),
    "min_size_policy": (POLICIES, "skip"),
    "derisk": (DERISK_ACTIONS, "reduce"),
}
COHORT_COLUMNS = ("id", *_FLOAT_COLUMNS, *_CATEGORY_COLUMNS, "allowed")


def check_columns(columns: Mapping[str, Any], known: Sequence[str]) -> None:
    """A follower table must have ``id`` and ``equity`` and no column outside ``known``.

    Raises
    ------
    InvalidInput
        Naming the missing or unknown column, and listing the known ones.
    """
    for required in ("id", "equity"):
        if required not in columns:
            raise InvalidInput(
                f"the follower table has no {required!r} column; required columns are 'id' "
                f"and 'equity' (optional: {', '.join(known[2:])})",
                field=f"followers.{required}",
            )
    unknown = sorted(set(columns) - set(known))
    if unknown:
        raise InvalidInput(
            f"unknown follower column(s) {', '.join(unknown)}; known: {', '.join(known)}",
            field=f"followers.{unknown[0]}",
        )


@dataclass(frozen=True, eq=False)
class Cohort:
    """Followers of one lead in one symbol, as a struct of arrays (docs/design.md, "Normalization").

    Build it with :meth:`from_table`; keep it across events to skip conversion. Float columns
    are float64, categorical columns int8 codes (``-1`` marks an unknown value: that row gets
    ``INVALID_ROW``, the rest of the cohort is unaffected).
    """

    ids: NDArray[Any]
    floats: dict[str, NDArray[np.float64]]
    codes: dict[str, NDArray[np.int8]]
    allowed: NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.ids)

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
        return Cohort(
            ids=self.ids[order],
            floats={k: np.ascontiguousarray(v[order]) for k, v in f.items()},
            codes={k: np.ascontiguousarray(v[order]) for k, v in c.items()},
            allowed=np.ascontiguousarray(self.allowed[order]),
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
        columns = _columns_of(table)
        check_columns(columns, COHORT_COLUMNS)
        ids = np.asarray(columns["id"])
        n = len(ids)
        floats: dict[str, NDArray[np.float64]] = {}
        for name, default in _FLOAT_COLUMNS.items():
            if name in columns:
                floats[name] = _float_column(columns[name], name, n, default)
            else:
                floats[name] = np.full(n, default if default is not None else math.nan)
        codes: dict[str, NDArray[np.int8]] = {}
        for name, (names, fallback) in _CATEGORY_COLUMNS.items():
            codes[name] = _code_column(columns.get(name), names, fallback, n)
        allowed = np.ones(n, dtype=np.bool_)
        if "allowed" in columns:
            raw = np.asarray(columns["allowed"], dtype=object)
            allowed = np.array([bool(v) if v is not None else True for v in raw], dtype=np.bool_)
        avail = floats["available_balance"]
        missing = np.isnan(avail) & ~_explicit_nan(columns.get("available_balance"), n)
        if missing.any():
            isolated = codes["margin_mode"] == 0
            default_avail = floats["equity"] - np.where(isolated, floats["collateral"], 0.0)
            avail = np.where(missing, np.maximum(default_avail, 0.0), avail)
            floats["available_balance"] = avail
        return cls(ids=ids, floats=floats, codes=codes, allowed=allowed)


def _columns_of(table: Any) -> dict[str, Any]:
    """Column name -> array-like for every supported table type."""
    if isinstance(table, Mapping):
        return dict(table)
    if isinstance(table, Sequence) and not isinstance(table, str | bytes):
        rows = [
            r
            if isinstance(r, FollowerProfile)
            else parse(FollowerProfile, r, root=f"followers[{i}]")
            for i, r in enumerate(table)
        ]
        if not rows:
            return {"id": [], "equity": []}
        dumped = [r.model_dump(exclude_unset=True) for r in rows]
        names = {k for d in dumped for k in d}
        out: dict[str, Any] = {k: np.array([d.get(k) for d in dumped], dtype=object) for k in names}
        out.setdefault("id", [r.id for r in rows])
        return out
    module = type(table).__module__.split(".")[0]
    if module == "pyarrow":
        return {
            name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names
        }
    if module == "pandas":
        return {str(c): table[c].to_numpy() for c in table.columns}
    if module == "polars":
        return {c: table.get_column(c).to_numpy() for c in table.columns}
    raise InvalidInput(
        f"cannot read followers from a {type(table).__name__}; pass a pyarrow Table, a pandas or "
        "polars DataFrame, a dict of columns or a list of follower rows",
        field="followers",
    )


def _float_column(values: Any, name: str, n: int, default: float | None) -> NDArray[np.float64]:
    arr = np.asarray(values)
    if arr.dtype == object:
        fill = math.nan if default is None else default
        try:
            arr = np.array([fill if v is None else float(v) for v in arr], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                f"follower column {name!r} must be numeric: {exc}", field=f"followers.{name}"
            ) from exc
    elif not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InvalidInput(
            f"follower column {name!r} must be numeric, got dtype {arr.dtype}",
            field=f"followers.{name}",
        )
    out = np.ascontiguousarray(arr, dtype=np.float64)
    if out.shape != (n,):
        raise InvalidInput(
            f"follower column {name!r} has {out.shape[0]} rows, 'id' has {n}",
            field=f"followers.{name}",
        )
    return out


def _explicit_nan(values: Any, n: int) -> NDArray[np.bool_]:
    """True where a user stated NaN (bad data), False where the value is absent (use default)."""
    if values is None:
        return np.zeros(n, dtype=np.bool_)
    arr = np.asarray(values)
    if arr.dtype == object:
        return np.array([isinstance(v, float) and math.isnan(v) for v in arr], dtype=np.bool_)
    if np.issubdtype(arr.dtype, np.floating):
        return np.asarray(np.isnan(arr), dtype=np.bool_)
    return np.zeros(n, dtype=np.bool_)


def _code_column(values: Any, names: tuple[str, ...], default: str, n: int) -> NDArray[np.int8]:
    if values is None:
        return np.full(n, names.index(default), dtype=np.int8)
    arr = np.asarray(values)
    if np.issubdtype(arr.dtype, np.integer):
        out = arr.astype(np.int8)
        out[(out < 0) | (out >= len(names))] = -1
        return out
    lookup = {name: i for i, name in enumerate(names)}
    return np.array(
        [lookup.get(str(v), -1) if v is not None else names.index(default) for v in arr],
        dtype=np.int8,
    )


# --------------------------------------------------------------------------- event


def prepare_event(
    event: LeadEvent, lead_market: MarketSpec, market: MarketSpec
) -> NDArray[np.float64]:
    """Digest a lead event into the kernel's event vector (layout in ``_normalize_kernel``)."""
    ev = np.full(nk.E_SIZE, math.nan)
    p = event.price
    before = lead_market.base_quantity(event.lead_position_before, p)
    after = lead_market.base_quantity(event.lead_position_after, p)
    sb, sa = np.sign(before), np.sign(after)
    if before == after:
        c_before, c_after = event.lead_collateral_before, event.lead_collateral_after
        if after != 0 and c_after is not None and c_before is not None and c_after != c_before:
            if c_before <= 0:
                raise InvalidInput(
                    "lead_collateral_before must be positive to mirror a margin change",
                    field="event.lead_collateral_before",
                    value=c_before,
                )
            kind, side = nk.EV_MARGIN, sa
            ev[nk.E_MARGIN_RATIO] = c_after / c_before
        else:
            kind, side = nk.EV_NONE, sa
    elif before == 0:
        kind, side = nk.EV_OPEN, sa
    elif after == 0:
        kind, side = nk.EV_CLOSE, sb
    elif sb != sa:
        kind, side = nk.EV_FLIP, sa
    elif abs(after) > abs(before):
        kind, side = nk.EV_INCREASE, sa
    else:
        kind, side = nk.EV_REDUCE, sb
        ev[nk.E_PHI] = 1.0 - abs(after) / abs(before)
    opened = abs(after) if kind in (nk.EV_OPEN, nk.EV_FLIP) else abs(after) - abs(before)
    ev[nk.E_KIND] = kind
    ev[nk.E_SIDE] = side
    ev[nk.E_PRICE] = p
    if kind in (nk.EV_OPEN, nk.EV_INCREASE, nk.EV_FLIP):
        ev[nk.E_UNITS] = opened / event.lead_equity
        ev[nk.E_OPEN_FRAC] = opened / abs(after)
        ev[nk.E_GROWTH] = opened / abs(before) if kind == nk.EV_INCREASE else 0.0
        symbol_notional = abs(after) * p
        total = max(event.lead_total_notional or symbol_notional, symbol_notional)
        ev[nk.E_LEV_TOTAL] = total / event.lead_equity
        ev[nk.E_SHARE] = symbol_notional / total
    ev[nk.E_LEAD_DIST] = _lead_liquidation_distance(event, market, after)
    ev[nk.E_STOP] = event.lead_stop_price if event.lead_stop_price is not None else math.nan
    ev[nk.E_SIGMA] = event.sigma if event.sigma is not None else math.nan
    ev[nk.E_MU] = event.expected_return if event.expected_return is not None else math.nan
    return ev


def event_curve(event: LeadEvent, cohort: Cohort) -> LiquidationCurve | None:
    """The liquidation curve for this event: GBM at the event's ``sigma`` and drift.

    Built (or taken from the cache) only when some follower has a ``max_liq_probability``;
    None when no follower needs one or the event has no ``sigma`` (those followers then get
    ``RISK_MODEL_REQUIRED``).
    """
    if event.sigma is None or np.isnan(cohort.floats["max_liq_probability"]).all():
        return None
    return LiquidationCurve.gbm(event.sigma, event.expected_return or 0.0)


def _lead_liquidation_distance(event: LeadEvent, market: MarketSpec, after: float) -> float:
    """The lead's liquidation distance after the event, priced on the follower's tier table.

    Isolated leads (``lead_collateral_after`` given) are liquidated by that margin, cross leads
    by their equity; PnL already in the position and other symbols' maintenance margin are not
    known from one event and are left out. NaN when the lead ends flat.
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
        return math.nan
    return min(max(abs(event.price - lp) / event.price, 0.0), 0.99)


# --------------------------------------------------------------------------- result

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


@dataclass(frozen=True, eq=False)
class NormalizeResult:
    """Columnar result: one row per follower (field names: docs/design.md, "Normalization").

    ``side`` is +1 buy / −1 sell / 0 no order; ``amount`` is in contracts, whole lots except a
    close, which is the follower's exact position. ``close_amount`` is the reduce-only part of
    ``amount`` (a flip is this close, then an open of the rest). ``collateral`` is the isolated
    margin to post with the order. ``reasons`` holds :class:`Reason` bits.
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
        """Rows as JSON-ready dicts: ``side`` as ``buy``/``sell``/None, ``reasons`` as names."""
        cols = self.columns
        out = []
        for i in range(len(self)):
            side = int(cols["side"][i])
            if not include_no_order and side == 0:
                continue
            row: dict[str, Any] = {}
            for name in RESULT_COLUMNS:
                v = cols[name][i]
                if name == "side":
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
    markets: Markets,
    *,
    lead_markets: Markets | None = None,
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
        The followers' venue (:func:`levalign.load_markets`).
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
        columns={"id": cohort.ids, **cols},
    )


def derisk(
    symbol: str,
    price: float,
    followers: Any,
    markets: Markets,
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
    isolated position's own margin balance (plus the free balance for ``add_margin``).
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
    cohort = Cohort.from_table(followers)
    spec = _linear_spec(markets, markets.resolve(symbol, field="symbol"), "symbol")
    spec = liquidation_market(spec, float(price))  # the follower venue's liquidation rule
    cols = allocate_result(len(cohort))
    f, t = cohort.floats, spec.tiers
    args: tuple[Any, ...] = (
        float(price),
        spec.contract_size,
        float(spec.amount_step or 0.0),
        spec.amount_decimals,
        float(spec.min_amount or 0.0),
        t.floor,
        t.cap,
        t.mmr,
        t.cum,
        t.max_leverage,
        *_curve_arrays(curve),
        *(
            f[name]
            for name in (
                "equity",
                "available_balance",
                "position",
                "entry_price",
                "collateral",
                "other_notional",
                "other_maintenance_margin",
                "min_liq_distance",
                "max_liq_probability",
                "horizon_hours",
                "derisk_distance",
            )
        ),
        cohort.codes["derisk"],
        cohort.codes["margin_mode"],
        cohort.allowed,
        *(cols[name] for name in RESULT_COLUMNS[1:]),
    )
    _dk.derisk_kernel(*args)
    return NormalizeResult(
        event_id=event_id or f"derisk:{spec.symbol}@{price:g}",
        event_kind="derisk",
        symbol=spec.symbol,
        price=float(price),
        columns={"id": cohort.ids, **cols},
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

    The kernel reads each block's inputs after writing some of its outputs, so an output
    column may share memory with no input column and no other output column.
    """
    n = len(cohort)
    inputs = {
        **cohort.floats,
        **cohort.codes,
        "allowed": cohort.allowed,
    }
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
            shared = [k for k, v in {**inputs, **cols}.items() if np.may_share_memory(col, v)]
            if shared:
                fault = f"shares memory with {shared[0]!r}: copy that column into the cohort"
        if col is None or fault is not None:
            raise InvalidInput(
                f"out must be an earlier result for these {n} followers, and its column "
                f"{name!r} {fault}; pass the result of an earlier normalize() call on this "
                "cohort, or no out",
                field="out",
            )
        cols[name] = col
    return cols


def allocate_result(n: int) -> dict[str, NDArray[Any]]:
    """Uninitialized output columns for ``n`` followers (every one is written by the kernel)."""
    return {
        "side": np.empty(n, np.int8),
        "amount": np.empty(n),
        "close_amount": np.empty(n),
        "reduce_only": np.empty(n, np.bool_),
        "leverage": np.empty(n),
        "collateral": np.empty(n),
        "target_position": np.empty(n),
        "raw_amount": np.empty(n),
        "reasons": np.empty(n, np.uint32),
        "effective_leverage": np.empty(n),
        "liquidation_price": np.empty(n),
        "liquidation_distance": np.empty(n),
        "residual": np.empty(n),
    }


def kernel_args(
    ev: NDArray[np.float64],
    spec: MarketSpec,
    cohort: Cohort,
    cols: Mapping[str, NDArray[Any]],
    curve: LiquidationCurve | None = None,
) -> tuple[Any, ...]:
    """The cohort kernel's positional arguments, in its order (outputs from ``cols``)."""
    f, c, t = cohort.floats, cohort.codes, spec.tiers
    return (
        ev,
        spec.contract_size,
        float(spec.amount_step or 0.0),
        spec.amount_decimals,
        float(spec.min_amount or 0.0),
        float(spec.min_cost or 0.0),
        t.floor,
        t.cap,
        t.mmr,
        t.cum,
        t.max_leverage,
        *_curve_arrays(curve),
        *(f[name] for name in _KERNEL_FLOATS[:7]),
        c["mode"],
        *(f[name] for name in _KERNEL_FLOATS[7:]),
        c["margin_mode"],
        c["min_size_policy"],
        f["residual"],
        cohort.allowed,
        *(cols[name] for name in RESULT_COLUMNS[1:]),
    )


_NO_CURVE = (np.empty((2, 0, 0)), np.empty(0), np.empty(0))


def _curve_arrays(curve: LiquidationCurve | None) -> tuple[NDArray[np.float64], ...]:
    """The curve's (table, log distances, horizons) kernel arguments; empty without a curve."""
    if curve is None:
        return _NO_CURVE
    return (curve.table, curve.log_distance, curve.horizon_hours)


# float columns in the kernel's argument order (``mode`` sits after the first seven)
_KERNEL_FLOATS = (
    "equity",
    "available_balance",
    "position",
    "entry_price",
    "collateral",
    "other_notional",
    "other_maintenance_margin",
    "scale",
    "fixed_notional",
    "risk_fraction",
    "vol_target",
    "sigma",
    "stop_sigmas",
    "max_leverage",
    "max_position_leverage",
    "min_liq_distance",
    "max_liq_probability",
    "horizon_hours",
    "max_notional",
    "expected_return",
    "leverage_setting",
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
    followers.
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
