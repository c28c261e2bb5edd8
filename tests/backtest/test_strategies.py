from __future__ import annotations

import dataclasses
import gzip
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from levalign.backtest import (
    SAMPLE_LEADS,
    Bar,
    Decision,
    FundingRates,
    LeadHistory,
    MeanReverter,
    Scalper,
    StrategyRun,
    TrendFollower,
    generate_lead,
    generate_sample,
    load_funding,
    load_lead_history,
    sample_leads,
)
from levalign.errors import InvalidInput
from levalign.markets import Markets, MarketSpec, load_markets
from levalign.risk.ohlc import OHLC, ohlc_from_arrays
from levalign.sources.replay import history_text

BTC = "BTC/USDT:USDT"
SPEC: MarketSpec = dataclasses.replace(load_markets("binance")[BTC], amount_step=0.001)
# Binance BTC brackets: below 50,000 USDT notional mmr 0.4%, cum 0, max 125x; to 600,000
# mmr 0.5%, max 100x
MARKETS = Markets("binance", {BTC: SPEC})
STEP = 0.001
MINUTE = 60_000_000_000
HOUR = 60 * MINUTE
T0 = 1_678_233_600_000_000_000  # 2023-03-08T00:00:00Z in ns


def bars(close, high=None, low=None, *, step_ns: int = MINUTE) -> OHLC:
    close = np.asarray(close, dtype=np.float64)
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) if high is None else np.asarray(high, dtype=np.float64)
    low = np.minimum(open_, close) if low is None else np.asarray(low, dtype=np.float64)
    return ohlc_from_arrays(T0 + np.arange(close.size) * step_ns, open_, high, low, close)


def walk(seed: int, n: int, sigma: float, p0: float = 20_000.0) -> OHLC:
    rng = np.random.default_rng(seed)
    close = p0 * np.exp(np.cumsum(rng.normal(0.0, sigma, n)))
    open_ = np.r_[p0, close[:-1]]
    wick = np.abs(rng.normal(0.0, sigma / 2, n))
    high = np.maximum(open_, close) * (1 + wick)
    low = np.minimum(open_, close) * (1 - wick)
    return ohlc_from_arrays(T0 + np.arange(n) * MINUTE, open_, high, low, close)


@dataclass(frozen=True)
class Scripted:
    """Test strategy: wants ``targets[i]`` contracts after bar ``i`` (None: hold)."""

    targets: tuple[float | None, ...]
    leverage_setting: float = 20.0
    seen: list[Bar] = field(default_factory=list, compare=False)  # every bar it was shown

    def start(self, ohlc: OHLC, market: MarketSpec) -> StrategyRun:
        return _ScriptRun(self.targets, self.seen)


@dataclass
class _ScriptRun:
    targets: tuple[float | None, ...]
    seen: list[Bar]

    def decide(self, bar: Bar) -> Decision | None:
        self.seen.append(bar)
        t = self.targets[bar.index] if bar.index < len(self.targets) else None
        return None if t is None else Decision(t)


def run(ohlc: OHLC, strategy, **kw) -> LeadHistory:
    return generate_lead(ohlc, strategy, symbol=BTC, markets=MARKETS, **kw)


def kinds(h: LeadHistory) -> list[str]:
    before, after = h.position_before, h.position_after
    out = []
    for b, a in zip(before, after, strict=True):
        if b == 0:
            out.append("open")
        elif a == 0:
            out.append("close")
        elif a * b < 0:
            out.append("flip")
        else:
            out.append("increase" if abs(a) > abs(b) else "reduce")
    return out


# --------------------------------------------------------------------------- accounting


def test_equity_marked_to_market_with_fees_by_hand():
    # 1,000 USDT, fee 0.1%. Bar 0 buys 2 at 100: fee 0.2, equity 999.8.
    # Bar 1 (close 110): equity 999.8 + 2 x 10 = 1,019.8; sells 3 at 110: fee 0.33 -> 1,019.47.
    # Bar 2 holds -1 from 110 to 105. Bar 3 (close 120): 1,019.47 - 1 x 10 = 1,009.47;
    # buys 1 at 120: fee 0.12 -> 1,009.35.
    ohlc = bars([100.0, 110.0, 105.0, 120.0])
    h = run(ohlc, Scripted((2.0, -1.0, None, 0.0)), equity=1_000.0, fee_rate=0.001)
    np.testing.assert_array_equal(h.position_after, [2.0, -1.0, 0.0])
    np.testing.assert_allclose(h.price, [100.0, 110.0, 120.0])
    np.testing.assert_allclose(h.fee, [0.2, 0.33, 0.12], rtol=1e-12)
    np.testing.assert_allclose(h.equity, [999.8, 1_019.47, 1_009.35], rtol=1e-12)
    # fills at the close: the bar's open time + 1 minute - 1 ms
    np.testing.assert_array_equal(h.timestamp, T0 + np.array([0, 1, 3]) * MINUTE + 59_999_000_000)
    np.testing.assert_array_equal(h.leverage_setting, [20.0, 20.0, 20.0])
    assert kinds(h) == ["open", "flip", "close"]


