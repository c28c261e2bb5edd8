r"""Generate lead histories from simple strategies on OHLC bars; the bundled sample leads.

:func:`generate_lead` walks the bars of one linear market, asks a :class:`Strategy` at every
bar close for the position it wants, and records each position change as a row of a
:class:`~levalign.sources.replay.LeadHistory`.

Accounting
----------
The lead holds cash :math:`K` (wallet balance after fees and funding, less what it paid for
its position) and :math:`q` signed contracts of contract size :math:`c`. Marked to market at
price :math:`x` its equity is

.. math:: E(x) = K + q\,c\,x .

A fill of :math:`\Delta q` contracts at price :math:`p` with fee rate :math:`f` updates

.. math:: K \leftarrow K - \Delta q\,c\,p - |\Delta q|\,c\,p\,f, \qquad q \leftarrow q + \Delta q,

so a fill changes equity by its fee only. A funding payment at rate :math:`r` with mark
:math:`x` (the bar's open) is :math:`K \leftarrow K - q\,c\,x\,r`: longs pay shorts when
:math:`r > 0` (Binance, "Introduction to Binance Futures Funding Rates": funding amount =
nominal value of the position × funding rate).

Liquidation
-----------
The lead is cross-margined on one symbol: it is liquidated when its equity falls to the
maintenance margin of its notional, :math:`E(x) = \mathrm{MM}(|q|\,c\,x)`. The liquidation
price comes from the margin engine
(:func:`levalign._margin_kernels.liquidation_price_one_leg`, with the tiered maintenance
margin of the market). When a bar's low (long) or high (short) reaches it, the position is
closed *at* the liquidation price — any gap beyond it is the insurance fund's, as on the
exchange — and the lead keeps what is left, :math:`E = \mathrm{MM} - \text{fee} > 0`. The
row is stamped at the middle of that bar.

Orders
------
Fills happen at the bar's close and are stamped at its close time (open time + bar length −
1 ms, Binance's kline ``close_time``). Targets are rounded toward zero to whole lots of the
market's amount step. An order that adds exposure is capped where its initial margin
:math:`N/\ell` would exceed the equity, with :math:`\ell` the strategy's leverage setting or
the tier's maximum leverage at that notional, whichever is lower. Exchange minimums (amount,
order value) are not applied to the lead.

Strategies see only the bar, the equity, the position and the last fill price; each is a
frozen configuration whose :meth:`Strategy.start` returns the per-run state, so a run is
deterministic and a strategy object can be reused.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from levalign._margin_kernels import liquidation_price_one_leg
from levalign._normalize_kernel import max_qty_for_initial_margin
from levalign.errors import InvalidInput
from levalign.markets import Markets, MarketSpec, load_markets
from levalign.risk.ohlc import OHLC, load_ohlc
from levalign.samples import BTC_CANDLES, XRP_BARS, XRP_FUNDING, data_path
from levalign.sources._lead_history import (
    Columns,
    LeadHistory,
    build,
    open_text,
    parse_timestamp,
    write_lead_history,
)

__all__ = [
    "SAMPLE_LEADS",
    "Bar",
    "Decision",
    "FundingRates",
    "MeanReverter",
    "SampleLead",
    "Scalper",
    "Strategy",
    "StrategyRun",
    "TrendFollower",
    "generate_lead",
    "generate_sample",
    "load_funding",
    "sample_leads",
    "write_sample_leads",
]

FloatArray = NDArray[np.float64]
_MS = 1_000_000  # ns


# --------------------------------------------------------------------------- protocol


@dataclass(frozen=True)
class Bar:
    """What a strategy sees at the close of one bar, before it trades.

    Attributes
    ----------
    index
        Bar number, 0-based.
    open, high, low, close
        The bar's prices.
    equity
        Lead equity marked at the close.
    position
        Signed contracts held.
    last_fill_price
        Price of the lead's most recent fill (a liquidation included); NaN before the first.
    liquidated
        True when the lead was liquidated during this bar.
    """

    index: int
    open: float
    high: float
    low: float
    close: float
    equity: float
    position: float
    last_fill_price: float
    liquidated: bool


@dataclass(frozen=True)
class Decision:
    """The position a strategy wants after this bar's close.

    Attributes
    ----------
    position
        Signed contracts; the generator rounds toward zero to whole lots and caps additions
        by initial margin (module docstring).
    stop_price
        The lead's stop for the position after the fill, recorded in the history.
    """

    position: float
    stop_price: float | None = None


class StrategyRun(Protocol):
    """The state of one strategy over one run of :func:`generate_lead`."""

    def decide(self, bar: Bar) -> Decision | None:
        """The wanted position after ``bar``'s close, or None to keep the position."""
        ...


