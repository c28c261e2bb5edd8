r"""Backtest replay: a lead's history through normalization and the paper venue, on real bars.

:func:`backtest` walks the price bars of one linear market, turns the lead's history into
:class:`~levalign.schemas.LeadEvent` objects, decides every event for the whole cohort with
:func:`levalign.engine.decide.decide` (the live engine's decision code:
:func:`levalign.normalize.normalize` on the venue's current state, with the copy rules) and
fills the orders on a :class:`~levalign.venues.paper.PaperVenue` (fees, slippage, funding,
liquidation at the margin engine's price at every bar). No sizing or margin arithmetic lives
here: the kernel sizes, the venue fills, funds and liquidates; this module orders the calls in
time and measures the outcome.

Time
----
A bar's timestamp is its open time; bar :math:`k` covers :math:`[t_k, t_{k+1})` and its close
time is :math:`t_{k+1} - 1\,\text{ms}` (Binance's kline ``close_time``). Bars must lie on one
grid (a missing bar is an error, or forward-filled with ``gaps="ffill"``: the bar repeats the
previous close as open, high, low and close). An event at time :math:`t_e` in bar :math:`k`:

* **at the bar's close** (:math:`t_e \ge t_{k+1} - 1\,\text{ms}`; how
  :func:`~levalign.backtest.strategies.generate_lead` and kline-driven bots stamp their fills):
  bar :math:`k` is walked whole, then the event fills. The bar is complete, so nothing later is
  seen.
* **inside the bar** (:math:`t_k \le t_e < t_{k+1} - 1\,\text{ms}`, e.g. a lead's own
  liquidation, stamped mid-bar): the bar is split. Before the event the venue walks a
  sub-bar holding only prices known to have traded by then — the open and the event's own fill
  price, and by continuity every price between them (high :math:`= \max(o, p_e)`, low
  :math:`= \min(o, p_e)`, mark :math:`p_e`); several events in one bar chain such sub-bars
  from fill to fill. After the last event the rest of the bar is walked with the bar's full
  high, low and close. Positions held *before* an event therefore never see a price from
  after it (no look-ahead). Positions opened at the event see the bar's extremes, which may
  have come before it: the conservative side, since OHLC data cannot tell. The venue counts
  each segment of a split bar as a bar (time in market, drawdown marks).

Funding at time :math:`t_f` is settled at the last bar boundary at or before it, after the
bars that end there and the events at their close, with that bar's close as the mark (no
look-ahead; on a grid of whole minutes or hours :math:`t_f` is a boundary). Funding times
outside the bars are ignored. Liquidation is the venue's, at every bar, and so is de-risking
(followers with a ``derisk_distance``, checked at each bar's close; see
:mod:`levalign.venues.paper`); with de-risking on, every sample ends a venue walk.

The P&L gap
-----------
The gap is the follower's P&L minus the lead's, scaled by the capital ratio the sizing
uses. The lead's history splits time into intervals :math:`k` between its fills; at fill
:math:`k` the ratio is :math:`\rho_k = E^F_k / E^L_k`, the follower's equity at the fill price
before its order over the lead's equity after its fill (what ``proportional`` sizing
multiplies the lead's order by); before the first fill :math:`\rho = E^F_0 / E^L_0`, with
:math:`E^L_0` the first row's equity plus its fee. Over interval :math:`k` the lead's equity
changes by :math:`\Delta E^L_k` (its history's equity before fill :math:`k+1`, i.e. after it
plus its fee, or its last equity marked to the last close, minus its equity after fill
:math:`k`), and at each fill by minus its fee :math:`f_k`:

.. math:: G = \Delta E^F - \sum_k \rho_k\,\Delta E^L_k + \sum_k \rho_k f_k
          = \underbrace{-\Big(F^F - \sum_k \rho_k f_k\Big)}_{\text{fees}}
          \underbrace{-\Big(\Phi^F - \sum_t \rho_{k(t)} \Phi^L_t\Big)}_{\text{funding}}
          \underbrace{-\,S^F}_{\text{slippage}}
          \underbrace{-\,L^F}_{\text{liquidation}}
          + \text{skips} + \text{rounding} + \text{sizing}

A ratio that follows the follower's equity keeps the frictions of one interval out of the
next: a follower that paid more fees holds proportionally less afterwards, as its sizing
does, and is compared with a lead scaled down by as much (with the starting ratio instead,
every later interval would count the compounding of earlier fees as a gap of its own).
:math:`F` fees (the lead's :math:`f_k` from its history's ``fee`` column), :math:`\Phi`
funding (the lead's :math:`\Phi^L_t` priced by a shadow venue account holding the lead's
position, with the same rates and marks as the followers, scaled by the ratio of the interval
holding :math:`t`), :math:`S` slippage against fills at the lead's price,
:math:`L` what liquidations left to the insurance fund (the venue's columns). A venue fill at
the lead's price has no slippage for the lead by definition. **Skips** and **rounding** are
what exposure the follower missed (or held extra) because of them earned, at the lead's fill
prices: per follower a signed exposure ledger :math:`X` (contracts, actual minus the
follower's own counterfactual) is kept for each cause and valued as
:math:`\sum X\,c\,\Delta p` between events (and to the liquidation price or the last close).
Skips: an opening or increase the kernel left out (``SKIPPED``; for ``accumulate`` followers
the carried ``residual``), and a reduction not made for the minimum size. Rounding: the lot
rounding (and minimum-size round-ups) of openings the constraints did not bind (the kernel
reports the unconstrained amount ``raw_amount``; a constrained order's rounding, under one
lot, stays in sizing) and of reductions (the exact cut is :math:`\phi |q|`). Ledgers are cut
by the fraction :math:`\phi` of every lead reduction, cleared when the lead closes or flips
and when the follower is liquidated, and for the target modes (``target_leverage``,
``risk_constant``, ``vol_target``, ``optimal``) cleared at each increase, since their next
order re-targets the whole position.
**Sizing** is the remainder: the sizing mode and scale, the constraints (leverage caps,
liquidation buffer, margin), a position held through a liquidation instead of the lead's
de-risking, the follower's own de-risking cuts (their fees and slippage are in those parts),
and the drift of a position built at earlier ratios (second order). The parts add
up to the gap by construction.

Tracking error
--------------
Per sample of ``sample_minutes``, follower and lead returns
:math:`r_j = E_j / E_{j-1} - 1` (0 for a follower with no equity left); the tracking error is
the annualized standard deviation of their difference (active risk; Roll, "A Mean/Variance
Analysis of Tracking Error", J. Portfolio Management 18(4), 1992; Grinold & Kahn, *Active
Portfolio Management*, 2nd ed., 2000, ch. 4):

.. math:: \mathrm{TE} = \sqrt{\tfrac{525\,600}{\text{sample\_minutes}}}\;
          \operatorname{sd}\big(r^F_j - r^L_j\big)

The lead's equity between its fills is its last reported equity marked to the bar's close
(its history states equity at fills only; funding it paid in between shows at its next fill).

Naive copiers
-------------
Rows of group ``naive`` copy as exchanges' fixed-ratio copy trading does: ``proportional``
sizing, ``min_liq_distance`` 0, no caps, isolated margin at the lead's leverage *setting* (the
history's ``leverage_setting``; ``default_leverage_setting`` when it states none), which the
replay writes into their ``leverage_setting`` column before each event. Rows of group
``naive_derisk`` are the same naive copiers keeping their ``derisk_distance`` (plain ``naive``
rows lose any): what a single safeguard does for an exchange-style copier.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from levalign import _layout as layout
from levalign import _normalize_kernel as nk
from levalign._columns import columns_of
from levalign._progress import progress_bar
from levalign.backtest.strategies import FundingRates, load_funding
from levalign.engine.decide import CopyRules, decide
from levalign.errors import InvalidInput
from levalign.exposure import effective_leverage, liquidation_distance
from levalign.markets import Markets, MarketSpec
from levalign.normalize import (
    MARGIN_MODES,
    MODES,
    POLICIES,
    Cohort,
    NormalizeResult,
    Reason,
    allocate_result,
    prepare_event,
)
from levalign.risk.first_passage import touch_probability
from levalign.risk.ohlc import OHLC, load_ohlc, ohlc_from_arrays
from levalign.risk.volatility import close_to_close
from levalign.samples import sample_cohort
from levalign.schemas import FollowerProfile, LeadEvent
from levalign.sources.replay import LeadHistory, format_timestamp, load_lead_history
from levalign.venues import _paper_kernels as vk
from levalign.venues.paper import DEFAULT_SLIPPAGE, ExecutionReport, PaperVenue, SlippageModel

__all__ = [
    "GAP_PARTS",
    "NAIVE",
    "NAIVE_DERISK",
    "BacktestResult",
    "backtest",
    "naive_cohort",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Progress = Callable[[int, int], None]
LeadInput = LeadHistory | str | Path | Iterable[Mapping[str, Any]]

#: group label of the naive copiers (exchanges' fixed-ratio copy at the lead's setting)
NAIVE = "naive"
#: naive copiers with their own de-risking floor (``derisk_distance``), nothing else changed
NAIVE_DERISK = "naive_derisk"
_NAIVE_GROUPS = (NAIVE, NAIVE_DERISK)
#: the floor ``naive_cohort`` gives group ``naive_derisk``
DEMO_DERISK_DISTANCE = 0.02
#: the parts of the follower-vs-lead P&L gap, in the order they are reported
GAP_PARTS = ("fees", "funding", "slippage", "liquidation", "skips", "rounding", "sizing")

_MS = 1_000_000  # ns
_NS_PER_HOUR = 3_600_000_000_000
_MINUTES_PER_YEAR = 525_600.0
_HOURS_PER_YEAR = 8_760.0
_MIN_VOL_BARS = 10  # close_to_close needs 10 closes
_ACCUMULATE = POLICIES.index("accumulate")
_TARGET_MODES = tuple(
    MODES.index(m) for m in ("target_leverage", "risk_constant", "vol_target", "optimal")
)
_CONSTRAINTS = int(
    Reason.POSITION_LEVERAGE
    | Reason.TIER_LIMIT
    | Reason.ACCOUNT_LEVERAGE
    | Reason.LIQ_BUFFER
    | Reason.AVAILABLE_MARGIN
    | Reason.MAX_NOTIONAL
)
#: the naive copier's profile (module docstring, "Naive copiers"), forced on group ``naive``
_NAIVE_FLOATS = {
    "scale": 1.0,
    "min_liq_distance": 0.0,
    "max_liq_probability": math.nan,
    "max_leverage": math.inf,
    "max_position_leverage": math.inf,
    "max_notional": math.inf,
}
_NAIVE_CODES = {"mode": "proportional", "margin_mode": "isolated", "min_size_policy": "skip"}
_CATEGORIES = {"mode": MODES, "margin_mode": MARGIN_MODES, "min_size_policy": POLICIES}


# --------------------------------------------------------------------------- cohorts


def naive_cohort(n: int, seed: int) -> dict[str, NDArray[Any]]:
    """Naive copiers beside every normalization mode, on the demo's sample profiles.

    Row ``i`` goes to group ``("naive", "naive_derisk", *MODES)[i % 8]``, so every group draws
    its equities from the same distribution (log-normal around 2,000 USDT, 50 to 500,000).
    Naive rows copy as exchanges do: ``proportional``, ``scale`` 1, ``min_liq_distance`` 0, no
    leverage or notional caps, isolated margin, ``skip`` below the exchange minimum (the
    replay sets their leverage setting to the lead's before each event). ``naive_derisk``
    rows are naive copiers with one safeguard: a de-risking floor ``derisk_distance`` of
    :data:`DEMO_DERISK_DISTANCE` (cut back whenever a bar closes within 2% of
    liquidation). Mode rows keep the sample profile
    (scale, buffers, caps, margin mode, min-size policy); ``optimal`` rows take an expected
    return of 50% a year in the lead's direction and ``max_liq_probability`` 5% over 24 h,
    since the optimal mode needs a view on drift.

    Parameters
    ----------
    n
        Number of followers (at least 1).
    seed
        Seed of :func:`levalign.samples.sample_cohort`.

    Returns
    -------
    dict
        Columns for :func:`backtest` (``id``, ``group``, ``equity``, ``mode`` and the profile
        columns); any Arrow-compatible table with these columns works the same.

    Raises
    ------
    InvalidInput
        ``n`` below 1.
    """
    if n < 1:
        raise InvalidInput(f"n must be at least 1 follower, got {n}", field="n", value=n)
    base = sample_cohort(n, seed)
    labels = np.array([*_NAIVE_GROUPS, *MODES])
    group = labels[np.arange(n) % labels.size]
    naive = np.isin(group, _NAIVE_GROUPS)
    out: dict[str, NDArray[Any]] = {k: np.asarray(v).copy() for k, v in base.items()}
    out["group"] = group
    out["mode"] = group
    optimal = group == "optimal"
    out["expected_return"] = np.where(optimal, 0.5, math.nan)
    out["max_liq_probability"] = np.where(optimal, 0.05, math.nan)
    for name, value in _NAIVE_FLOATS.items():
        current = out[name] if name in out else np.full(n, layout.BY_NAME[name].default)
        out[name] = np.where(naive, value, current)
    for name, label in _NAIVE_CODES.items():
        out[name] = np.where(naive, label, out[name])
    out["derisk_distance"] = np.where(group == NAIVE_DERISK, DEMO_DERISK_DISTANCE, math.nan)
    return out


# --------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False)
class BacktestResult:
    r"""What a replay did, per follower, per group over time, and for the lead.

    Curves are sampled every ``sample_minutes`` at bar boundaries (after the bars that end
    there, the events at their close and funding); sample 0 is the start. Group arrays are
    ``(groups, samples)``, rows in the order of ``groups``.

    Attributes
    ----------
    symbol, bar_minutes, sample_minutes, horizon_hours
        The replayed market, its bar length, the sampling step and the P(liquidation) horizon.
    groups
        Group names: ``naive`` first when present, then the modes, then any other labels.
    group
        Group code of each follower (index into ``groups``).
    followers
        Per-follower columns (see :meth:`follower_columns`).
    time, price, sigma
        Sample times (ns since the epoch), the mark (the last bar's close; the first bar's
        open at sample 0) and the annualized close-to-close volatility of the trailing
        ``vol_window_hours`` (NaN before enough bars).
    lead_equity, lead_position, lead_effective_leverage
        The lead's equity (its history's, marked to the sample's price), signed contracts
        and :math:`\sum|N|/E`.
    equity_sum, equity_median
        Sum and median of the group's follower equities.
    effective_leverage
        The group's :math:`\sum|N| / \sum E` (:func:`levalign.exposure.effective_leverage`).
    effective_leverage_median, liquidation_distance_median, liquidation_distance_min
        Over the group's followers holding a position (NaN when none does); distance as a
        fraction of the mark (:func:`levalign.exposure.liquidation_distance`).
    in_market, liquidated
        Fraction of the group holding a position; followers liquidated so far (cumulative).
    representative
        Per group, the row of the follower whose starting equity is nearest the group's
        median.
    representative_equity, representative_effective_leverage,
    representative_liquidation_distance, representative_p_liquidation
        That follower's equity, leverage, distance and closed-form GBM probability of
        liquidation within ``horizon_hours`` at the sample's volatility
        (:func:`levalign.risk.first_passage.touch_probability`, zero drift; 0 when
        flat, NaN without a volatility).
    events
        Per lead event: ``time`` (ns), ``kind``, ``price``, ``orders`` (followers filled),
        ``skipped`` (followers whose copy was left out for the minimum size).
    lead
        The lead's figures: ``equity_start``, ``equity_end``, ``pnl``, ``return``, ``fees``,
        ``funding`` (shadow account), ``max_drawdown`` (at samples), ``events``.
    venue
        The followers' paper venue at the end (state, running totals).
    """

    symbol: str
    bar_minutes: float
    sample_minutes: int
    horizon_hours: float
    groups: tuple[str, ...]
    group: IntArray
    followers: dict[str, NDArray[Any]]
    time: IntArray
    price: FloatArray
    sigma: FloatArray
    lead_equity: FloatArray
    lead_position: FloatArray
    lead_effective_leverage: FloatArray
    equity_sum: FloatArray
    equity_median: FloatArray
    effective_leverage: FloatArray
    effective_leverage_median: FloatArray
    liquidation_distance_median: FloatArray
    liquidation_distance_min: FloatArray
    in_market: FloatArray
    liquidated: IntArray
    representative: IntArray
    representative_equity: FloatArray
    representative_effective_leverage: FloatArray
    representative_liquidation_distance: FloatArray
    representative_p_liquidation: FloatArray
    events: dict[str, NDArray[Any]]
    lead: dict[str, float]
    venue: PaperVenue

    @staticmethod
    def follower_columns() -> tuple[str, ...]:
        r"""Names of the per-follower columns in :attr:`followers`, in order.

        ``id, group, mode, equity_start, equity_end, pnl, return, max_drawdown,
        liquidations, derisks`` (de-risking fills and top-ups), ``time_in_market, orders,
        skipped_copies, tracking_error, fees, funding, slippage, liquidation_losses,
        lead_pnl_scaled, gap`` and ``gap_<part>`` for every part in :data:`GAP_PARTS`, and
        ``accounting_residual`` (the venue's identity, zero to rounding).
        ``lead_pnl_scaled`` is :math:`\sum_k \rho_k \Delta E^L_k - \sum_k \rho_k f_k` and
        ``gap`` is ``pnl`` minus it (module docstring, "The P&L gap").
        """
        return (
            "id",
            "group",
            "mode",
            "equity_start",
            "equity_end",
            "pnl",
            "return",
            "max_drawdown",
            "liquidations",
            "derisks",
            "time_in_market",
            "orders",
            "skipped_copies",
            "tracking_error",
            "fees",
            "funding",
            "slippage",
            "liquidation_losses",
            "lead_pnl_scaled",
            "gap",
            *(f"gap_{p}" for p in GAP_PARTS),
            "accounting_residual",
        )

    def group_rows(self, name: str) -> IntArray:
        """Row indices of the followers in group ``name``.

        Raises
        ------
        InvalidInput
            An unknown group.
        """
        if name not in self.groups:
            raise InvalidInput(
                f"no group {name!r} in this backtest; groups: {', '.join(self.groups)}",
                field="group",
                value=name,
            )
        return np.flatnonzero(self.group == self.groups.index(name))

    def summary(self) -> list[dict[str, Any]]:
        """One row per group: outcome medians, liquidations and the gap's parts summed.

        Keys: ``group, followers, liquidated, liquidated_share, derisked`` (followers de-risked
        at least once), ``return_median, return_mean, return_p05, max_drawdown_median,
        tracking_error_median, time_in_market_median, skipped_copies, equity_start,
        equity_end, pnl, gap`` and ``gap_<part>`` (sums over the group, settle currency).
        """
        f = self.followers
        rows: list[dict[str, Any]] = []
        for g, name in enumerate(self.groups):
            sel = self.group == g
            row: dict[str, Any] = {
                "group": name,
                "followers": int(np.count_nonzero(sel)),
                "liquidated": int(np.count_nonzero(f["liquidations"][sel] > 0)),
            }
            row["liquidated_share"] = row["liquidated"] / max(row["followers"], 1)
            row["derisked"] = int(np.count_nonzero(f["derisks"][sel] > 0))
            ret = f["return"][sel]
            row["return_median"] = _stat(np.nanmedian, ret)
            row["return_mean"] = _stat(np.nanmean, ret)
            row["return_p05"] = _stat(lambda x: np.nanquantile(x, 0.05), ret)
            row["max_drawdown_median"] = _stat(np.nanmedian, f["max_drawdown"][sel])
            row["tracking_error_median"] = _stat(np.nanmedian, f["tracking_error"][sel])
            row["time_in_market_median"] = _stat(np.nanmedian, f["time_in_market"][sel])
            row["skipped_copies"] = int(f["skipped_copies"][sel].sum())
            for name_ in ("equity_start", "equity_end", "pnl", "gap"):
                row[name_] = float(f[name_][sel].sum())
            for part in GAP_PARTS:
                row[f"gap_{part}"] = float(f[f"gap_{part}"][sel].sum())
            rows.append(row)
        return rows

    def curves(self) -> dict[str, NDArray[Any]]:
        """The sampled arrays by name (what a report plots)."""
        return {
            "time": self.time,
            "price": self.price,
            "sigma": self.sigma,
            "lead_equity": self.lead_equity,
            "lead_position": self.lead_position,
            "lead_effective_leverage": self.lead_effective_leverage,
            "equity_sum": self.equity_sum,
            "equity_median": self.equity_median,
            "effective_leverage": self.effective_leverage,
            "effective_leverage_median": self.effective_leverage_median,
            "liquidation_distance_median": self.liquidation_distance_median,
            "liquidation_distance_min": self.liquidation_distance_min,
            "in_market": self.in_market,
            "liquidated": self.liquidated,
            "representative_equity": self.representative_equity,
            "representative_effective_leverage": self.representative_effective_leverage,
            "representative_liquidation_distance": self.representative_liquidation_distance,
            "representative_p_liquidation": self.representative_p_liquidation,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: settings, the lead, the per-group summary and every curve (NaN: None)."""
        return {
            "symbol": self.symbol,
            "bar_minutes": self.bar_minutes,
            "sample_minutes": self.sample_minutes,
            "horizon_hours": self.horizon_hours,
            "groups": list(self.groups),
            "representative": [int(r) for r in self.representative],
            "lead": {k: _scalar(v) for k, v in self.lead.items()},
            "summary": [{k: _scalar(v) for k, v in row.items()} for row in self.summary()],
            "curves": {k: _json(v) for k, v in self.curves().items()},
            "events": {k: _json(v) for k, v in self.events.items()},
        }


def _stat(fn: Callable[[FloatArray], Any], x: FloatArray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(fn(x)) if np.isfinite(x).any() else math.nan


def _scalar(v: Any) -> Any:
    """A float that is NaN or infinite as None (JSON has neither)."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _json(a: NDArray[Any]) -> list[Any]:
    """An array as nested lists, NaN and infinities as None."""
    if a.ndim > 1:
        return [_json(r) for r in a]
    if a.dtype.kind == "f":
        return [float(v) if math.isfinite(v) else None for v in a.tolist()]
    return list(a.tolist())


# --------------------------------------------------------------------------- input


def _lead_of(lead: LeadInput, markets: Markets) -> LeadHistory:
    history = lead if isinstance(lead, LeadHistory) else load_lead_history(lead, markets=markets)
    if len(history) == 0:
        raise InvalidInput("the lead history has no rows: nothing to replay", field="lead")
    return history


def _bars_of(
    bars: OHLC | str | Path | Mapping[str, OHLC | str | Path],
    history: LeadHistory,
    markets: Markets,
    symbol: str | None,
) -> tuple[str, OHLC]:
    """The replayed symbol and its validated bars; every lead symbol must have prices."""
    if isinstance(bars, Mapping):
        priced = {markets.resolve(str(k), field=f"bars[{k!r}]"): v for k, v in bars.items()}
    else:
        if symbol is None:
            if len(history.symbols) != 1:
                raise InvalidInput(
                    f"the lead trades {', '.join(history.symbols)} and bars are one price "
                    "series: name its market with symbol=, or pass bars as {symbol: bars}",
                    field="symbol",
                )
            symbol = history.symbols[0]
        priced = {markets.resolve(symbol, field="symbol"): bars}
    traded: dict[str, int] = {}
    for s in history.symbols:
        j = int(np.argmax(history.symbol == s))
        name = markets.resolve(s, field=f"lead.rows[{int(history.row[j])}].symbol")
        if name not in priced:
            raise InvalidInput(
                f"lead {history.where(j)} trades {s}, which has no prices (bars are for "
                f"{', '.join(priced)}): pass its bars, or leave its rows out of the history",
                field=f"lead.rows[{int(history.row[j])}].symbol",
                value=s,
            )
        traded.setdefault(name, j)
    if len(traded) > 1:
        raise InvalidInput(
            f"the lead trades {', '.join(traded)}: a replay runs one market (one paper venue); "
            "split the history by symbol and replay each",
            field="lead.symbol",
        )
    name = next(iter(traded))
    return name, _checked_ohlc(priced[name], "bars")


def _checked_ohlc(raw: OHLC | str | Path, label: str) -> OHLC:
    """Bars loaded if need be and validated, errors named ``label.<field>``.

    Validated again when given as OHLC: one built by hand skips ``ohlc_from_arrays``' checks.
    """
    ohlc = raw if isinstance(raw, OHLC) else load_ohlc(raw)
    try:
        return ohlc_from_arrays(ohlc.timestamp, ohlc.open, ohlc.high, ohlc.low, ohlc.close)
    except InvalidInput as exc:
        raise InvalidInput(
            f"{label.replace('_', ' ')}: {exc.message}",
            field=f"{label}.{exc.field}",
            value=exc.value,
        ) from exc


def _mark_bars_of(
    raw: OHLC | str | Path | None, bars: OHLC, gaps: Literal["error", "ffill"]
) -> OHLC:
    """The mark-price bars, validated and on the grid of ``bars`` (``bars`` when None)."""
    if raw is None:
        return bars
    mark, _ = _on_grid(_checked_ohlc(raw, "mark_bars"), gaps)
    if mark.timestamp.shape != bars.timestamp.shape or not np.array_equal(
        mark.timestamp, bars.timestamp
    ):
        n = min(mark.timestamp.size, bars.timestamp.size)
        differ = np.flatnonzero(mark.timestamp[:n] != bars.timestamp[:n])
        i = int(differ[0]) if differ.size else n
        raise InvalidInput(
            f"mark bars must lie on the bars' timestamps: {mark.timestamp.size} mark bars "
            f"against {bars.timestamp.size} bars, first difference at row {i}; fetch both "
            "klines for the same interval and period",
            field=f"mark_bars.timestamp[{i}]",
        )
    return mark


def _on_grid(ohlc: OHLC, gaps: Literal["error", "ffill"]) -> tuple[OHLC, int]:
    """Bars on one grid of the bar length; a missing bar is an error or forward-filled."""
    if gaps not in ("error", "ffill"):
        raise InvalidInput(
            f"gaps must be 'error' or 'ffill', got {gaps!r}", field="gaps", value=str(gaps)
        )
    ts = ohlc.timestamp
    bar_ns = round(ohlc.bar_hours * _NS_PER_HOUR)
    step = np.diff(ts)
    off = step % bar_ns != 0
    if off.any():
        i = int(np.argmax(off)) + 1
        raise InvalidInput(
            f"bars.timestamp[{i}] ({format_timestamp(int(ts[i]))}) is off the grid of "
            f"{bar_ns / 60e9:g}-minute bars: bars must be evenly spaced",
            field=f"bars.timestamp[{i}]",
            value=int(ts[i]),
        )
    missing = step // bar_ns - 1
    if not missing.any():
        return ohlc, bar_ns
    if gaps == "error":
        i = int(np.argmax(missing > 0)) + 1
        raise InvalidInput(
            f"{int(missing[i - 1])} bar(s) missing before bars.timestamp[{i}] "
            f"({format_timestamp(int(ts[i]))}): prices must have no gaps; fill them, cut the "
            "replay, or pass gaps='ffill' to repeat the previous close over the gap",
            field=f"bars.timestamp[{i}]",
            value=int(ts[i]),
        )
    slot = (ts - ts[0]) // bar_ns
    n = int(slot[-1]) + 1
    have = np.zeros(n, dtype=np.bool_)
    have[slot] = True
    src = np.maximum.accumulate(np.where(have, np.arange(n), 0))  # last real bar at or before
    pos = np.empty(n, dtype=np.int64)
    pos[slot] = np.arange(slot.size)
    idx = pos[src]
    fill = ~have
    close = ohlc.close[idx]

    def col(values: FloatArray) -> FloatArray:
        return np.where(fill, close, values[idx])

    filled = OHLC(
        timestamp=ts[0] + np.arange(n, dtype=np.int64) * bar_ns,
        open=col(ohlc.open),
        high=col(ohlc.high),
        low=col(ohlc.low),
        close=close,
        bar_hours=ohlc.bar_hours,
    )
    return filled, bar_ns


def _followers_of(followers: Any) -> tuple[dict[str, Any], NDArray[np.str_]]:
    """The cohort's columns without ``group``, and each row's group label (default: mode)."""
    columns = columns_of(followers, FollowerProfile)
    group_raw = columns.pop("group", None)
    if "position" in columns:
        pos = np.asarray(columns["position"], dtype=object)
        held = np.array([v is not None and float(v) != 0.0 for v in pos], dtype=np.bool_)
        if held.any():
            i = int(np.argmax(held))
            raise InvalidInput(
                f"follower row {i} starts with position {pos[i]}: followers start flat in a "
                "replay (capital only); drop the position column",
                field=f"followers.position[{i}]",
                value=float(pos[i]),
            )
    n = len(np.asarray(columns.get("id", [])))
    if group_raw is None:
        modes = columns.get("mode")
        labels = np.full(n, MODES[0]) if modes is None else np.asarray([str(m) for m in modes])
    else:
        labels = np.asarray([str(g) for g in np.asarray(group_raw, dtype=object)])
        if labels.shape != (n,):
            raise InvalidInput(
                f"follower column 'group' has {labels.size} rows, 'id' has {n}",
                field="followers.group",
            )
    return columns, labels.astype(np.str_)


def _naive_profile(cohort: Cohort, naive: NDArray[np.bool_], plain: NDArray[np.bool_]) -> Cohort:
    """The cohort with the naive profile on the naive rows, whatever their columns said.

    ``plain`` rows (group ``naive``) also lose any de-risking floor; ``naive_derisk`` rows
    keep theirs.
    """
    floats = dict(cohort.floats)
    codes = dict(cohort.codes)
    for name, value in _NAIVE_FLOATS.items():
        floats[name] = np.where(naive, value, floats[name])
    floats["derisk_distance"] = np.where(plain, math.nan, floats["derisk_distance"])
    for name, label in _NAIVE_CODES.items():
        code = _CATEGORIES[name].index(label)
        codes[name] = np.where(naive, code, codes[name]).astype(np.int8)
    return Cohort(ids=cohort.ids, floats=floats, codes=codes, allowed=cohort.allowed)


def _group_order(labels: NDArray[np.str_]) -> tuple[tuple[str, ...], IntArray]:
    present = set(labels.tolist())
    ordered = [g for g in (*_NAIVE_GROUPS, *MODES) if g in present]
    ordered += sorted(present - set(ordered))
    lookup = {g: i for i, g in enumerate(ordered)}
    return tuple(ordered), np.array([lookup[g] for g in labels.tolist()], dtype=np.int64)


# --------------------------------------------------------------------------- replay


def backtest(  # noqa: PLR0913 - keyword-only options, each documented
    lead: LeadInput,
    bars: OHLC | str | Path | Mapping[str, OHLC | str | Path],
    followers: Any,
    markets: Markets,
    *,
    symbol: str | None = None,
    funding: FundingRates | str | Path | None = None,
    taker_fee: float = 0.0005,
    slippage: SlippageModel = DEFAULT_SLIPPAGE,
    sample_minutes: int = 60,
    horizon_hours: float = 24.0,
    vol_window_hours: float = 24.0,
    default_leverage_setting: float = 20.0,
    gaps: Literal["error", "ffill"] = "error",
    mark_bars: OHLC | str | Path | None = None,
    progress: bool | Progress = False,
) -> BacktestResult:
    """Replay a lead's history for a cohort of followers on real price bars.

    See the module docstring for the time convention, the naive copiers and the P&L gap.

    Parameters
    ----------
    lead
        The lead's history (:class:`~levalign.sources.replay.LeadHistory`, or a file or rows
        that :func:`~levalign.sources.replay.load_lead_history` reads).
    bars
        The market's OHLC bars (:class:`~levalign.risk.ohlc.OHLC` or a file that
        :func:`~levalign.risk.ohlc.load_ohlc` reads), or ``{symbol: bars}``.
    followers
        The cohort: any table :class:`levalign.normalize.Cohort` reads (``id``, ``equity``,
        ``mode`` and the profile columns), plus an optional ``group`` label per row
        (``naive`` marks naive copiers; default: the row's mode). Followers start flat.
    markets
        The venue's markets (:func:`levalign.load_markets`); the lead trades the same venue.
    symbol
        The market of ``bars`` when it is one series; default the lead's only symbol.
    funding
        Funding rates (:func:`~levalign.backtest.strategies.load_funding` or its file), or
        None for no funding.
    taker_fee, slippage
        The venue's fee rate and fill-price model.
    sample_minutes
        Sampling step of the curves and of the tracking error: a whole number of bars.
    horizon_hours
        Horizon of the representative followers' P(liquidation).
    vol_window_hours
        Trailing window of the close-to-close volatility given to events that state no
        ``sigma`` (``vol_target``, ``risk_constant``, ``optimal`` and ``max_liq_probability``
        need one) and to P(liquidation).
    default_leverage_setting
        The naive copiers' setting when the history states none (Binance's default is 20x).
    gaps
        ``"error"`` (default): a missing bar is an error; ``"ffill"``: it repeats the
        previous close.
    mark_bars
        Mark-price klines of the market on the same grid as ``bars`` (Binance
        ``/fapi/v1/markPriceKlines``), or None to use ``bars`` as the mark. With them,
        liquidation and de-risking are tested on the mark (its high, low and close, as
        exchanges liquidate), equity, funding and the curves are marked to it, and fills
        stay at the lead's prices.
    progress
        True for a progress bar (rich), or a callback ``(bars_done, bars_total)``.

    Returns
    -------
    BacktestResult

    Raises
    ------
    InvalidInput
        Bars unsorted, duplicated, off their grid or with a gap (``gaps="error"``) or a bad
        price; mark bars on other timestamps than ``bars``; a lead symbol with no prices, or
        more than one market; a lead event before the first bar or after the last; a follower
        with negative or non-finite equity or an open position; ``sample_minutes`` not a
        whole number of bars; bad settings. Each names the field.
    ConfigurationError
        The market is inverse (the paper venue is linear).
    """
    history = _lead_of(lead, markets)
    name, ohlc = _bars_of(bars, history, markets, symbol)
    ohlc, bar_ns = _on_grid(ohlc, gaps)
    mark = _mark_bars_of(mark_bars, ohlc, gaps)
    rates = load_funding(funding) if isinstance(funding, str | Path) else funding
    _check_settings(
        sample_minutes, bar_ns, horizon_hours, vol_window_hours, default_leverage_setting
    )
    _check_lead_on_bars(history, ohlc, bar_ns, markets[name])
    if rates is not None:
        _check_funding_period(rates, ohlc, bar_ns)
    replay = _Replay(
        history=history,
        ohlc=ohlc,
        mark=mark,
        bar_ns=bar_ns,
        followers=followers,
        markets=markets,
        symbol=name,
        taker_fee=taker_fee,
        slippage=slippage,
        sample_bars=round(sample_minutes * 60e9 / bar_ns),
        sample_minutes=sample_minutes,
        horizon_hours=horizon_hours,
        vol_window_hours=vol_window_hours,
        default_leverage_setting=default_leverage_setting,
        funding=rates,
    )
    return replay.run(progress)


FILL_PRICE_TOLERANCE = 0.05
"""How far outside its bar's low-high range a lead fill may lie (5%: a perpetual's basis to
spot bars and a market order's slippage fit, another market or a units error does not)."""


def _check_lead_on_bars(history: LeadHistory, ohlc: OHLC, bar_ns: int, spec: MarketSpec) -> None:
    """Refuse a lead whose fills the bars cannot have printed, or that is past liquidation.

    A fill more than ``FILL_PRICE_TOLERANCE`` outside the range of the bar it falls in (or
    the bar before, for a fill at a bar's open) means the lead file and the bars are not the
    same market, or one of them has other units. A lead whose equity after a fill is not above
    the maintenance margin of its position is already past its own liquidation (its equity or
    its position is wrong). Events outside the bars are left to the replay's own message.

    Raises
    ------
    InvalidInput
        Naming the lead row, its price or equity, and the bar or margin it contradicts.
    """
    ts = ohlc.timestamp
    k = np.searchsorted(ts, history.timestamp, side="right") - 1
    inside = (k >= 0) & (history.timestamp < ts[-1] + bar_ns)
    k = np.clip(k, 0, ts.size - 1)
    prev = np.maximum(k - 1, 0)
    at_open = history.timestamp == ts[k]
    lo = np.where(at_open, np.minimum(ohlc.low[k], ohlc.low[prev]), ohlc.low[k])
    hi = np.where(at_open, np.maximum(ohlc.high[k], ohlc.high[prev]), ohlc.high[k])
    tol = FILL_PRICE_TOLERANCE
    off = inside & ((history.price > hi * (1 + tol)) | (history.price < lo * (1 - tol)))
    if off.any():
        j = int(np.argmax(off))
        raise InvalidInput(
            f"lead {history.where(j)} fills at {history.price[j]:g} at "
            f"{format_timestamp(int(history.timestamp[j]))}, but the bar there ranges "
            f"{lo[j]:g} to {hi[j]:g}: the lead file and the price bars are not the same market "
            f"({spec.symbol}), or their units differ; give the bars of the lead's market",
            field=f"lead.rows[{int(history.row[j])}].price",
            value=float(history.price[j]),
        )
    for j in range(len(history)):
        notional = spec.notional(abs(float(history.position_after[j])), float(history.price[j]))
        maintenance = spec.tiers.maintenance_margin(notional)
        if notional > 0 and not history.equity[j] > maintenance:
            raise InvalidInput(
                f"lead {history.where(j)}: equity {history.equity[j]:g} is not above the "
                f"maintenance margin {maintenance:g} of its {notional:g} position: the lead "
                "would already be liquidated at its own fill; check the equity and position "
                "columns (units, contracts against coins)",
                field=f"lead.rows[{int(history.row[j])}].equity",
                value=float(history.equity[j]),
            )


def _check_funding_period(rates: FundingRates, ohlc: OHLC, bar_ns: int) -> None:
    """Refuse funding with no settlement inside the bars' period (another period or market).

    Funding that covers only part of the period is used where it is (no funding elsewhere).

    Raises
    ------
    InvalidInput
        Naming both periods.
    """
    start, end = int(ohlc.timestamp[0]), int(ohlc.timestamp[-1]) + bar_ns
    ts = rates.timestamp
    if not ((ts >= start) & (ts < end)).any():
        span = (
            f"run from {format_timestamp(int(ts[0]))} to {format_timestamp(int(ts[-1]))}"
            if ts.size
            else "are empty"
        )
        raise InvalidInput(
            f"the funding rates {span}, the bars from {format_timestamp(start)} to "
            f"{format_timestamp(end)}: no funding falls in the replayed period; give the "
            "funding of the bars' period, or none",
            field="funding",
        )


def _check_settings(
    sample_minutes: int,
    bar_ns: int,
    horizon_hours: float,
    vol_window_hours: float,
    default_leverage_setting: float,
) -> None:
    per = sample_minutes * 60e9 / bar_ns
    if not (isinstance(sample_minutes, int) and sample_minutes > 0 and per == round(per)):
        raise InvalidInput(
            f"sample_minutes must be a positive whole number of {bar_ns / 60e9:g}-minute bars, "
            f"got {sample_minutes}",
            field="sample_minutes",
            value=sample_minutes,
        )
    for label, value in (
        ("horizon_hours", horizon_hours),
        ("vol_window_hours", vol_window_hours),
        ("default_leverage_setting", default_leverage_setting),
    ):
        if not (math.isfinite(value) and value > 0):
            raise InvalidInput(
                f"{label} must be a positive number, got {value}", field=label, value=value
            )


class _Replay:
    """The replay's state between calls: venue, ledgers, samples (see :func:`backtest`)."""

    def __init__(  # noqa: PLR0913, PLR0915 - keyword-only options, each documented; the replay set-up, one step per input, in order
        self,
        *,
        history: LeadHistory,
        ohlc: OHLC,
        mark: OHLC,
        bar_ns: int,
        followers: Any,
        markets: Markets,
        symbol: str,
        taker_fee: float,
        slippage: SlippageModel,
        sample_bars: int,
        sample_minutes: int,
        horizon_hours: float,
        vol_window_hours: float,
        default_leverage_setting: float,
        funding: FundingRates | None,
    ) -> None:
        self.history = history
        self.ohlc = ohlc
        self.mark = mark  # the mark-price bars (``ohlc`` itself without them)
        self.bar_ns = bar_ns
        self.markets = markets
        self.spec: MarketSpec = markets[symbol]
        self.sample_bars = sample_bars
        self.sample_minutes = sample_minutes
        self.horizon_hours = horizon_hours
        self.vol_bars = max(round(vol_window_hours * _NS_PER_HOUR / bar_ns), _MIN_VOL_BARS)
        self.funding = funding
        self.events = list(history.events(markets))
        self.t_end = np.append(ohlc.timestamp[1:], ohlc.timestamp[-1] + bar_ns)

        columns, labels = _followers_of(followers)
        self.groups, self.group = _group_order(labels)
        self.naive = np.isin(labels, _NAIVE_GROUPS)
        self.rules = CopyRules(self.naive, default_leverage_setting)
        cohort = Cohort.from_table(columns)
        if self.naive.any():
            cohort = _naive_profile(cohort, self.naive, labels == NAIVE)
        self.venue = PaperVenue.from_cohort(
            cohort, self.spec, taker_fee=taker_fee, slippage=slippage
        )
        self.base = self.venue.cohort()
        n = len(self.venue)
        self.n = n
        self.mode = self.base.codes["mode"]
        self.retarget = np.isin(self.mode, _TARGET_MODES)
        self.accumulate = self.base.codes["min_size_policy"] == _ACCUMULATE
        # exposure ledgers (contracts, actual minus counterfactual) and their P&L
        self.x_skip = np.zeros(n)
        self.x_round = np.zeros(n)
        self.x_acc = np.zeros(n)
        self.pnl_skip = np.zeros(n)
        self.pnl_round = np.zeros(n)
        self.ref_price = math.nan
        self.orders = np.zeros(n, dtype=np.int64)
        self.skipped = np.zeros(n, dtype=np.int64)
        # lead: equity before its first fill, then its history's state after each fill
        first_fee = float(history.fee[0]) if math.isfinite(history.fee[0]) else 0.0
        self.lead_start = float(history.equity[0]) + first_fee
        self.lead_eq = self.lead_start
        self.lead_q = 0.0
        self.lead_p = math.nan
        self.lead_fees = 0.0
        self.lead_shadow = (
            PaperVenue.from_cohort(
                {
                    "id": np.array(["lead"]),
                    "equity": np.array([self.lead_start]),
                    "margin_mode": np.array(["cross"]),
                },
                self.spec,
                taker_fee=0.0,
                slippage=SlippageModel(fixed_bps=0.0),
            )
            if funding is not None
            else None
        )
        self.lead_funding = 0.0
        # the capital ratio rho per follower and the lead's P&L, fees, funding scaled by it
        self.rho = self.venue.equity_start / self.lead_start
        self.lead_scaled = np.zeros(n)
        self.lead_fees_scaled = np.zeros(n)
        self.lead_funding_scaled = np.zeros(n)
        # representative follower per group: starting equity nearest the group's median
        eq0 = self.venue.equity_start
        self.rep = np.empty(len(self.groups), dtype=np.int64)
        self.members: list[IntArray] = []
        for g in range(len(self.groups)):
            rows = np.flatnonzero(self.group == g)
            self.members.append(rows)
            gap = np.abs(eq0[rows] - np.median(eq0[rows]))
            self.rep[g] = rows[int(np.argmin(gap))]
        self.group_size = np.array([rows.size for rows in self.members], dtype=np.float64)
        # tracking error accumulators and samples
        self.prev_eq: FloatArray | None = None
        self.prev_lead = math.nan
        self.te_sum = np.zeros(n)
        self.te_sq = np.zeros(n)
        self.te_count = 0
        self.samples: list[dict[str, Any]] = []
        self.sigma_cache: dict[int, float] = {}
        self.event_log: dict[str, list[Any]] = {
            "time": [],
            "kind": [],
            "price": [],
            "orders": [],
            "skipped": [],
        }
        self.done = 0  # bars walked completely

    # ------------------------------------------------------------------ schedule

    def run(self, progress: bool | Progress) -> BacktestResult:  # noqa: PLR0912 - the replay loop, one branch per kind of event on a bar
        ts = self.ohlc.timestamp
        n_bars = ts.size
        ev_ns = self.history.timestamp
        ev_bar = np.searchsorted(ts, ev_ns, side="right") - 1
        early = ev_bar < 0
        late = ev_ns >= self.t_end[-1]
        for bad, where in ((early, "before the first bar"), (late, "after the last bar")):
            if bad.any():
                j = int(np.argmax(bad))
                raise InvalidInput(
                    f"lead {self.history.where(j)} at {format_timestamp(int(ev_ns[j]))} is "
                    f"{where} ({format_timestamp(int(ts[0]))} to "
                    f"{format_timestamp(int(self.t_end[-1]))}): give bars that cover the whole "
                    "history, or cut the history",
                    field=f"lead.rows[{int(self.history.row[j])}].timestamp",
                    value=int(ev_ns[j]),
                )
        at_close = ev_ns >= self.t_end[ev_bar] - _MS
        close_events: dict[int, list[int]] = {}
        inside: dict[int, list[int]] = {}
        for j in range(ev_ns.size):
            k = int(ev_bar[j])
            if at_close[j]:
                close_events.setdefault(k + 1, []).append(j)
            else:
                inside.setdefault(k, []).append(j)
        fund: dict[int, list[float]] = {}
        if self.funding is not None:
            b = np.searchsorted(self.t_end, self.funding.timestamp, side="right")
            keep = (b > 0) & (self.funding.timestamp <= self.t_end[-1])
            for c, r in zip(b[keep].tolist(), self.funding.rate[keep].tolist(), strict=True):
                fund.setdefault(int(c), []).append(float(r))
        samples = set(range(0, n_bars + 1, self.sample_bars)) | {n_bars}
        # the venue walks only up to the next boundary where something changes its state;
        # samples in between are read from the walk's snapshots (_walk)
        actions = set(close_events) | set(fund) | set(inside) | {k + 1 for k in inside}
        actions.add(n_bars)
        if np.isfinite(self.venue.derisk_distance).any():
            # de-risking changes accounts inside a walk: its samples cannot be read from the
            # states before and after it (_walk), so every sample ends a walk
            actions |= samples
        with _progress(progress, n_bars) as report:
            pos = 0
            deferred: list[int] = []
            for c in sorted(actions | samples):
                if c not in actions:
                    if c == pos:
                        self._sample(c, self._live())
                    else:
                        deferred.append(c)
                    continue
                if c > pos:
                    self._walk(pos, c, deferred)
                    deferred = []
                    pos = c
                    report(pos)
                for j in close_events.get(c, ()):
                    self._event(j)
                for rate in fund.get(c, ()):
                    self._funding(rate, c)
                if c in samples:
                    self._sample(c, self._live())
                if c in inside:
                    self._split_bar(c, inside[c])
                    pos = c + 1
                    report(pos)
        return self._result()

    # ------------------------------------------------------------------ bars

    def _live(self) -> _State:
        v = self.venue
        return _State(
            v.position, v.entry_price, v.wallet_balance, v.liquidation_price, v.liquidations > 0
        )

    def _walk(self, lo: int, hi: int, samples: Sequence[int]) -> None:
        """Bars ``lo`` to ``hi - 1`` in one call; samples strictly inside from snapshots.

        Between state-changing boundaries a follower's account changes only by liquidation,
        so its state at a boundary ``c`` is the state before the walk, or after it if it was
        liquidated in a bar before ``c``.
        """
        o = self.mark
        v = self.venue
        before = _State(
            v.position.copy(),
            v.entry_price.copy(),
            v.wallet_balance.copy(),
            v.liquidation_price.copy(),
            v.liquidations > 0,
        )
        out = self._advance(
            {
                "timestamp": o.timestamp[lo:hi],
                "high": o.high[lo:hi],
                "low": o.low[lo:hi],
                "close": o.close[lo:hi],
            }
        )
        self.done = hi
        for c in samples:
            hit = (out >= 0) & (out < c - lo)
            self._sample(
                c,
                _State(
                    np.where(hit, v.position, before.position),
                    np.where(hit, v.entry_price, before.entry),
                    np.where(hit, v.wallet_balance, before.wallet),
                    np.where(hit, v.liquidation_price, before.liquidation_price),
                    before.liquidated | hit,
                ),
            )

    def _segment(self, t: int, high: float, low: float, mark: float) -> None:
        self._advance(
            {
                "timestamp": np.array([t], dtype=np.int64),
                "high": np.array([high]),
                "low": np.array([low]),
                "close": np.array([mark]),
            }
        )

    def _split_bar(self, k: int, events: Sequence[int]) -> None:
        """Bar ``k`` with events inside it (module docstring, "Time")."""
        o = self.ohlc
        t_anchor, p_anchor = int(o.timestamp[k]), float(o.open[k])
        for j in events:
            te, p = int(self.history.timestamp[j]), float(self.history.price[j])
            if te > t_anchor:
                self._segment(t_anchor, max(p_anchor, p), min(p_anchor, p), p)
            self._event(j)
            t_anchor, p_anchor = te, p
        # the rest of the bar on the mark's extremes (the event's fill stands in for the mark
        # at the anchor)
        m = self.mark
        high = max(float(m.high[k]), p_anchor)
        low = min(float(m.low[k]), p_anchor)
        self._segment(t_anchor, high, low, float(m.close[k]))
        self.done = k + 1

    def _advance(self, bars: Mapping[str, NDArray[Any]]) -> IntArray:
        """One venue walk; returns each follower's liquidation bar (−1: none)."""
        lp = self.venue.liquidation_price.copy()
        out = self.venue.advance(bars)
        hit = out.liquidated_bar >= 0
        if hit.any() and not math.isnan(self.ref_price):
            # the ledgers' exposure ends at the liquidation price, then is cleared
            move = (lp[hit] - self.ref_price) * self.spec.contract_size
            self.pnl_skip[hit] += (self.x_skip[hit] + self.x_acc[hit]) * move
            self.pnl_round[hit] += self.x_round[hit] * move
            self.x_skip[hit] = 0.0
            self.x_round[hit] = 0.0
            self.x_acc[hit] = 0.0
        return out.liquidated_bar

    # ------------------------------------------------------------------ events

    def _sigma(self, done: int) -> float:
        """Close-to-close volatility over the trailing window of complete bars (NaN: too few)."""
        if done not in self.sigma_cache:
            lo = max(0, done - self.vol_bars)
            closes = self.ohlc.close[lo:done]
            self.sigma_cache[done] = (
                close_to_close(closes, self.ohlc.bar_hours)
                if closes.size >= _MIN_VOL_BARS
                else math.nan
            )
        return self.sigma_cache[done]

    def _accrue(self, price: float) -> None:
        if not math.isnan(self.ref_price):
            move = (price - self.ref_price) * self.spec.contract_size
            self.pnl_skip += (self.x_skip + self.x_acc) * move
            self.pnl_round += self.x_round * move
        self.ref_price = price

    def _event(self, j: int) -> None:
        ev = self.events[j]
        te = int(self.history.timestamp[j])
        p = ev.price
        self._accrue(p)
        cohort = self.venue.cohort(mark=p)
        self._rescale(j, ev, cohort.floats["equity"])
        # the decision the live engine takes, on the paper venue's state
        decision = decide(
            ev,
            cohort,
            self.markets,
            sigma=self._sigma(self.done),
            rules=self.rules,
        )
        ev, result, left_out = decision.event, decision.result, decision.left_out
        self._update_ledgers(ev, result, cohort.floats["position"])
        rep = self.venue.execute(result, p, te)
        filled = (rep.flags & ExecutionReport.FILLED) != 0
        self.orders += filled
        self.skipped += left_out
        log = self.event_log
        log["time"].append(te)
        log["kind"].append(result.event_kind)
        log["price"].append(p)
        log["orders"].append(int(np.count_nonzero(filled)))
        log["skipped"].append(int(np.count_nonzero(left_out)))
        self._lead_fill(j, ev, te)

    def _update_ledgers(self, ev: LeadEvent, result: NormalizeResult, before: FloatArray) -> None:
        """Skip and rounding exposure of this event's orders (module docstring, "The P&L gap")."""
        kind = result.event_kind
        reasons = np.asarray(result["reasons"]).astype(np.int64)
        skipped = (reasons & int(Reason.SKIPPED)) != 0
        s_after = float(np.sign(ev.lead_position_after))
        if kind in ("close", "open", "flip"):
            self.x_skip[:] = 0.0
            self.x_round[:] = 0.0
        if kind == "increase":
            self.x_skip[self.retarget] = 0.0
            self.x_round[self.retarget] = 0.0
        if kind in ("open", "increase", "flip"):
            side = np.asarray(result["side"]).astype(np.float64)
            opened = np.where(side == s_after, result["amount"] - result["close_amount"], 0.0)
            own = ~self.accumulate
            miss = own & skipped
            self.x_skip[miss] -= s_after * result["residual"][miss]
            free = own & (opened > 0.0) & ((reasons & _CONSTRAINTS) == 0)
            self.x_round[free] -= s_after * (result["raw_amount"][free] - opened[free])
        elif kind == "reduce":
            phi = float(prepare_event(ev, self.spec, self.spec)[nk.E_PHI])
            s_before = float(np.sign(ev.lead_position_before))
            self.x_skip *= 1.0 - phi
            self.x_round *= 1.0 - phi
            holding = before * s_before > 0.0
            dev = np.where(holding, phi * np.abs(before) - result["close_amount"], 0.0)
            self.x_skip[holding & skipped] += s_before * dev[holding & skipped]
            self.x_round[holding & ~skipped] += s_before * dev[holding & ~skipped]
        acc = self.accumulate
        self.x_acc[acc] = -s_after * result["residual"][acc]

    def _rescale(self, j: int, ev: LeadEvent, equity: FloatArray) -> None:
        """Close the lead's interval at fill ``j`` and take the new ratio (the P&L gap)."""
        fee = float(self.history.fee[j]) if math.isfinite(self.history.fee[j]) else 0.0
        self.lead_scaled += self.rho * (ev.lead_equity + fee - self.lead_eq)
        self.rho = equity / ev.lead_equity
        self.lead_scaled -= self.rho * fee
        self.lead_fees_scaled += self.rho * fee

    def _lead_fill(self, j: int, ev: LeadEvent, te: int) -> None:
        fee = float(self.history.fee[j])
        if math.isfinite(fee):
            self.lead_fees += fee
        self.lead_eq = ev.lead_equity
        self.lead_q = ev.lead_position_after
        self.lead_p = ev.price
        if self.lead_shadow is not None:
            self.lead_shadow.execute(_lead_order(self.lead_shadow, ev), ev.price, te)

    def _funding(self, rate: float, c: int) -> None:
        mark = float(self.mark.close[c - 1])
        t = int(self.ohlc.timestamp[c]) if c < self.ohlc.timestamp.size else int(self.t_end[-1])
        self.venue.apply_funding(rate, mark, t)
        if self.lead_shadow is not None:
            paid = float(self.lead_shadow.apply_funding(rate, mark, t)[0])
            self.lead_funding += paid
            self.lead_funding_scaled += self.rho * paid

    # ------------------------------------------------------------------ samples

    def _lead_equity_at(self, mark: float) -> float:
        if self.lead_q == 0.0:
            return self.lead_eq
        return self.lead_eq + self.lead_q * self.spec.contract_size * (mark - self.lead_p)

    def _sample(self, c: int, state: _State) -> None:
        """Record the curves at bar boundary ``c`` from the followers' ``state`` there."""
        o = self.mark
        cs = self.spec.contract_size
        mark = float(o.close[c - 1]) if c > 0 else float(o.open[0])
        t = int(o.timestamp[c]) if c < o.timestamp.size else int(self.t_end[-1])
        eq = state.wallet + vk.unrealized_pnl(state.position, state.entry, mark, cs)
        held = state.position != 0.0
        notional = np.abs(state.position) * cs * mark
        with np.errstate(divide="ignore", invalid="ignore"):
            lev = np.where(held & (eq > 0.0), notional / eq, math.nan)
        dist = np.where(held, liquidation_distance(mark, state.liquidation_price), math.nan)
        lead_eq = self._lead_equity_at(mark)
        if self.prev_eq is not None:
            # tracking error: per-sample returns of followers and lead (module docstring)
            with np.errstate(divide="ignore", invalid="ignore"):
                r_f = np.where(self.prev_eq > 0.0, eq / self.prev_eq - 1.0, 0.0)
            r_l = lead_eq / self.prev_lead - 1.0 if self.prev_lead > 0.0 else 0.0
            diff = r_f - r_l
            self.te_sum += diff
            self.te_sq += diff * diff
            self.te_count += 1
        self.prev_eq, self.prev_lead = eq, lead_eq
        sigma = self._sigma(c)
        n_groups = len(self.groups)
        g = self.group
        eq_sum = np.bincount(g, eq, n_groups)
        notional_sum = np.bincount(g, notional, n_groups)
        cols: dict[str, Any] = {
            "time": t,
            "price": mark,
            "sigma": sigma,
            "lead_equity": lead_eq,
            "lead_position": self.lead_q,
            "lead_effective_leverage": (
                effective_leverage([self.lead_q * cs * mark], lead_eq)
                if lead_eq > 0.0
                else math.nan
            ),
            "equity_sum": eq_sum,
            "equity_median": np.full(n_groups, math.nan),
            "effective_leverage": np.array(
                [
                    effective_leverage([notional_sum[k]], eq_sum[k])
                    if eq_sum[k] > 0.0
                    else math.nan
                    for k in range(n_groups)
                ]
            ),
            "effective_leverage_median": np.full(n_groups, math.nan),
            "liquidation_distance_median": np.full(n_groups, math.nan),
            "liquidation_distance_min": np.full(n_groups, math.nan),
            "in_market": np.bincount(g, held, n_groups) / self.group_size,
            "liquidated": np.bincount(g, state.liquidated, n_groups),
        }
        for k, rows in enumerate(self.members):
            cols["equity_median"][k] = _median(eq[rows])
            hold = rows[held[rows]]
            if hold.size:
                cols["effective_leverage_median"][k] = _median(lev[hold])
                d = dist[hold]
                d = d[np.isfinite(d)]
                if d.size:
                    cols["liquidation_distance_median"][k] = _median(d)
                    cols["liquidation_distance_min"][k] = d.min()
        r = self.rep
        cols["representative_equity"] = eq[r]
        cols["representative_effective_leverage"] = np.where(held[r], lev[r], 0.0)
        cols["representative_liquidation_distance"] = dist[r]
        cols["representative_p_liquidation"] = _p_liquidation(
            mark,
            state.liquidation_price[r],
            state.position[r],
            sigma,
            self.horizon_hours / _HOURS_PER_YEAR,
        )
        self.samples.append(cols)

    # ------------------------------------------------------------------ result

    def _result(self) -> BacktestResult:
        end = float(self.mark.close[-1])
        self._accrue(end)
        v = self.venue
        s = v.summary(end)
        lead_end = self._lead_equity_at(end)
        lead_pnl = lead_end - self.lead_start
        eq0 = v.equity_start
        lead_scaled = self.lead_scaled + self.rho * (lead_end - self.lead_eq)
        pnl = s["equity"] - eq0
        gap = pnl - lead_scaled
        parts = {
            "fees": -(s["fees"] - self.lead_fees_scaled),
            "funding": -(s["funding"] - self.lead_funding_scaled),
            "slippage": -s["slippage"],
            "liquidation": -s["liquidation_losses"],
            "skips": self.pnl_skip.copy(),
            "rounding": self.pnl_round.copy(),
        }
        named = np.zeros(self.n)
        for value in parts.values():
            named = named + value
        parts["sizing"] = gap - named
        te = np.full(self.n, math.nan)
        if self.te_count > 1:
            mean = self.te_sum / self.te_count
            var = np.maximum(self.te_sq - self.te_count * mean * mean, 0.0) / (self.te_count - 1)
            te = np.sqrt(var * _MINUTES_PER_YEAR / self.sample_minutes)
        mode_names = np.array([*MODES, "invalid"])
        followers: dict[str, NDArray[Any]] = {
            "id": v.ids,
            "group": np.array(self.groups)[self.group],
            "mode": mode_names[np.where(self.mode >= 0, self.mode, len(MODES))],
            "equity_start": eq0.copy(),
            "equity_end": s["equity"],
            "pnl": pnl,
            "return": s["return"],
            "max_drawdown": s["max_drawdown"],
            "liquidations": s["liquidations"],
            "derisks": v.derisks.copy(),
            "time_in_market": s["time_in_market"],
            "orders": self.orders.copy(),
            "skipped_copies": self.skipped.copy(),
            "tracking_error": te,
            "fees": s["fees"],
            "funding": s["funding"],
            "slippage": s["slippage"],
            "liquidation_losses": s["liquidation_losses"],
            "lead_pnl_scaled": lead_scaled,
            "gap": gap,
            **{f"gap_{k}": np.asarray(parts[k], dtype=np.float64) for k in GAP_PARTS},
            "accounting_residual": v.accounting_residual(end),
        }
        cols = {k: np.array([row[k] for row in self.samples]) for k in self.samples[0]}
        lead_curve = cols["lead_equity"]
        peak = np.maximum.accumulate(lead_curve)
        lead = {
            "equity_start": self.lead_start,
            "equity_end": lead_end,
            "pnl": lead_pnl,
            "return": lead_end / self.lead_start - 1.0,
            "fees": self.lead_fees,
            "funding": self.lead_funding,
            "max_drawdown": float(np.max((peak - lead_curve) / peak)),
            "events": float(len(self.events)),
        }
        log = self.event_log

        def grouped(key: str) -> FloatArray:
            return np.ascontiguousarray(np.asarray(cols[key], dtype=np.float64).T)

        return BacktestResult(
            symbol=self.spec.symbol,
            bar_minutes=self.bar_ns / 60e9,
            sample_minutes=self.sample_minutes,
            horizon_hours=self.horizon_hours,
            groups=self.groups,
            group=self.group,
            followers=followers,
            time=np.asarray(cols["time"], dtype=np.int64),
            price=np.asarray(cols["price"], dtype=np.float64),
            sigma=np.asarray(cols["sigma"], dtype=np.float64),
            lead_equity=np.asarray(lead_curve, dtype=np.float64),
            lead_position=np.asarray(cols["lead_position"], dtype=np.float64),
            lead_effective_leverage=np.asarray(cols["lead_effective_leverage"], dtype=np.float64),
            equity_sum=grouped("equity_sum"),
            equity_median=grouped("equity_median"),
            effective_leverage=grouped("effective_leverage"),
            effective_leverage_median=grouped("effective_leverage_median"),
            liquidation_distance_median=grouped("liquidation_distance_median"),
            liquidation_distance_min=grouped("liquidation_distance_min"),
            in_market=grouped("in_market"),
            liquidated=grouped("liquidated").astype(np.int64),
            representative=self.rep.copy(),
            representative_equity=grouped("representative_equity"),
            representative_effective_leverage=grouped("representative_effective_leverage"),
            representative_liquidation_distance=grouped("representative_liquidation_distance"),
            representative_p_liquidation=grouped("representative_p_liquidation"),
            events={
                "time": np.asarray(log["time"], dtype=np.int64),
                "kind": np.asarray(log["kind"], dtype=np.str_),
                "price": np.asarray(log["price"], dtype=np.float64),
                "orders": np.asarray(log["orders"], dtype=np.int64),
                "skipped": np.asarray(log["skipped"], dtype=np.int64),
            },
            lead=lead,
            venue=v,
        )


@dataclass(frozen=True)
class _State:
    """The follower columns a sample reads (the venue's, or a snapshot of them)."""

    position: FloatArray
    entry: FloatArray
    wallet: FloatArray
    liquidation_price: FloatArray
    liquidated: NDArray[np.bool_]


def _median(x: FloatArray) -> float:
    """Median of a non-empty array of finite numbers (``np.partition``, no NaN handling)."""
    n = x.size
    k = n // 2
    if n % 2:
        return float(np.partition(x, k)[k])
    part = np.partition(x, (k - 1, k))
    return 0.5 * float(part[k - 1] + part[k])


def _p_liquidation(
    spot: float, lp: FloatArray, position: FloatArray, sigma: float, years: float
) -> FloatArray:
    r"""Closed-form GBM probability of touching ``lp`` within ``years``, per position.

    :func:`levalign.risk.first_passage.touch_probability` with zero drift of the price
    (:math:`\nu = -\sigma^2/2` for a long, its mirror for a short). 0 when flat or when no
    price liquidates the position (NaN ``lp``), 1 at or beyond the liquidation price, NaN
    without a volatility.
    """
    out = np.where(position == 0.0, 0.0, math.nan)
    held = position != 0.0
    out[held & np.isnan(lp)] = 0.0
    live = held & np.isfinite(lp) & (lp > 0.0)
    if not math.isfinite(sigma):
        out[live] = math.nan
        return out
    long_ = live & (position > 0.0)
    short = live & (position < 0.0)
    out[(long_ & (lp >= spot)) | (short & (lp <= spot))] = 1.0
    nu = -0.5 * sigma * sigma
    for side, drift in ((long_ & (lp < spot), nu), (short & (lp > spot), -nu)):
        if side.any():
            out[side] = touch_probability(np.abs(np.log(lp[side] / spot)), sigma, years, drift)
    return out


def _lead_order(shadow: PaperVenue, ev: LeadEvent) -> NormalizeResult:
    """The lead's own position change as a one-row order for its shadow account."""
    cols = allocate_result(1)
    delta = ev.lead_position_after - ev.lead_position_before
    for name in cols:
        cols[name][:] = 0
    cols["side"][0] = int(np.sign(delta))
    cols["amount"][0] = abs(delta)
    cols["leverage"][0] = math.nan
    return NormalizeResult(
        event_id=ev.event_id,
        event_kind="lead",
        symbol=shadow.market.symbol,
        price=ev.price,
        columns={"id": shadow.ids, **cols},
    )


@contextmanager
def _progress(progress: bool | Progress, total: int) -> Iterator[Callable[[int], None]]:
    """Yield ``report(bars_done)``: the caller's callback, or the progress bar when True."""
    if callable(progress):
        callback = progress
        yield lambda done: callback(done, total)
        return
    with progress_bar(progress, total, "replaying bars") as update:
        yield update