def test_strategy_sees_equity_position_and_last_fill():
    strategy = Scripted((2.0, None, None))
    run(bars([100.0, 103.0, 101.0]), strategy, equity=1_000.0)
    seen = strategy.seen
    assert [b.position for b in seen] == [0.0, 2.0, 2.0]
    assert [b.equity for b in seen] == [1_000.0, 1_006.0, 1_002.0]  # 1,000 + 2 x (103 - 100)
    assert math.isnan(seen[0].last_fill_price)
    assert seen[1].last_fill_price == 100.0
    assert not any(b.liquidated for b in seen)


def test_funding_charged_at_the_bar_open_by_hand():
    # hourly bars; long 2 from 100. Funding 0.1% settles 17 ms after bar 1 opens, at its open
    # 104: pays 2 x 104 x 0.001 = 0.208. Funding before the first bar or after the last is
    # not charged. Closing at 110: 1,000 + 2 x 10 - 0.208 = 1,019.792.
    ohlc = bars([100.0, 106.0, 110.0], step_ns=HOUR)
    ohlc = dataclasses.replace(ohlc, open=np.array([100.0, 104.0, 106.0]))
    funding = FundingRates(
        np.array([T0 - HOUR, T0 + HOUR + 17_000_000, T0 + 3 * HOUR + 1]),
        np.array([0.5, 0.001, 0.5]),
    )
    h = run(ohlc, Scripted((2.0, None, 0.0)), equity=1_000.0, funding=funding)
    assert h.equity[-1] == pytest.approx(1_019.792, abs=1e-9)
    short = run(ohlc, Scripted((-2.0, None, 0.0)), equity=1_000.0, funding=funding)
    assert short.equity[-1] == pytest.approx(1_000.0 - 20.0 + 0.208, abs=1e-9)  # shorts receive


@pytest.mark.parametrize(("side", "fee_rate"), [(1.0, 0.0), (-1.0, 0.0), (1.0, 0.001)])
def test_liquidation_at_the_margin_engine_price_by_hand(side, fee_rate):
    # 1,000 USDT buys (sells) 1 BTC at 10,000: cash K = 1,000 - 10,000 s. Notional near 10,000
    # is in bracket 1 (mmr 0.4%, cum 0): E(x) = K + s x = 0.004 x gives
    # long x = 9,000 / 0.996, short x = 11,000 / 1.004.
    lp = 9_000 / 0.996 if side > 0 else 11_000 / 1.004
    high = [10_000.0, 12_000.0 if side < 0 else 10_000.0, 10_000.0]
    low = [10_000.0, 8_000.0 if side > 0 else 10_000.0, 10_000.0]
    ohlc = bars([10_000.0, 10_000.0, 10_000.0], high, low)
    strategy = Scripted((side * 1.0, None, None))
    # start with the opening fee on top, so that the cash after the open is 1,000 - 10,000 s
    h = run(ohlc, strategy, equity=1_000.0 + 10_000.0 * fee_rate, fee_rate=fee_rate)
    assert kinds(h) == ["open", "close"]
    assert h.price[1] == pytest.approx(lp, rel=1e-12)
    # what is left is the maintenance margin at the liquidation price, less the fee
    mm = SPEC.tiers.maintenance_margin(lp)
    assert h.equity[1] == pytest.approx(mm - fee_rate * lp, rel=1e-9)
    assert h.equity[1] == pytest.approx((0.004 - fee_rate) * lp, rel=1e-9)
    assert h.timestamp[1] == T0 + MINUTE + 30_000_000_000  # middle of the bar