class Strategy(Protocol):
    """A frozen strategy configuration; :meth:`start` makes the state of one run."""

    @property
    def leverage_setting(self) -> float:
        """The leverage setting on the lead's venue (recorded in the history)."""
        ...

    def start(self, ohlc: OHLC, market: MarketSpec) -> StrategyRun:
        """Fresh state for a run over ``ohlc`` in ``market``."""
        ...


def _check(condition: bool, field_name: str, value: float, message: str) -> None:
    if not condition:
        raise InvalidInput(f"{field_name} {message}, got {value!r}", field=field_name, value=value)


def _rolling_mean(x: FloatArray, window: int) -> FloatArray:
    """Mean of the last ``window`` values at each index (NaN before ``window`` values)."""
    out = np.full(x.size, np.nan)
    if x.size >= window:
        c = np.concatenate(([0.0], np.cumsum(x)))
        out[window - 1 :] = (c[window:] - c[:-window]) / window
    return out


def _sign(x: float) -> float:
    return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)


# --------------------------------------------------------------------------- strategies


@dataclass(frozen=True)
class TrendFollower:
    r"""Moving-average crossover at 10–20× effective leverage.

    With :math:`\bar x_f`, :math:`\bar x_s` the means of the last ``fast`` and ``slow``
    closes, the signal is :math:`\operatorname{sign}(\bar x_f - \bar x_s)`. When it changes
    sign the lead opens (or flips to) the signal's side at ``target_leverage``:
    :math:`q = \pm\,\text{target} \cdot E / (c\,x)`. While in a position it rebalances back to
    ``target_leverage`` whenever its effective leverage :math:`|q|\,c\,x / E` leaves
    ``[min_leverage, max_leverage]`` — adding as it wins, cutting as it loses. After a
    liquidation it waits for the next crossover.

    Raises
    ------
    InvalidInput
        ``fast`` not in ``[1, slow)``, or leverages not ordered
        ``0 < min_leverage <= target_leverage <= max_leverage <= leverage_setting``.
    """

    fast: int = 240
    slow: int = 1440
    target_leverage: float = 15.0
    min_leverage: float = 10.0
    max_leverage: float = 20.0
    leverage_setting: float = 20.0

    def __post_init__(self) -> None:
        _check(1 <= self.fast < self.slow, "fast", self.fast, "must be at least 1 and below slow")
        _check(self.min_leverage > 0, "min_leverage", self.min_leverage, "must be positive")
        _check(
            self.min_leverage <= self.target_leverage <= self.max_leverage,
            "target_leverage",
            self.target_leverage,
            "must lie in [min_leverage, max_leverage]",
        )
        _check(
            self.max_leverage <= self.leverage_setting,
            "leverage_setting",
            self.leverage_setting,
            "must be at least max_leverage",
        )

    def start(self, ohlc: OHLC, market: MarketSpec) -> StrategyRun:
        """State of one run: the two moving averages and the last signal."""
        return _TrendRun(
            self,
            market.contract_size,
            _rolling_mean(ohlc.close, self.fast),
            _rolling_mean(ohlc.close, self.slow),
        )


