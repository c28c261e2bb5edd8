"""Bundled data shared by the benchmarks."""

from __future__ import annotations

from importlib import resources

from levalign.risk.ohlc import OHLC, load_ohlc
from levalign.samples import BTC_CANDLES


def btc_minute_bars(n: int) -> OHLC:
    """The first ``n`` bundled BTC/USDT one-minute bars (1 March 2023 onwards)."""
    with resources.as_file(resources.files("levalign.data").joinpath(BTC_CANDLES)) as path:
        bars = load_ohlc(path)
    return OHLC(
        timestamp=bars.timestamp[:n],
        open=bars.open[:n],
        high=bars.high[:n],
        low=bars.low[:n],
        close=bars.close[:n],
        bar_hours=bars.bar_hours,
    )