def test_liquidated_flag_and_the_lead_trades_on():
    ohlc = bars([10_000.0, 9_500.0, 9_600.0], low=[10_000.0, 8_000.0, 9_500.0])
    strategy = Scripted((1.0, None, 0.002))
    h = run(ohlc, strategy, equity=1_000.0)
    lp = 9_000 / 0.996
    assert kinds(h) == ["open", "close", "open"]
    left = 0.004 * lp
    # after the liquidation the lead buys 0.002 at 9,600 with what is left (no fee)
    assert h.equity[2] == pytest.approx(left, rel=1e-9)
    seen = strategy.seen
    assert [b.liquidated for b in seen] == [False, True, False]
    assert seen[1].position == 0.0
    assert seen[1].last_fill_price == pytest.approx(lp, rel=1e-12)
    assert seen[1].equity == pytest.approx(left, rel=1e-9)


def test_additions_are_capped_by_initial_margin():
    # setting 5x: 1,000 USDT at 100 may hold 1,000 x 5 / 100 = 50 contracts, not 1,000
    h = run(bars([100.0, 100.0]), Scripted((1_000.0, None), leverage_setting=5.0), equity=1_000.0)
    assert h.position_after[0] == 50.0
    # setting 200x is above BTC's brackets: at 10,000 the largest position is 10 BTC
    # (100,000 notional in bracket 2 at its 100x; bracket 1 stops at 50,000 notional)
    capped = run(bars([10_000.0, 10_000.0]), Scripted((20.0, None), 200.0), equity=1_000.0)
    assert capped.position_after[0] == 10.0
    # a reduction is never capped, and an addition beyond the cap is skipped
    h = run(bars([100.0] * 3), Scripted((50.0, 60.0, 10.0), 5.0), equity=1_000.0)
    np.testing.assert_array_equal(h.position_after, [50.0, 10.0])


def test_targets_round_toward_zero_to_lots():
    h = run(bars([100.0] * 3), Scripted((1.23456, -0.0049, None)), equity=1_000.0)
    np.testing.assert_array_equal(h.position_after, [1.234, -0.004])


# --------------------------------------------------------------------------- strategies


def test_mean_reverter_adds_on_the_hand_derived_bars():
    # window 4: at bar 4 the mean is (3 x 100 + 97) / 4 = 99.25 and 97 <= 99.25 x 0.98: open one
    # unit 10,000 / 97 = 103.0928 -> 103.092 contracts. Bar 5: 95.5 is 1.55% under the last
    # fill (>= 1%): add a unit -> 206.1848 -> 206.184. Bar 6: 96 is above 95.5, hold. Bar 7:
    # 94 is 1.57% under 95.5: add -> 309.276. Bar 8: 100.5 >= mean 96.5: close.
    ohlc = bars([100.0, 100.0, 100.0, 100.0, 97.0, 95.5, 96.0, 94.0, 100.5])
    strategy = MeanReverter(window=4, entry=0.02, step=0.01, unit_leverage=1.0, max_adds=4)
    h = run(ohlc, strategy, equity=10_000.0)
    np.testing.assert_array_equal(h.position_after, [103.092, 206.184, 309.276, 0.0])
    np.testing.assert_array_equal(h.price, [97.0, 95.5, 94.0, 100.5])
    assert kinds(h) == ["open", "increase", "increase", "close"]
    # max_adds=1 stops after the first add
    one = run(ohlc, dataclasses.replace(strategy, max_adds=1), equity=10_000.0)
    np.testing.assert_array_equal(one.position_after, [103.092, 206.184, 0.0])


def test_scalper_partial_closes_by_hand():
    # lookback 3: bar 3 closes at 101 above the 3-bar high 100: long 10,000 / 101 = 99.0099
    # -> 99.009, stop 101 x 0.98 = 98.98. +1.49% passes level 1 of 1%: keep 3/4 -> 74.256.
    # +2.08%: level 2, keep 1/2 -> 49.504. +2.18%: still level 2. +4.06%: level 4 = partials:
    # close.
    ohlc = bars([100.0, 100.0, 100.0, 101.0, 102.5, 103.1, 103.2, 105.1])
    strategy = Scalper(lookback=3, leverage=1.0, take_profit=0.01, partials=4, stop=0.02)
    h = run(ohlc, strategy, equity=10_000.0)
    np.testing.assert_array_equal(h.position_after, [99.009, 74.256, 49.504, 0.0])
    np.testing.assert_array_equal(h.price, [101.0, 102.5, 103.1, 105.1])
    np.testing.assert_allclose(h.stop_price[:3], [98.98] * 3, rtol=1e-12)
    assert math.isnan(h.stop_price[3])
    assert kinds(h) == ["open", "reduce", "reduce", "close"]