@dataclass
class _TrendRun:
    cfg: TrendFollower
    contract_size: float
    fast: FloatArray
    slow: FloatArray
    signal: float = 0.0

    def decide(self, bar: Bar) -> Decision | None:
        cfg, i = self.cfg, bar.index
        if i < cfg.slow - 1:
            return None
        signal = _sign(float(self.fast[i] - self.slow[i]))
        crossed = i > cfg.slow - 1 and signal not in (0.0, self.signal)
        if signal != 0:
            self.signal = signal
        size = cfg.target_leverage * bar.equity / (self.contract_size * bar.close)
        if crossed:
            return Decision(signal * size)
        if bar.position == 0:
            return None
        leverage = abs(bar.position) * self.contract_size * bar.close / bar.equity
        if not cfg.min_leverage <= leverage <= cfg.max_leverage:
            return Decision(_sign(bar.position) * size)
        return None


@dataclass(frozen=True)
class MeanReverter:
    r"""Fades deviations from a moving average and *adds to losers* (averages down).

    With :math:`\bar x` the mean of the last ``window`` closes: flat, it opens one unit of
    ``unit_leverage`` (:math:`u = \text{unit\_leverage}\cdot E / (c\,x)` contracts) long when
    :math:`x \le \bar x\,(1 - \text{entry})` or short when :math:`x \ge \bar x\,(1 + \text{entry})`.
    In a position it adds another unit each time the price has moved ``step`` further against
    it from the last fill (:math:`s\,(x / p_{last} - 1) \le -\text{step}`), at most
    ``max_adds`` times, and closes everything when the price is back at the mean. It has no
    stop: only liquidation ends a losing trade early.

    Raises
    ------
    InvalidInput
        A non-positive ``window``, ``entry``, ``step`` or ``unit_leverage``, or a negative
        ``max_adds``.
    """

    window: int = 48
    entry: float = 0.015
    step: float = 0.01
    unit_leverage: float = 3.0
    max_adds: int = 4
    leverage_setting: float = 20.0

    def __post_init__(self) -> None:
        _check(self.window >= 1, "window", self.window, "must be at least 1")
        for name in ("entry", "step", "unit_leverage"):
            _check(getattr(self, name) > 0, name, getattr(self, name), "must be positive")
        _check(self.max_adds >= 0, "max_adds", self.max_adds, "must be 0 or more")

    def start(self, ohlc: OHLC, market: MarketSpec) -> StrategyRun:
        """State of one run: the moving average, the unit size and the adds so far."""
        return _MeanRevertRun(self, market.contract_size, _rolling_mean(ohlc.close, self.window))


@dataclass
class _MeanRevertRun:
    cfg: MeanReverter
    contract_size: float
    mean: FloatArray
    unit: float = 0.0
    adds: int = 0

    def decide(self, bar: Bar) -> Decision | None:
        cfg, x = self.cfg, bar.close
        mean = float(self.mean[bar.index])
        if math.isnan(mean):
            return None
        if bar.position == 0:
            self.adds = 0
            side = (
                -1.0
                if x >= mean * (1 + cfg.entry)
                else (1.0 if x <= mean * (1 - cfg.entry) else 0.0)
            )
            if bar.liquidated or side == 0:
                return None
            self.unit = cfg.unit_leverage * bar.equity / (self.contract_size * x)
            return Decision(side * self.unit)
        side = _sign(bar.position)
        if side * (x - mean) >= 0:
            return Decision(0.0)
        if self.adds < cfg.max_adds and side * (x / bar.last_fill_price - 1) <= -cfg.step:
            self.adds += 1
            return Decision(bar.position + side * self.unit)
        return None


