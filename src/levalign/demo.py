"""``levalign demo``: one lead event before the March 2023 crash, 10,000 followers.

The lead (100,000 USDT, cross margin, leverage *setting* 20x) buys BTC worth 7x its equity at
the close of 2023-03-07 23:59 UTC, just before BTC fell 12% to 19,565. The demo normalizes the
event for a bundled cohort of 10,000 followers with varied profiles, then replays the next five
days of real one-minute lows against every follower's liquidation price, beside a *naive* copy
of the same size that copies the lead's 20x setting on isolated margin, as exchange copy
products do.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from levalign.margin import liquidation_prices
from levalign.markets import load_markets
from levalign.normalize import MODES, Cohort, NormalizeResult, normalize
from levalign.samples import (
    DEMO_COHORT_SEED,
    DEMO_COHORT_SIZE,
    load_btc_candles,
    load_demo_cohort,
    sample_cohort,
)
from levalign.schemas import LeadEvent

LEAD_EQUITY = 100_000.0
LEAD_EFFECTIVE_LEVERAGE = 7.0
LEAD_LEVERAGE_SETTING = 20.0
EVENT_TIME = "2023-03-07 23:59:00+00:00"
CRASH_END = "2023-03-12 23:59:00+00:00"
_MINUTES_PER_YEAR = 525_600.0


def realized_volatility(close: NDArray[np.float64], minutes_per_bar: float = 1.0) -> float:
    r"""Annualized close-to-close volatility :math:`\sigma = \mathrm{sd}(\ln r)\sqrt{N_{year}}`."""
    r = np.diff(np.log(close))
    return float(np.std(r, ddof=1) * math.sqrt(_MINUTES_PER_YEAR / minutes_per_bar))


@dataclass(frozen=True)
class DemoOutcome:
    """Figures the demo prints (and tests check)."""

    result: NormalizeResult
    price: float
    crash_low: float
    crash_low_time: str
    lead_liquidation_price: float
    naive_liquidated: int
    normalized_liquidated: int
    copied: int
    modes: NDArray[np.str_]
    liquidated_by_buffer: list[tuple[str, int, int]]
    seconds: float


def run_scenario(followers: Any = None) -> DemoOutcome:
    """Normalize the demo event and test every follower against the crash's real lows."""
    started = time.perf_counter()
    candles = load_btc_candles()
    markets = load_markets("binance")
    spec = markets["BTC/USDT:USDT"]
    i_event = int(np.searchsorted(candles.open_time, EVENT_TIME))
    i_end = int(np.searchsorted(candles.open_time, CRASH_END))
    price = float(candles.close[i_event])
    sigma = realized_volatility(candles.close[max(0, i_event - 7 * 1440) : i_event + 1])
    step = spec.amount_step or 1.0
    contracts = math.floor(LEAD_EFFECTIVE_LEVERAGE * LEAD_EQUITY / price / step) * step
    event = LeadEvent(
        event_id="demo-2023-03-07T23:59Z",
        timestamp=EVENT_TIME,
        symbol="BTC/USDT:USDT",
        price=price,
        lead_equity=LEAD_EQUITY,
        lead_position_before=0.0,
        lead_position_after=contracts,
        lead_leverage_setting=LEAD_LEVERAGE_SETTING,
        sigma=sigma,
    )
    cohort = Cohort.from_table(load_demo_cohort() if followers is None else followers)
    result = normalize(event, cohort, markets)
    window = candles.low[i_event + 1 : i_end + 1]
    j = int(np.argmin(window))
    crash_low = float(window[j])

    lead_lp = float(
        liquidation_prices(
            spec, np.array([1.0]), np.array([contracts]), np.array([price]), np.array([LEAD_EQUITY])
        )[0]
    )
    # naive copy: same size as a fixed-ratio copy, isolated margin at the lead's 20x setting
    equity = cohort.floats["equity"]
    naive_contracts = np.floor(contracts * equity / LEAD_EQUITY / step) * step
    naive_ok = naive_contracts >= (spec.min_amount or 0.0)
    naive_lp = liquidation_prices(
        spec,
        np.ones(len(equity)),
        naive_contracts,
        np.full(len(equity), price),
        naive_contracts * price / LEAD_LEVERAGE_SETTING,
    )
    held = result["target_position"] > 0
    norm_lp = result["liquidation_price"]
    liquidated = held & (norm_lp >= crash_low)
    buffer = cohort.floats["min_liq_distance"]
    groups = [("lead's distance (default)", np.isnan(buffer))] + [
        (f"{b:.0%} of price", buffer == b) for b in np.unique(buffer[~np.isnan(buffer)])
    ]
    by_buffer = [
        (label, int(np.count_nonzero(liquidated & g)), int(np.count_nonzero(held & g)))
        for label, g in groups
    ]
    return DemoOutcome(
        result=result,
        price=price,
        crash_low=crash_low,
        crash_low_time=str(candles.open_time[i_event + 1 + j]),
        lead_liquidation_price=lead_lp,
        naive_liquidated=int(np.count_nonzero(naive_ok & (naive_lp >= crash_low))),
        normalized_liquidated=int(np.count_nonzero(liquidated)),
        copied=int(np.count_nonzero(held)),
        modes=np.array([*MODES, "invalid"])[
            np.where(cohort.codes["mode"] >= 0, cohort.codes["mode"], len(MODES))
        ],
        liquidated_by_buffer=by_buffer,
        seconds=time.perf_counter() - started,
    )