def test_scalper_stop_and_time_stop():
    stopped = run(
        bars([100.0, 100.0, 100.0, 101.0, 99.0]),
        Scalper(lookback=3, leverage=1.0, take_profit=0.01, partials=4, stop=0.015),
        equity=10_000.0,
    )
    assert kinds(stopped) == ["open", "close"]  # 99 / 101 - 1 = -1.98% <= -1.5%
    timed = run(
        bars([100.0, 100.0, 100.0, 101.0, 101.2, 101.1]),
        Scalper(lookback=3, leverage=1.0, take_profit=0.01, partials=4, stop=0.02, max_hold=2),
        equity=10_000.0,
    )
    assert kinds(timed) == ["open", "close"]
    assert timed.price[1] == 101.1  # two bars after the open


def equity_identity(h: LeadHistory, start: float) -> None:
    """E_j = E_{j-1} + q_{j-1} (p_j - p_{j-1}) - fee_j (contract size 1, one symbol)."""
    equity, q, p = start, 0.0, 0.0
    for j in range(len(h)):
        equity += q * (h.price[j] - p) - h.fee[j]
        assert h.equity[j] == pytest.approx(equity, rel=1e-9, abs=1e-6 * start)
        q, p = h.position_after[j], h.price[j]


@given(
    seed=st.integers(0, 2**32 - 1),
    sigma=st.floats(0.001, 0.006),
    target=st.floats(10.5, 19.0),
    fee_rate=st.sampled_from([0.0, 0.0002, 0.001]),
)
def test_trend_follower_leverage_in_band_at_entry(seed, sigma, target, fee_rate):
    strategy = TrendFollower(fast=5, slow=20, target_leverage=target)
    h = run(walk(seed, 400, sigma), strategy, equity=10_000.0, fee_rate=fee_rate)
    held = h.position_after != 0  # every fill but liquidations
    price, equity, fee = h.price[held], h.equity[held], h.fee[held]
    leverage = np.abs(h.position_after[held]) * price / equity
    assert np.all(leverage >= strategy.min_leverage)
    assert np.all(leverage <= strategy.max_leverage)
    # each entry sizes target x (equity before the fill) / price, rounded toward zero by less
    # than one lot; the equity before the fill is the equity after it plus the fee
    exact = target * (equity + fee) / equity
    assert np.all(leverage <= exact * (1 + 1e-12))
    assert np.all(leverage > exact - STEP * price / equity - 1e-9)
    equity_identity(h, 10_000.0)


@given(
    seed=st.integers(0, 2**32 - 1),
    sigma=st.floats(0.002, 0.01),
    step=st.floats(0.002, 0.02),
    fee_rate=st.sampled_from([0.0, 0.0004]),
)
def test_mean_reverter_grows_only_against_itself(seed, sigma, step, fee_rate):
    strategy = MeanReverter(window=10, entry=0.005, step=step, unit_leverage=2.0, max_adds=6)
    h = run(walk(seed, 300, sigma), strategy, equity=10_000.0, fee_rate=fee_rate)
    before, after = h.position_before, h.position_after
    for j, kind in enumerate(kinds(h)):
        if kind == "increase":
            side = np.sign(after[j])
            # the previous row is the last fill of this position
            assert side * (h.price[j] / h.price[j - 1] - 1) <= -step + 1e-12
        assert kind in ("open", "increase", "close")  # it never cuts part of a position
    assert np.all(np.sign(before) * np.sign(after) >= 0)  # never flips
    equity_identity(h, 10_000.0)


@given(
    seed=st.integers(0, 2**32 - 1),
    sigma=st.floats(0.001, 0.004),
    partials=st.integers(2, 6),
    take_profit=st.floats(0.0005, 0.004),
)
def test_scalper_reduces_in_planned_partial_steps_then_closes(seed, sigma, partials, take_profit):
    strategy = Scalper(
        lookback=10, leverage=5.0, take_profit=take_profit, partials=partials, stop=0.004
    )
    h = run(walk(seed, 400, sigma), strategy, equity=10_000.0, fee_rate=0.0002)
    ks = kinds(h)
    initial = entry = 0.0
    stage = 0
    for j, kind in enumerate(ks):
        q = abs(h.position_after[j])
        if kind == "open":
            initial, entry, stage = q, h.price[j], 0
            assert j == 0 or ks[j - 1] == "close"  # a new trade starts flat
        elif kind == "reduce":
            cut = abs(h.position_before[j]) - q
            assert 0 < cut < abs(h.position_before[j])
            # kept initial x (1 - k / n) for a level k passed since the last reduction
            levels = [
                k
                for k in range(stage + 1, partials)
                if abs(q - math.trunc(round(initial * (1 - k / partials) / STEP, 6)) * STEP)
                < STEP / 2
            ]
            assert levels, (q, initial)
            stage = levels[0]
            move = np.sign(h.position_after[j]) * (h.price[j] / entry - 1)
            assert move >= stage * take_profit - 1e-12
        else:
            assert kind == "close"
    equity_identity(h, 10_000.0)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: TrendFollower(fast=30, slow=20), "fast must be at least 1 and below slow"),
        (lambda: TrendFollower(target_leverage=25.0), "target_leverage must lie in"),
        (lambda: TrendFollower(leverage_setting=10.0), "leverage_setting must be at least"),
        (lambda: MeanReverter(step=0.0), "step must be positive"),
        (lambda: MeanReverter(max_adds=-1), "max_adds must be 0 or more"),
        (lambda: Scalper(partials=1), "partials must be at least 2"),
        (lambda: Scalper(take_profit=-0.1), "take_profit must be positive"),
    ],
)
def test_strategy_parameters_are_checked(make, match):
    with pytest.raises(InvalidInput, match=match):
        make()