@dataclass(frozen=True)
class Scalper:
    r"""Breakout scalper that takes profit in several partial closes.

    Flat, it opens at ``leverage`` on a breakout: long when the close is above the highest
    high of the previous ``lookback`` bars, short below the lowest low. With entry price
    :math:`p_0`, initial size :math:`q_0` and the move :math:`m = s\,(x / p_0 - 1)`, it keeps
    :math:`q_0\,(1 - k/n)` once :math:`m \ge k\cdot\text{take\_profit}` (``n = partials``), so
    it leaves in ``n − 1`` partial reductions and a final close at
    :math:`m \ge n\cdot\text{take\_profit}`. It closes everything when the close reaches its
    stop :math:`p_0\,(1 - s\cdot\text{stop})` (recorded as the lead's ``stop_price``) or
    after ``max_hold`` bars.

    Raises
    ------
    InvalidInput
        ``lookback`` or ``max_hold`` below 1, ``partials`` below 2, or a non-positive
        ``leverage``, ``take_profit`` or ``stop``.
    """

    lookback: int = 240
    leverage: float = 8.0
    take_profit: float = 0.0025
    partials: int = 5
    stop: float = 0.005
    max_hold: int = 240
    leverage_setting: float = 20.0

    def __post_init__(self) -> None:
        _check(self.lookback >= 1, "lookback", self.lookback, "must be at least 1")
        _check(self.max_hold >= 1, "max_hold", self.max_hold, "must be at least 1")
        _check(self.partials >= 2, "partials", self.partials, "must be at least 2")
        for name in ("leverage", "take_profit", "stop"):
            _check(getattr(self, name) > 0, name, getattr(self, name), "must be positive")

    def start(self, ohlc: OHLC, market: MarketSpec) -> StrategyRun:
        """State of one run: the breakout channel and the open trade's entry and stage."""
        return _ScalpRun(self, market.contract_size, ohlc.high, ohlc.low)


@dataclass
class _ScalpRun:
    cfg: Scalper
    contract_size: float
    high: FloatArray
    low: FloatArray
    entry: float = 0.0
    initial: float = 0.0
    stage: int = 0
    opened_at: int = 0

    def decide(self, bar: Bar) -> Decision | None:
        if bar.index < self.cfg.lookback:
            return None
        return self._enter(bar) if bar.position == 0 else self._manage(bar)

    def _enter(self, bar: Bar) -> Decision | None:
        cfg, i, x = self.cfg, bar.index, bar.close
        self.initial, self.stage = 0.0, 0
        top = float(self.high[i - cfg.lookback : i].max())
        bottom = float(self.low[i - cfg.lookback : i].min())
        side = 1.0 if x > top else (-1.0 if x < bottom else 0.0)
        if bar.liquidated or side == 0:
            return None
        self.opened_at = i
        size = cfg.leverage * bar.equity / (self.contract_size * x)
        return Decision(side * size, stop_price=x * (1 - side * cfg.stop))

    def _manage(self, bar: Bar) -> Decision | None:
        cfg = self.cfg
        side = _sign(bar.position)
        if self.initial == 0:  # first bar after the open: the fill is known now
            self.entry, self.initial = bar.last_fill_price, abs(bar.position)
        move = side * (bar.close / self.entry - 1)
        level = min(math.floor(move / cfg.take_profit + 1e-9), cfg.partials)
        if move <= -cfg.stop or bar.index - self.opened_at >= cfg.max_hold or level >= cfg.partials:
            return Decision(0.0)
        if level <= self.stage:
            return None
        self.stage = level
        keep = side * self.initial * (1 - level / cfg.partials)
        return Decision(keep, stop_price=self.entry * (1 - side * cfg.stop))


# --------------------------------------------------------------------------- funding


@dataclass(frozen=True)
class FundingRates:
    """Funding rates of a perpetual: settlement times (ns since the epoch, UTC) and rates."""

    timestamp: NDArray[np.int64]
    rate: FloatArray


