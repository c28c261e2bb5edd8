"""The paper venue's bar walk: 30,000 one-minute bars for 10,000 followers.

The followers are the demo's sample cohort (varied modes, buffers, isolated and cross); at the
first bar's close a lead opens a 7x long on BTC/USDT and every follower's order, sized by
``normalize`` on the venue's state, is filled. ``advance`` then walks the bundled BTC
one-minute bars from 2023-03-01 (through the March 2023 crash and rally) for all of them.

Figures:
- ``advance``: one ``PaperVenue.advance`` call over all bars (liquidation at every bar, mark
  to market, peak and drawdown), median over runs, each on a fresh copy of the venue;
- ``advance, groups``: the same, also summing equity and notional per sizing mode per bar
  (what a report plots);
- ``execute``: filling the opening event's orders for all followers (validation included);
- ``numpy loop``: the same work as a per-bar numpy loop vectorized over followers
  (``advance_reference``, the kernel's test reference), measured once in the same run: the
  baseline of the ratio.
"""

from __future__ import annotations

import time

import numpy as np

from bench._data import btc_minute_bars
from bench._timing import median_seconds
from levalign import testing
from levalign.markets import load_markets
from levalign.normalize import MODES, normalize
from levalign.risk.ohlc import OHLC
from levalign.samples import sample_cohort
from levalign.schemas import LeadEvent
from levalign.venues.paper import PaperVenue, SlippageModel

FOLLOWERS = 10_000
BARS = 30_000


def _opened_venue(bars: OHLC) -> tuple[PaperVenue, np.ndarray, float]:
    markets = load_markets("binance")
    spec = markets["BTC/USDT:USDT"]
    table = sample_cohort(FOLLOWERS, 21)
    venue = PaperVenue.from_cohort(table, spec, slippage=SlippageModel(fixed_bps=1.0))
    price = float(bars.close[0])
    event = LeadEvent(
        event_id="bench-open",
        symbol=spec.symbol,
        price=price,
        lead_equity=100_000.0,
        lead_position_before=0.0,
        lead_position_after=round(7.0 * 100_000.0 / price, 3),
        sigma=0.55,
    )
    result = normalize(event, venue.cohort(price), markets)
    flat = venue.copy()
    flat.execute(result, price, int(bars.timestamp[0]))  # numba cache load
    copies = [venue.copy() for _ in range(7)]
    samples = []
    for fresh in copies:
        t0 = time.perf_counter()
        fresh.execute(result, price, int(bars.timestamp[0]))
        samples.append(time.perf_counter() - t0)
    venue.execute(result, price, int(bars.timestamp[0]))
    groups = np.asarray(venue.cohort(price).codes["mode"], dtype=np.int64)
    return venue, groups, float(np.median(samples))


def _state(venue: PaperVenue) -> dict[str, np.ndarray]:
    return {
        "position": venue.position.copy(),
        "entry_price": venue.entry_price.copy(),
        "wallet": venue.wallet_balance.copy(),
        "collateral": venue.collateral.copy(),
        "isolated": venue.isolated.copy(),
        "liq_price": venue.liquidation_price.copy(),
        "realized": venue.realized_pnl.copy(),
        "liquidations": venue.liquidations.copy(),
        "liquidation_losses": venue.liquidation_losses.copy(),
        "peak_equity": venue.peak_equity.copy(),
        "max_drawdown": venue.max_drawdown.copy(),
        "bars_in_market": venue.bars_in_market.copy(),
    }


def run(runs: int = 5) -> dict[str, float]:
    bars = btc_minute_bars(BARS)
    high, low, close = bars.high[1:], bars.low[1:], bars.close[1:]
    walk = {"timestamp": bars.timestamp[1:], "high": high, "low": low, "close": close}
    venue, groups, execute_s = _opened_venue(bars)
    venue.copy().advance(walk)  # compile / load the numba cache
    venue.copy().advance(walk, groups=groups)

    def timed(with_groups: bool) -> tuple[float, int]:
        samples = []
        liquidated = 0
        for _ in range(runs):
            fresh = venue.copy()
            t0 = time.perf_counter()
            out = fresh.advance(walk, groups=groups if with_groups else None)
            samples.append(time.perf_counter() - t0)
            liquidated = int(np.count_nonzero(out.liquidated_bar >= 0))
        return float(np.median(samples)), liquidated

    advance_s, liquidated = timed(False)
    grouped_s, _ = timed(True)

    no_group = np.full(FOLLOWERS, -1, dtype=np.int64)

    def numpy_loop() -> None:
        # a fresh copy of the state per run (10,000 rows: negligible next to the walk)
        testing.advance_reference(
            high, low, close, venue.market.contract_size, _state(venue), no_group, no_group, 0, 0
        )

    numpy_s, _ = median_seconds(numpy_loop, 3, warmup=0)
    return {
        "venue_followers": FOLLOWERS,
        "venue_bars": BARS - 1,
        "venue_modes": len(MODES),
        "venue_in_market_at_start": int(np.count_nonzero(venue.position)),
        "venue_liquidated": liquidated,
        "advance_median_s": advance_s,
        "advance_groups_median_s": grouped_s,
        "advance_numpy_loop_s": numpy_s,
        "advance_speedup": numpy_s / advance_s,
        "execute_median_ms": execute_s * 1e3,
    }


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:<32}{value:>14.4g}")