def test_generate_lead_rejects_bad_setups():
    ohlc = bars([100.0, 101.0])
    with pytest.raises(InvalidInput, match=r"fee_rate must be in \[0, 0\.004\)") as err:
        run(ohlc, Scripted((1.0,)), fee_rate=0.004)
    assert err.value.field == "fee_rate"
    with pytest.raises(InvalidInput, match="equity must be positive"):
        run(ohlc, Scripted((1.0,)), equity=0.0)
    with pytest.raises(InvalidInput, match="unknown symbol"):
        generate_lead(ohlc, Scripted((1.0,)), symbol="NOPE/USDT:USDT", markets=MARKETS)
    inverse = Markets("binance", {BTC: dataclasses.replace(SPEC, linear=False)})
    with pytest.raises(InvalidInput, match="supports linear contracts"):
        generate_lead(ohlc, Scripted((1.0,)), symbol=BTC, markets=inverse)
    with pytest.raises(InvalidInput, match="made no trade"):
        run(ohlc, Scripted((None, None)))


def test_bundled_funding_file_by_hand():
    funding = load_funding(
        sample_leads()["xrp_mean_reverter"].parents[1]
        / "XRPUSDT_perp_funding_8h_2021-11-18_2021-12-18.csv.gz"
    )
    assert funding.rate.size == 91
    # 2021-11-18 is day 18,949 after 1970-01-01 (51 years with 13 leap days = 18,628 to
    # 2021-01-01, plus 321); the first settlement is 17 ms after midnight at 0.01%
    assert funding.timestamp[0] == (18_949 * 86_400_000 + 17) * 1_000_000
    assert funding.rate[0] == 0.0001
    assert np.all(np.diff(funding.timestamp) > 0)


# --------------------------------------------------------------------------- samples


def test_sample_leads_regenerate_exactly():
    paths = sample_leads()
    assert set(paths) == set(SAMPLE_LEADS) == {"btc_trend_15x", "btc_scalper", "xrp_mean_reverter"}
    for name, path in paths.items():
        assert path.stat().st_size < 1_000_000
        bundled = gzip.decompress(path.read_bytes()).decode()
        assert history_text(generate_sample(name), "csv") == bundled, name


def test_samples_load_as_events_and_show_their_strategy():
    binance = load_markets("binance")
    histories = {n: load_lead_history(p, markets=binance) for n, p in sample_leads().items()}
    for history in histories.values():
        assert len(list(history.events(binance))) == len(history)
    trend = histories["btc_trend_15x"]
    leverage = np.abs(trend.position_after) * trend.price / trend.equity
    assert np.all((leverage >= 10) & (leverage <= 20))
    assert kinds(trend).count("flip") >= 10
    scalper = kinds(histories["btc_scalper"])
    assert scalper.count("reduce") >= 100  # many partial closes
    assert "increase" not in scalper
    reverter = histories["xrp_mean_reverter"]
    assert kinds(reverter).count("increase") >= 5  # adds to losers
    assert reverter.symbols == ("XRP/USDT:USDT",)
    with pytest.raises(InvalidInput, match="unknown sample lead"):
        generate_sample("nope")


@pytest.mark.parametrize("content", [None, b"not gzip at all"])
def test_unreadable_funding_file_is_a_clear_error(tmp_path, content):
    # a missing file, and a .gz that is not gzip: both name the funding input
    path = tmp_path / "funding.csv.gz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InvalidInput, match="cannot read funding file") as info:
        load_funding(path)
    assert info.value.field == "funding"