def load_funding(path: str | Path) -> FundingRates:
    """Read funding rates from a CSV (optionally gzipped).

    The file has a time column (``date``, ``timestamp``, ``fundingTime`` or ``time``: ISO
    8601 or epoch milliseconds) and a rate column (``funding_rate`` or ``fundingRate``, a
    fraction per funding interval: 0.0001 is 0.01%).

    Raises
    ------
    InvalidInput
        An unreadable file, missing columns, a rate that is not a finite number, or times not
        strictly increasing; the message names the row.
    """
    p = Path(path)
    text = open_text(p, "funding file", "funding")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = list(reader.fieldnames or [])
    time_col = next((c for c in ("date", "timestamp", "fundingTime", "time") if c in header), None)
    rate_col = next((c for c in ("funding_rate", "fundingRate") if c in header), None)
    if time_col is None or rate_col is None:
        raise InvalidInput(
            f"{p.name} needs a time column (date, timestamp, fundingTime or time) and a rate "
            f"column (funding_rate or fundingRate); found {', '.join(header) or 'nothing'}",
            field="funding",
        )
    times: list[int] = []
    rates: list[float] = []
    for i, row in enumerate(reader):
        where = f"row {i} (line {reader.line_num})"
        times.append(parse_timestamp(row[time_col], field=f"funding[{i}].{time_col}", where=where))
        try:
            rate = float(row[rate_col])
        except (TypeError, ValueError):
            rate = math.nan
        if not math.isfinite(rate):
            raise InvalidInput(
                f"{where}: {rate_col} must be a finite number, got {row[rate_col]!r}",
                field=f"funding[{i}].{rate_col}",
            )
        if i and times[-1] <= times[-2]:
            raise InvalidInput(
                f"{where}: funding times must strictly increase", field=f"funding[{i}].{time_col}"
            )
        rates.append(rate)
    return FundingRates(np.asarray(times, dtype=np.int64), np.asarray(rates, dtype=np.float64))


def _funding_per_bar(ohlc: OHLC, bar_ns: int, funding: FundingRates | None) -> FloatArray:
    """Sum of the funding rates settled in each bar (``open ≤ t < open + bar length``)."""
    out = np.zeros(ohlc.bars)
    if funding is None or funding.timestamp.size == 0:
        return out
    idx = np.searchsorted(ohlc.timestamp, funding.timestamp, side="right") - 1
    inside = (idx >= 0) & (funding.timestamp < ohlc.timestamp[np.maximum(idx, 0)] + bar_ns)
    np.add.at(out, idx[inside], funding.rate[inside])
    return out


# --------------------------------------------------------------------------- generator


