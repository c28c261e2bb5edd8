"""The backtest replay: 30,000 one-minute bars for 10,000 followers (target <= 10 s).

The lead is the bundled ``btc_trend_15x`` (58 events: opens, flips, increases, de-risking
cuts) on the bundled BTC one-minute bars from 2023-03-01, cut to 30,000 bars (to 2023-03-21
20:00; the lead's last fill is at 12:09). The cohort is ``naive_cohort(10_000, 7)``: naive
copiers beside every normalization mode. Hourly samples, fees and 1 bp slippage.

Figures:
- ``replay``: one :func:`levalign.backtest.replay.backtest` call (events, sizing, fills, bar
  walk with liquidation, hourly samples per group, gap ledgers), median over runs after a
  warm-up run that loads the numba caches;
- ``bar walk``: the baseline, measured in the same run: one ``PaperVenue.advance`` call over
  the same 30,000 bars for the same 10,000 followers, every one holding the position the
  lead's first event gave it (the venue's own hot loop with nothing around it). The ratio
  says what the replay adds to a bare bar walk: 58 sizings, fills, ~60 walk calls instead of
  one, 501 samples.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench._data import btc_minute_bars
from bench._timing import median_seconds
from levalign.backtest.replay import backtest, naive_cohort
from levalign.backtest.strategies import sample_leads
from levalign.markets import load_markets
from levalign.normalize import normalize
from levalign.risk.ohlc import OHLC
from levalign.sources.replay import load_lead_history
from levalign.venues.paper import PaperVenue, SlippageModel

FOLLOWERS = 10_000
BARS = 30_000
SLIPPAGE = SlippageModel(fixed_bps=1.0)


def _cohort() -> dict[str, Any]:
    return naive_cohort(FOLLOWERS, 7)


def _bar_walk(bars: OHLC, cohort: dict[str, Any], runs: int) -> float:
    """Median seconds of one advance over all bars, every follower holding its first copy."""
    markets = load_markets("binance")
    spec = markets["BTC/USDT:USDT"]
    lead = load_lead_history(sample_leads()["btc_trend_15x"], markets=markets)
    first = next(iter(lead.events(markets)))
    table = {k: v for k, v in cohort.items() if k != "group"}
    venue = PaperVenue.from_cohort(table, spec, slippage=SLIPPAGE)
    result = normalize(first, venue.cohort(first.price), markets)
    venue.execute(result, first.price, int(bars.timestamp[0]))
    walk = {
        "timestamp": bars.timestamp[1:],
        "high": bars.high[1:],
        "low": bars.low[1:],
        "close": bars.close[1:],
    }
    venue.copy().advance(walk)  # numba cache load
    samples = []
    for _ in range(runs):
        fresh = venue.copy()
        t0 = time.perf_counter()
        fresh.advance(walk)
        samples.append(time.perf_counter() - t0)
    return float(np.median(samples))


def run(runs: int = 3) -> dict[str, float]:
    bars = btc_minute_bars(BARS)
    markets = load_markets("binance")
    lead = load_lead_history(sample_leads()["btc_trend_15x"], markets=markets)
    cohort = _cohort()

    def replay() -> Any:
        return backtest(lead, bars, cohort, markets, slippage=SLIPPAGE)

    result = replay()  # numba caches, scipy import; the figures below come from it
    replay_s, samples = median_seconds(replay, runs, warmup=0)
    walk_s = _bar_walk(bars, cohort, runs)
    f = result.followers
    return {
        "replay_followers": float(FOLLOWERS),
        "replay_bars": float(BARS),
        "replay_events": float(result.events["time"].size),
        "replay_samples": float(result.time.size),
        "replay_groups": float(len(result.groups)),
        "replay_liquidated": float(np.count_nonzero(f["liquidations"])),
        "replay_median_s": replay_s,
        "replay_min_s": float(min(samples)),
        "bar_walk_median_s": walk_s,
        "replay_over_bar_walk": replay_s / walk_s,
    }


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:<28}{value:>14.4g}")