def run_demo(followers: int = DEMO_COHORT_SIZE, seed: int = DEMO_COHORT_SEED) -> DemoOutcome:
    """Run the scenario and print a readable summary with rich."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    cohort = (
        None
        if (followers, seed) == (DEMO_COHORT_SIZE, DEMO_COHORT_SEED)
        else sample_cohort(followers, seed)
    )
    with console.status(
        "normalizing the lead event for the cohort (first run compiles the kernels)"
    ):
        out = run_scenario(cohort)
    res = out.result
    console.rule("[bold]levalign demo: copying a 7x BTC long into the March 2023 crash")
    console.print(
        f"Lead: {LEAD_EQUITY:,.0f} USDT equity, cross margin, "
        f"leverage setting {LEAD_LEVERAGE_SETTING:.0f}x, "
        f"buys {LEAD_EFFECTIVE_LEVERAGE:.0f}x "
        f"effective at {out.price:,.2f} ({EVENT_TIME[:16]} UTC). "
        f"Lead liquidation price {out.lead_liquidation_price:,.0f}."
    )
    console.print(f"Followers: {len(res):,}; orders: {np.count_nonzero(res['side'] != 0):,}.")

    reasons = Table(title="Orders by reason (a follower may have several)")
    reasons.add_column("reason")
    reasons.add_column("followers", justify="right")
    for name, count in sorted(res.summary()["reasons"].items(), key=lambda kv: -kv[1]):
        reasons.add_row(name, f"{count:,}")
    if not res.summary()["reasons"]:
        reasons.add_row("(none bound)", "0")
    console.print(reasons)

    modes = out.modes
    by_mode = Table(title="After the order, by sizing mode")
    for col in (
        "mode",
        "followers",
        "orders",
        "eff. leverage median",
        "eff. leverage max",
        "liq. distance median",
        "liq. distance min",
    ):
        by_mode.add_column(col, justify="right" if col != "mode" else "left")
    lev, dist = res["effective_leverage"], res["liquidation_distance"]
    for m in MODES:
        sel = modes == m
        if not sel.any():
            continue
        held = sel & (res["target_position"] > 0)
        by_mode.add_row(
            m,
            f"{np.count_nonzero(sel):,}",
            f"{np.count_nonzero(sel & (res['side'] != 0)):,}",
            _fmt(np.median(lev[held]) if held.any() else math.nan, "x"),
            _fmt(np.max(lev[held]) if held.any() else math.nan, "x"),
            _fmt(_nan_stat(np.nanmedian, dist[held]) * 100, "%"),
            _fmt(_nan_stat(np.nanmin, dist[held]) * 100, "%"),
        )
    console.print(by_mode)

    crash = Table(title=f"The crash: BTC low {out.crash_low:,.2f} at {out.crash_low_time[:16]} UTC")
    crash.add_column("copy method")
    crash.add_column("liquidated", justify="right")
    crash.add_row(
        f"naive: lead's {LEAD_LEVERAGE_SETTING:.0f}x setting, isolated", f"{out.naive_liquidated:,}"
    )
    crash.add_row(
        "levalign normalized, all", f"{out.normalized_liquidated:,} of {out.copied:,} copies"
    )
    for label, count, of in out.liquidated_by_buffer:
        crash.add_row(f"  buffer: {label}", f"{count:,} of {of:,}")
    lead_status = "survives" if out.lead_liquidation_price < out.crash_low else "is liquidated"
    crash.add_row("the lead", lead_status)
    console.print(crash)
    console.print(f"[dim]{out.seconds:.2f} s including data loading and kernel compilation.[/dim]")
    return out


def _nan_stat(stat: Any, x: NDArray[np.float64]) -> float:
    """``stat`` over the finite values (NaN distance: never liquidated); NaN if none."""
    x = x[np.isfinite(x)]
    return float(stat(x)) if x.size else math.nan


def _fmt(x: float, unit: str) -> str:
    return "-" if not math.isfinite(x) else f"{x:,.2f}{unit}"