def _to_lots(contracts: float, step: float | None, decimals: int) -> float:
    """Round toward zero to whole lots (amounts are exact multiples of the step)."""
    if not step:
        return contracts
    lots = math.trunc(round(contracts / step, 6))
    return round(lots * step, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0


@dataclass
class _Lead:
    """The lead's book during a run (module docstring: cash K and position q)."""

    market: MarketSpec
    cash: float
    position: float = 0.0
    liquidation_price: float = math.nan
    rows: Columns = field(default_factory=Columns)

    def equity(self, price: float) -> float:
        return self.cash + self.position * self.market.contract_size * price

    def fill(self, contracts: float, price: float, fee_rate: float) -> float:
        """Trade ``contracts`` at ``price``; returns the fee."""
        notional = contracts * self.market.contract_size * price
        fee = abs(notional) * fee_rate
        self.cash -= notional + fee
        self.position = round(self.position + contracts, 12) + 0.0
        self.update_liquidation_price(price)
        return fee

    def update_liquidation_price(self, price: float) -> None:
        if self.position == 0:
            self.liquidation_price = math.nan
            return
        t = self.market.tiers
        self.liquidation_price = float(
            liquidation_price_one_leg(
                self.equity(price),
                _sign(self.position),
                abs(self.position) * self.market.contract_size,
                price,
                True,
                t.floor,
                t.cap,
                t.mmr,
                t.cum,
            )
        )

    def record(self, ts: int, price: float, fee: float, stop: float | None, lev: float) -> None:
        r = self.rows
        r.where.append(f"row {len(r.where)}")
        r.timestamp.append(ts)
        r.symbol.append(self.market.symbol)
        r.price.append(price)
        r.position_after.append(self.position)
        r.equity.append(self.equity(price))
        r.collateral_after.append(math.nan)
        r.stop_price.append(math.nan if stop is None else stop)
        r.leverage_setting.append(lev)
        r.fee.append(fee)


def _max_contracts(equity: float, price: float, setting: float, market: MarketSpec) -> float:
    """Largest position whose initial margin at ``min(setting, tier max)`` fits in ``equity``."""
    t = market.tiers
    by_tier = max_qty_for_initial_margin(equity, price, t.cap, t.floor, t.max_leverage, math.inf)
    return min(equity * setting / price, float(by_tier)) / market.contract_size


def generate_lead(  # noqa: PLR0913 - keyword-only options of a public function, each documented
    ohlc: OHLC | str | Path,
    strategy: Strategy,
    *,
    symbol: str = "BTC/USDT:USDT",
    markets: Markets | None = None,
    equity: float = 100_000.0,
    fee_rate: float = 0.0,
    funding: FundingRates | None = None,
    name: str = "lead",
) -> LeadHistory:
    r"""Run ``strategy`` over OHLC bars and return the lead's history.

    Parameters
    ----------
    ohlc
        Bars, or a path that :func:`levalign.risk.ohlc.load_ohlc` reads.
    strategy
        :class:`TrendFollower`, :class:`MeanReverter`, :class:`Scalper` or any
        :class:`Strategy`.
    symbol
        The lead's market (a linear contract) in ``markets``.
    markets
        Default: ``load_markets("binance")``.
    equity
        Starting equity in the settle currency.
    fee_rate
        Fee per fill as a fraction of its notional (0.0004 is 4 bp).
    funding
        Funding rates to charge (module docstring); None charges none.
    name
        Name of the history (prefix of its event ids).

    Returns
    -------
    LeadHistory
        One row per position change; equity marked at each fill.

    Raises
    ------
    InvalidInput
        An unknown or inverse symbol, a non-positive starting equity, a ``fee_rate`` outside
        ``[0, mmr of the first tier)`` (the fee of a liquidation must leave equity positive),
        a strategy that never trades, and what :func:`load_ohlc` rejects.
    """
    bars = ohlc if isinstance(ohlc, OHLC) else load_ohlc(ohlc)
    if markets is None:
        markets = load_markets("binance")
    market = markets[markets.resolve(symbol)]
    if not market.linear:
        raise InvalidInput(
            f"generate_lead supports linear contracts; {market.symbol} is inverse",
            field="symbol",
            value=symbol,
        )
    _check(math.isfinite(equity) and equity > 0, "equity", equity, "must be positive")
    mmr0 = float(market.tiers.mmr[0])
    _check(
        0 <= fee_rate < mmr0,
        "fee_rate",
        fee_rate,
        f"must be in [0, {mmr0:g}) (the first tier's maintenance margin rate of {market.symbol})",
    )
    bar_ns = round(bars.bar_hours * 3_600_000_000_000)
    funding_rate = _funding_per_bar(bars, bar_ns, funding)
    step, decimals = market.amount_step, market.amount_decimals
    setting = float(strategy.leverage_setting)
    run = strategy.start(bars, market)
    lead = _Lead(market, equity)
    last_fill = math.nan
    opens, highs, lows, closes = (a.tolist() for a in (bars.open, bars.high, bars.low, bars.close))
    for i, ts in enumerate(bars.timestamp.tolist()):
        o, h, lo, x = opens[i], highs[i], lows[i], closes[i]
        if funding_rate[i] != 0 and lead.position != 0:
            lead.cash -= lead.position * market.contract_size * o * float(funding_rate[i])
            lead.update_liquidation_price(o)
        liquidated = False
        lp = lead.liquidation_price
        if (lead.position > 0 and lo <= lp) or (lead.position < 0 and h >= lp):
            fee = lead.fill(-lead.position, lp, fee_rate)
            lead.record(ts + bar_ns // 2, lp, fee, None, setting)
            liquidated, last_fill = True, lp
        bar = Bar(i, o, h, lo, x, lead.equity(x), lead.position, last_fill, liquidated)
        decision = run.decide(bar)
        if decision is None:
            continue
        target = decision.position
        held = lead.position
        adds = abs(target) > abs(held) or _sign(target) * _sign(held) < 0
        if adds:
            cap = _max_contracts(bar.equity, x, setting, market)
            if _sign(target) == _sign(held) and cap <= abs(held):
                continue
            target = _sign(target) * min(abs(target), cap)
        target = _to_lots(target, step, decimals)
        if target == held:
            continue
        fee = lead.fill(target - held, x, fee_rate)
        stop = decision.stop_price if target != 0 else None
        lead.record(ts + bar_ns - _MS, x, fee, stop, setting)
        last_fill = x
    if not lead.rows.where:
        raise InvalidInput(
            f"the strategy made no trade on these {bars.bars} bars: give more bars or other "
            "parameters",
            field="strategy",
        )
    lead.rows.form = "positions"
    return build(lead.rows, name)


# --------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class SampleLead:
    """How one bundled sample lead is generated (see ``levalign/data/PROVENANCE.md``).

    Attributes
    ----------
    name
        Key in :data:`SAMPLE_LEADS`; the bundled file is ``leads/<name>.csv.gz``.
    prices
        Bundled OHLC file in ``levalign/data``.
    symbol
        The lead's market on the ``binance`` preset.
    strategy
        The strategy with its parameters.
    equity, fee_rate
        Starting equity (USDT) and fee per fill.
    funding
        Bundled funding-rate file, or None.
    """

    name: str
    prices: str
    symbol: str
    strategy: TrendFollower | MeanReverter | Scalper
    equity: float = 100_000.0
    fee_rate: float = 0.0004
    funding: str | None = None

    @property
    def file(self) -> str:
        """File name of the bundled history, in ``levalign/data/leads``."""
        return f"{self.name}.csv.gz"


#: the bundled sample leads, by name
SAMPLE_LEADS: Mapping[str, SampleLead] = {
    s.name: s
    for s in (
        SampleLead(
            "btc_trend_15x",
            BTC_CANDLES,
            "BTC/USDT:USDT",
            TrendFollower(
                fast=240,
                slow=1440,
                target_leverage=15.0,
                min_leverage=10.0,
                max_leverage=20.0,
                leverage_setting=20.0,
            ),
            fee_rate=0.0004,
        ),
        SampleLead(
            "btc_scalper",
            BTC_CANDLES,
            "BTC/USDT:USDT",
            Scalper(
                lookback=240,
                leverage=8.0,
                take_profit=0.0025,
                partials=5,
                stop=0.005,
                max_hold=240,
                leverage_setting=20.0,
            ),
            fee_rate=0.0002,
        ),
        SampleLead(
            "xrp_mean_reverter",
            XRP_BARS,
            "XRP/USDT:USDT",
            MeanReverter(
                window=48,
                entry=0.015,
                step=0.01,
                unit_leverage=3.0,
                max_adds=4,
                leverage_setting=20.0,
            ),
            fee_rate=0.0004,
            funding=XRP_FUNDING,
        ),
    )
}


def sample_leads() -> dict[str, Path]:
    """Paths of the bundled sample lead histories, by name (:data:`SAMPLE_LEADS`)."""
    return {name: data_path("leads", s.file) for name, s in SAMPLE_LEADS.items()}


def generate_sample(name: str, markets: Markets | None = None) -> LeadHistory:
    """Generate a sample lead from its documented recipe; equals the bundled file.

    Raises
    ------
    InvalidInput
        An unknown sample name.
    """
    if name not in SAMPLE_LEADS:
        raise InvalidInput(
            f"unknown sample lead {name!r}; samples: {', '.join(SAMPLE_LEADS)}",
            field="name",
            value=name,
        )
    s = SAMPLE_LEADS[name]
    return generate_lead(
        load_ohlc(data_path(s.prices)),
        s.strategy,
        symbol=s.symbol,
        markets=load_markets("binance") if markets is None else markets,
        equity=s.equity,
        fee_rate=s.fee_rate,
        funding=load_funding(data_path(s.funding)) if s.funding else None,
        name=name,
    )


def write_sample_leads(directory: str | Path) -> dict[str, Path]:
    """Regenerate every sample lead into ``directory`` (how the bundled files were made)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    return {
        name: write_lead_history(generate_sample(name), out / s.file)
        for name, s in SAMPLE_LEADS.items()
    }
