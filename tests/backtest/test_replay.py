from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np
import pytest

from levalign.backtest import load_funding, load_lead_history, sample_leads
from levalign.backtest.replay import (
    GAP_PARTS,
    NAIVE,
    NAIVE_DERISK,
    BacktestResult,
    backtest,
    naive_cohort,
)
from levalign.backtest.strategies import SAMPLE_LEADS, FundingRates
from levalign.errors import InvalidInput
from levalign.margin import liquidation_prices
from levalign.markets import Markets, MarketSpec, load_markets
from levalign.normalize import MODES
from levalign.risk.ohlc import OHLC, load_ohlc, ohlc_from_arrays
from levalign.samples import BTC_CANDLES, sample_cohort
from levalign.venues.paper import SlippageModel

SYMBOL = "BTC/USDT:USDT"
# Real Binance BTC brackets (first tier: notional < 50,000 at mmr 0.4%, cum 0) with explicit
# lot rules (step 0.001 BTC, minimum 0.001 BTC and 100 USDT), so that the hand derivations
# below do not depend on the preset's lot data.
SPEC: MarketSpec = dataclasses.replace(
    load_markets("binance")[SYMBOL], amount_step=0.001, min_amount=0.001, min_cost=100.0
)
MARKETS = Markets("binance", {SYMBOL: SPEC})
MINUTE = 60_000_000_000  # ns
MS = 1_000_000  # ns
T0 = 1_677_628_800_000_000_000  # 2023-03-01T00:00:00Z
NO_SLIP = SlippageModel(fixed_bps=0.0)


def minute_bars(rows: Sequence[tuple[float, float, float, float]]) -> OHLC:
    """One-minute bars from T0, each (open, high, low, close)."""
    o, h, lo, c = (np.array(col, dtype=np.float64) for col in zip(*rows, strict=True))
    return ohlc_from_arrays(T0 + np.arange(len(rows)) * MINUTE, o, h, lo, c)


def at_close(bar: int) -> int:
    """Epoch ms of bar ``bar``'s close time (open + 1 minute − 1 ms), as kline bots stamp fills."""
    return (T0 + (bar + 1) * MINUTE - MS) // MS


def lead_rows(*rows: tuple[int, float, float, float]) -> list[dict[str, Any]]:
    """Positions-form rows (epoch ms, price, position_after, equity) on BTC/USDT:USDT."""
    return [
        {"timestamp": t, "symbol": SYMBOL, "price": p, "position_after": q, "equity": e}
        for t, p, q, e in rows
    ]


def one_follower(**profile: Any) -> dict[str, list[Any]]:
    return {"id": ["f"], **{k: [v] for k, v in profile.items()}}


def flat(price: float, n: int) -> list[tuple[float, float, float, float]]:
    return [(price, price, price, price)] * n


# ------------------------------------------------------------------ naive cohort


def test_naive_cohort_puts_naive_copiers_beside_every_mode():
    cohort = naive_cohort(80, 7)
    base = sample_cohort(80, 7)
    # round robin over ("naive", "naive_derisk", *MODES): 80 rows, 10 per group
    groups, counts = np.unique(cohort["group"], return_counts=True)
    assert sorted(groups.tolist()) == sorted([NAIVE, NAIVE_DERISK, *MODES])
    assert counts.tolist() == [10] * 8
    # naive_derisk rows are naive copiers with a 2% de-risking floor; nobody else has one
    derisk = cohort["group"] == NAIVE_DERISK
    assert (cohort["derisk_distance"][derisk] == 0.02).all()
    assert np.isnan(cohort["derisk_distance"][~derisk]).all()
    naive = np.isin(cohort["group"], [NAIVE, NAIVE_DERISK])
    assert (cohort["mode"][naive] == "proportional").all()
    assert (cohort["scale"][naive] == 1.0).all()
    assert (cohort["min_liq_distance"][naive] == 0.0).all()
    assert np.isinf(cohort["max_leverage"][naive]).all()
    assert (cohort["margin_mode"][naive] == "isolated").all()
    assert (cohort["min_size_policy"][naive] == "skip").all()
    # mode rows keep their sample profile and take their group as mode; equities unchanged
    modes = ~naive
    assert (cohort["mode"][modes] == cohort["group"][modes]).all()
    np.testing.assert_array_equal(cohort["equity"], base["equity"])
    np.testing.assert_array_equal(
        cohort["min_liq_distance"][modes], base["min_liq_distance"][modes]
    )
    optimal = cohort["group"] == "optimal"
    assert (cohort["expected_return"][optimal] == 0.5).all()
    assert np.isnan(cohort["expected_return"][~optimal]).all()


def test_naive_cohort_needs_a_follower():
    with pytest.raises(InvalidInput, match="at least 1") as info:
        naive_cohort(0, 7)
    assert info.value.field == "n"


# ------------------------------------------------------------------ mini replay by hand


def mini_replay(taker_fee: float = 0.0005) -> BacktestResult:
    # 8 one-minute bars; the lead (100,000 USDT, no fees) opens 1 BTC at the close of bar 0,
    # cuts to 0.4 BTC at the close of bar 2 and closes at 20,500 thirty seconds into bar 4
    bars = minute_bars(
        [
            (20_000, 20_050, 19_950, 20_000),
            (20_000, 20_600, 19_900, 20_500),
            (20_500, 21_100, 20_400, 21_000),
            (21_000, 21_000, 20_700, 20_800),
            (20_800, 20_900, 20_000, 20_100),
            *flat(20_100, 3),
        ]
    )
    history = lead_rows(
        (at_close(0), 20_000.0, 1.0, 100_000.0),
        (at_close(2), 21_000.0, 0.4, 101_000.0),  # 100,000 + 1.0 * 1,000
        ((T0 + 4 * MINUTE + 30_000_000_000) // MS, 20_500.0, 0.0, 100_800.0),  # + 0.4 * -500
    )
    follower = one_follower(equity=10_000.0, margin_mode="cross", min_liq_distance=0.0)
    return backtest(
        history,
        bars,
        follower,
        MARKETS,
        taker_fee=taker_fee,
        slippage=NO_SLIP,
        sample_minutes=1,
    )


def test_mini_replay_open_reduce_close_by_hand():
    result = mini_replay()
    f = result.followers
    assert tuple(f) == BacktestResult.follower_columns()
    # open: 1.0 BTC * 10,000 / 100,000 = 0.1 BTC at 20,000; fee 0.1 * 20,000 * 5 bp = 1.00;
    # wallet 9,999.00
    # reduce: the lead cuts 60%, the follower 0.06 BTC at 21,000: realized 0.06 * 1,000 = 60,
    # fee 0.06 * 21,000 * 5 bp = 0.63; wallet 10,058.37, holding 0.04 BTC from 20,000
    # close inside bar 4 at 20,500: realized 0.04 * 500 = 20, fee 0.04 * 20,500 * 5 bp = 0.41;
    # wallet 10,077.96, flat
    assert f["equity_end"][0] == pytest.approx(10_077.96, abs=1e-9)
    assert f["fees"][0] == pytest.approx(1.0 + 0.63 + 0.41, abs=1e-9)
    assert f["orders"][0] == 3
    assert f["liquidations"][0] == 0
    assert result.events["kind"].tolist() == ["open", "reduce", "close"]
    # samples at every bar boundary (equity marked at the close of the bar before it):
    # 0: 10,000; 1: 9,999 (the open fills at the close); 2: 9,999 + 0.1 * 500 = 10,049;
    # 3: 10,058.37 + 0.04 * 1,000 = 10,098.37; 4: 10,058.37 + 0.04 * 800 = 10,090.37;
    # 5 and after: 10,077.96
    expected = [10_000, 9_999, 10_049, 10_098.37, 10_090.37, *[10_077.96] * 4]
    np.testing.assert_allclose(result.equity_sum[0], expected, atol=1e-9)
    # the lead: 100,000 until it opens, then 100,000 + 1.0 * (20,500 - 20,000) at sample 2,
    # 101,000 after the cut at 21,000, 101,000 + 0.4 * (20,800 - 21,000) = 100,920, 100,800
    lead = [100_000, 100_000, 100_500, 101_000, 100_920, *[100_800] * 4]
    np.testing.assert_allclose(result.lead_equity, lead, atol=1e-9)
    # the gap scales the lead's P&L by the capital ratio at each of its fills: 10,000 / 100,000
    # from the open (the lead gains 1,000 to its cut), then at the cut the follower's 9,999 +
    # 0.1 * 1,000 = 10,099 over the lead's 101,000 (the lead loses 200 to its close):
    # 100 - 200 * 10,099 / 101,000 = 80.0019802; gap 77.96 - 80.0019802 = -2.0419802
    rho = 10_099 / 101_000
    assert f["lead_pnl_scaled"][0] == pytest.approx(100.0 - 200.0 * rho, abs=1e-9)
    assert f["gap"][0] == pytest.approx(77.96 - (100.0 - 200.0 * rho), abs=1e-9)
    # fees: the follower's 2.04, the lead paid none; no funding, slippage, skip or rounding
    # (0.1, 0.06 and 0.04 BTC are whole lots)
    assert f["gap_fees"][0] == pytest.approx(-2.04, abs=1e-9)
    for part in ("funding", "slippage", "liquidation", "skips", "rounding"):
        assert f[f"gap_{part}"][0] == pytest.approx(0.0, abs=1e-9), part
    # sizing: the 0.04 BTC left after the cut was sized at the first ratio; at the second it
    # would be 0.4 * rho, and the excess lost (20,500 - 21,000) on the way to the close
    assert f["gap_sizing"][0] == pytest.approx((0.04 - 0.4 * rho) * -500.0, abs=1e-9)
    # time in market: in market during bars 1, 2, 3 and bar 4 up to the close; bar 4 is split
    # in two segments, so 4 of 9 walked segments (bars 0-3, two of bar 4, bars 5-7)
    assert f["time_in_market"][0] == pytest.approx(4 / 9)


def test_mini_replay_identity_and_representative():
    result = mini_replay()
    f = result.followers
    # equity change = realized + unrealized - fees - funding - liquidation losses (venue)
    summary = result.venue.summary(20_100.0)
    explained = (
        summary["realized_pnl"] + summary["unrealized_pnl"] - summary["fees"] - summary["funding"]
    ) - summary["liquidation_losses"]
    assert f["equity_end"][0] - f["equity_start"][0] == pytest.approx(explained[0], abs=1e-9)
    assert abs(f["accounting_residual"][0]) < 1e-9
    # the only follower represents its group; its leverage at sample 2 is
    # 0.1 * 20,500 / 10,049 and it is flat from sample 5 on (P(liquidation) 0)
    assert result.representative.tolist() == [0]
    assert result.representative_effective_leverage[0, 2] == pytest.approx(2_050 / 10_049)
    assert result.representative_p_liquidation[0, 5:].tolist() == [0.0] * 4


def test_exact_copier_has_no_gap_and_no_tracking_error():
    # the follower has a tenth of the lead's capital and every copy is a whole number of lots
    # (0.1, 0.06, 0.04 BTC); without fees and slippage it is the lead at a tenth of the size
    result = mini_replay(taker_fee=0.0)
    np.testing.assert_allclose(result.equity_sum[0], result.lead_equity / 10.0, atol=1e-9)
    f = result.followers
    assert f["gap"][0] == pytest.approx(0.0, abs=1e-9)
    assert f["tracking_error"][0] == pytest.approx(0.0, abs=1e-9)


def test_skips_and_rounding_parts_by_hand():
    bars = minute_bars([*flat(20_000, 2), *flat(21_000, 3)])
    history = lead_rows(
        (at_close(0), 20_000.0, 1.0, 100_000.0), (at_close(3), 21_000.0, 0.0, 101_000.0)
    )
    followers = {
        "id": ["small", "odd"],
        "equity": [40.0, 10_050.0],
        "margin_mode": ["cross", "cross"],
        "min_liq_distance": [0.0, 0.0],
    }
    result = backtest(history, bars, followers, MARKETS, taker_fee=0.0, slippage=NO_SLIP)
    f = result.followers
    # "small": 1.0 * 40 / 100,000 = 0.0004 BTC, below the 0.001 minimum: skipped; its missed
    # exposure earned 0.0004 * (21,000 - 20,000) = 0.40, the lead's P&L scaled by 0.0004
    assert f["skipped_copies"].tolist() == [1, 0]
    assert f["pnl"][0] == 0.0
    assert f["gap"][0] == pytest.approx(-0.40, abs=1e-12)
    assert f["gap_skips"][0] == pytest.approx(-0.40, abs=1e-12)
    # "odd": 0.1005 BTC rounds down to 0.100: the 0.0005 dropped would have earned 0.50
    assert f["pnl"][1] == pytest.approx(100.0, abs=1e-9)
    assert f["gap"][1] == pytest.approx(-0.50, abs=1e-9)
    assert f["gap_rounding"][1] == pytest.approx(-0.50, abs=1e-9)
    for i in (0, 1):
        assert f["gap_sizing"][i] == pytest.approx(0.0, abs=1e-9)


def test_funding_part_uses_the_same_rates_for_the_lead():
    # bars 0-5 at 20,000 then 20,200 from bar 3; funding 0.01% at the boundary of bar 3
    bars = minute_bars([*flat(20_000, 3), *flat(20_200, 4)])
    rates = FundingRates(np.array([T0 + 3 * MINUTE]), np.array([0.0001]))
    # the lead (1 BTC from 20,000) pays 1 * 20,000 * 0.0001 = 2.00 at the close of bar 2 as
    # the mark; its history's closing equity includes it: 100,000 + 200 - 2 = 100,198
    history = lead_rows(
        (at_close(0), 20_000.0, 1.0, 100_000.0), (at_close(5), 20_200.0, 0.0, 100_198.0)
    )
    follower = one_follower(equity=100_000.0, margin_mode="cross", min_liq_distance=0.0)
    result = backtest(
        history, bars, follower, MARKETS, funding=rates, taker_fee=0.0, slippage=NO_SLIP
    )
    f = result.followers
    assert f["funding"][0] == pytest.approx(2.0, abs=1e-12)
    assert result.lead["funding"] == pytest.approx(2.0, abs=1e-12)
    assert f["equity_end"][0] == pytest.approx(100_198.0, abs=1e-9)
    # same capital, same position, same funding: no gap at all
    assert f["gap"][0] == pytest.approx(0.0, abs=1e-9)
    assert f["gap_funding"][0] == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------ liquidation and time


def buffer_replay(close_at: int) -> BacktestResult:
    # the lead opens 5 BTC (1x of 100,000) at 20,000 at the close of bar 0 and closes at
    # 19,500 at ``close_at`` (epoch ms); bar 4 opens at 19,600 and falls to 18,990
    bars = minute_bars(
        [
            (20_000, 20_000, 20_000, 20_000),
            (20_000, 20_000, 19_500, 19_600),
            (19_600, 19_700, 19_200, 19_300),
            (19_300, 19_600, 19_000.5, 19_600),
            (19_600, 19_600, 18_990, 19_100),
            *flat(19_100, 2),
        ]
    )
    history = lead_rows(
        (at_close(0), 20_000.0, 5.0, 100_000.0), (close_at, 19_500.0, 0.0, 97_500.0)
    )
    follower = one_follower(equity=10_000.0, margin_mode="isolated", min_liq_distance=0.05)
    return backtest(
        history, bars, follower, MARKETS, taker_fee=0.0005, slippage=NO_SLIP, sample_minutes=1
    )


def test_liquidation_agrees_with_the_margin_engine():
    result = buffer_replay(at_close(5))
    # the follower buys 0.5 BTC (10,000 of notional) with its liquidation 5% away: the buffer
    # solver posts R = 0.5 * 20,000 * 0.05 + MM(9,500) = 500 + 9,500 * 0.004 = 538 of margin
    collateral = 538.0
    lp = liquidation_prices(
        SPEC, np.array([1.0]), np.array([0.5]), np.array([20_000.0]), np.array([collateral])
    )[0]
    # the margin engine: (538 - 0.5 * 20,000) / (0.5 * 0.004 - 0.5) = 19,000, 5% below
    assert lp == pytest.approx(19_000.0)
    # lows 19,500, 19,200, 19,000.5 stay above it; bar 4 reaches 18,990: liquidated there,
    # so the liquidation shows at sample 5 (after bar 4) and not at sample 4
    assert result.liquidated[0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    f = result.followers
    assert f["liquidations"][0] == 1
    # isolated: the collateral is lost; the fee of the open (0.5 * 20,000 * 5 bp = 5) too;
    # the insurance fund gets MM at the liquidation price, 0.5 * 19,000 * 0.004 = 38
    assert f["equity_end"][0] == pytest.approx(10_000.0 - 5.0 - collateral)
    assert f["liquidation_losses"][0] == pytest.approx(38.0)
    assert f["gap_liquidation"][0] == pytest.approx(-38.0)


def test_event_inside_a_bar_sees_no_later_price():
    # the lead closes 20 s into bar 4 at 19,500, above the follower's 19,000; the bar's low of
    # 18,990 is unknown at that time: the follower closes, it is not liquidated
    result = buffer_replay((T0 + 4 * MINUTE + 20_000_000_000) // MS)
    f = result.followers
    assert f["liquidations"][0] == 0
    # 10,000 - fee 5 + 0.5 * (19,500 - 20,000) - fee 0.5 * 19,500 * 5 bp (4.875)
    assert f["equity_end"][0] == pytest.approx(9_740.125)


def test_event_at_a_bar_close_walks_the_whole_bar_first():
    # the same close stamped at bar 4's close time: the bar is complete, its low of 18,990
    # liquidated the follower before the lead's close
    result = buffer_replay(at_close(4))
    f = result.followers
    assert f["liquidations"][0] == 1
    assert f["equity_end"][0] == pytest.approx(10_000.0 - 5.0 - 538.0)


# ------------------------------------------------------------------ bundled scenarios


@pytest.fixture(scope="module")
def binance() -> Markets:
    return load_markets("binance")


@pytest.fixture(scope="module")
def btc_bars() -> OHLC:
    with resources.as_file(resources.files("levalign.data").joinpath(BTC_CANDLES)) as path:
        return load_ohlc(path)


def test_btc_trend_lead_golden_values(binance: Markets, btc_bars: OHLC):
    lead = load_lead_history(sample_leads()["btc_trend_15x"], markets=binance)
    cohort = naive_cohort(140, 7)
    result = backtest(lead, btc_bars, cohort, binance)
    f = result.followers
    naive = f["group"] == NAIVE
    # The lead: 100,000 before its first fill (row 0: equity 99,400.002 after a fee of
    # 599.998); its fees are the history's fee column, summed.
    assert result.lead["equity_start"] == pytest.approx(100_000.0)
    assert result.lead["fees"] == pytest.approx(float(np.nansum(lead.fee)))
    # Naive copiers of this 15x lead hold isolated margin at its 20x setting: liquidation at
    # EP (1 - 1/20) / (1 - mmr) = 23,441.45 * 0.95 / 0.996 = 22,358.81 for the first long
    # (a notional under 50,000: mmr 0.4%; above it, mmr 0.5% and cum 50 give a price no more
    # than 0.1% higher). The lead cut that long at 22,962.02 and 22,462.15 and flipped at
    # 22,343.71 (2023-03-03 01:36); BTC's low in between was 22,058.19. Every naive copier
    # is liquidated there, once: not yet at 2023-03-02 23:00, all of them by 02:00.
    hours = (result.time - result.time[0]) // (60 * MINUTE)
    at = {int(h): i for i, h in enumerate(hours)}
    g_naive = result.groups.index(NAIVE)
    assert result.liquidated[g_naive, at[47]] == 0  # 2023-03-02 23:00
    assert result.liquidated[g_naive, at[50]] == np.count_nonzero(naive)  # 2023-03-03 02:00
    assert (f["liquidations"][naive] == 1).all()
    assert (result.venue.leverage[naive] == 20.0).all()  # the lead's setting, not the tier's
    # Buffer modes: a follower's liquidation price is at least min_liq_distance from the price
    # of its last opening or increase, and reductions do not move it closer. The largest
    # adverse move of any lead position from its last opening or increase price is 9.36%
    # (the long increased at 26,302.05 on 2023-03-14 13:02, low 23,841 before the lead
    # flipped), computed from the bars and the history: no follower with a buffer of 10% or
    # more is ever liquidated, in any mode.
    buffered = ~naive & (cohort["min_liq_distance"] >= 0.1)
    assert np.count_nonzero(buffered) > 40
    assert (f["liquidations"][buffered] == 0).all()
    # the accounting identity and the gap's parts hold for every follower
    assert np.abs(f["accounting_residual"]).max() < 1e-6
    parts = sum(f[f"gap_{p}"] for p in GAP_PARTS)
    np.testing.assert_allclose(parts, f["gap"], atol=1e-6)
    # the report's table: one row per group, naive first
    rows = result.summary()
    assert [r["group"] for r in rows] == [NAIVE, NAIVE_DERISK, *MODES]
    assert rows[0]["liquidated"] == rows[0]["followers"] == 18  # rows 0, 8, ..., 136
    # Naive copiers with a 2% de-risking floor: after every bar's close a position is at
    # least 2% from liquidation (untouched when it was, cut back to 2% when not), so only a
    # bar whose low (high, for a short) moves more than 2% from the previous close could
    # liquidate it. The largest such one-minute move in the data is 1.80% (computed here):
    # none is liquidated, and each of them was de-risked in the crash.
    prev = btc_bars.close[:-1]
    worst = max(np.max((prev - btc_bars.low[1:]) / prev), np.max((btc_bars.high[1:] - prev) / prev))
    assert worst < 0.02
    derisk = f["group"] == NAIVE_DERISK
    assert np.count_nonzero(derisk) == 18
    assert (f["liquidations"][derisk] == 0).all()
    assert (f["derisks"][derisk] > 0).all()
    assert rows[1]["liquidated"] == 0
    assert rows[1]["derisked"] == 18
    json.dumps(result.to_dict())  # JSON-ready


def test_xrp_mean_reverter_with_funding_identities(binance: Markets):
    s = SAMPLE_LEADS["xrp_mean_reverter"]
    data = resources.files("levalign.data")
    with (
        resources.as_file(data.joinpath(s.prices)) as prices,
        resources.as_file(data.joinpath(s.funding or "")) as rates,
    ):
        bars = load_ohlc(prices)
        funding = load_funding(rates)
    lead = load_lead_history(sample_leads()["xrp_mean_reverter"], markets=binance)
    cohort = sample_cohort(120, 3)
    calls: list[tuple[int, int]] = []
    result = backtest(
        lead,
        bars,
        cohort,
        binance,
        funding=funding,
        progress=lambda done, total: calls.append((done, total)),
    )
    f = result.followers
    # funding was charged (the file starts 2021-11-18; the bars run to 2021-11-21) and the
    # lead's shadow account paid its share on the same marks
    assert np.count_nonzero(f["funding"]) > 0
    assert result.lead["funding"] != 0.0
    # equity change = realized + unrealized - fees - funding - liquidation losses, per follower
    assert np.abs(f["accounting_residual"]).max() < 1e-6
    parts = sum(f[f"gap_{p}"] for p in GAP_PARTS)
    np.testing.assert_allclose(parts, f["gap"], atol=1e-6)
    # 5-minute bars, hourly samples: 1,999 bars -> samples at bars 0, 12, ..., 1,992 and 1,999
    assert result.time.size == 1_992 // 12 + 2
    assert calls[-1] == (1_999, 1_999)


def test_mark_bars_liquidate_on_the_mark_not_on_the_last_price():
    # A naive 20x isolated long of 0.1 BTC from 20,000 (collateral 20,000 * 0.1 / 20 = 100):
    # liquidation at 20,000 (1 - 1/20) / (1 - 0.004) = 19,076.31. Bar 2's last-price low wicks
    # to 19,000 (through it) while the mark-price kline's low is 19,500 (above it): on last
    # prices the follower is liquidated in bar 2; on the mark, never, and its equity at the
    # end is marked to the mark's close 19,900 instead of the last close 19,950:
    # 10,000 - fee 1.00 + 0.1 * (19,900 - 20,000) = 9,989.00.
    last = minute_bars(
        [
            (20_000, 20_000, 20_000, 20_000),
            (20_000, 20_000, 20_000, 20_000),
            (20_000, 20_000, 19_000, 19_950),
            (19_950, 19_950, 19_950, 19_950),
        ]
    )
    mark = minute_bars(
        [
            (20_000, 20_000, 20_000, 20_000),
            (20_000, 20_000, 20_000, 20_000),
            (20_000, 20_000, 19_500, 19_900),
            (19_900, 19_900, 19_900, 19_900),
        ]
    )
    history = lead_rows((at_close(0), 20_000.0, 1.0, 100_000.0), (at_close(3), 19_950.0, 1.0, 1e5))
    follower = one_follower(equity=10_000.0, group=NAIVE)
    kwargs: dict[str, Any] = {"slippage": NO_SLIP, "sample_minutes": 1}
    on_last = backtest(history, last, follower, MARKETS, **kwargs)
    on_mark = backtest(history, last, follower, MARKETS, mark_bars=mark, **kwargs)
    assert on_last.followers["liquidations"][0] == 1
    assert on_mark.followers["liquidations"][0] == 0
    assert on_mark.followers["equity_end"][0] == pytest.approx(9_989.0, abs=1e-9)
    assert on_mark.price[-1] == 19_900.0


def test_mark_bars_off_the_grid_are_rejected():
    bars = minute_bars(flat(20_000, 4))
    mark = minute_bars(flat(20_000, 3))
    history = lead_rows((at_close(0), 20_000.0, 1.0, 100_000.0))
    with pytest.raises(InvalidInput, match="mark bars must lie on the bars' timestamps") as info:
        backtest(history, bars, one_follower(equity=1_000.0), MARKETS, mark_bars=mark)
    assert info.value.field == "mark_bars.timestamp[3]"


# ------------------------------------------------------------------ bad input


def simple_history() -> list[dict[str, Any]]:
    return lead_rows((at_close(0), 20_000.0, 1.0, 100_000.0), (at_close(2), 20_000.0, 0.0, 1e5))


def test_unsorted_or_duplicated_bars_are_rejected():
    bars = minute_bars(flat(20_000, 4))
    for ts, what in (
        (bars.timestamp[[0, 2, 1, 3]], "earlier"),
        (bars.timestamp[[0, 1, 1, 3]], "duplicates"),
    ):
        raw = dataclasses.replace(bars, timestamp=ts)
        with pytest.raises(InvalidInput, match=what) as info:
            backtest(simple_history(), raw, one_follower(equity=1_000.0), MARKETS)
        assert info.value.field == "bars.timestamp[2]"


def test_a_missing_bar_is_an_error_unless_forward_filled():
    rows = [(20_000, 20_100, 19_900, 20_050)] * 5
    full = minute_bars(rows)
    keep = [0, 1, 3, 4]  # bar 2 missing
    gap = ohlc_from_arrays(
        full.timestamp[keep], full.open[keep], full.high[keep], full.low[keep], full.close[keep]
    )
    with pytest.raises(InvalidInput, match="1 bar") as info:
        backtest(simple_history(), gap, one_follower(equity=1_000.0), MARKETS)
    assert info.value.field == "bars.timestamp[2]"
    filled = backtest(
        simple_history(),
        gap,
        one_follower(equity=1_000.0),
        MARKETS,
        gaps="ffill",
        sample_minutes=1,
    )
    # bar 2 repeats bar 1's close: six samples (boundaries 0 to 5) at 20,000 then 20,050
    assert filled.time.size == 6
    assert filled.price.tolist() == [20_000.0, *[20_050.0] * 5]


def test_a_symbol_without_prices_is_rejected():
    rows = simple_history()
    rows.append(
        {
            "timestamp": at_close(3),
            "symbol": "ETH/USDT:USDT",
            "price": 1_500.0,
            "position_after": 1.0,
            "equity": 1e5,
        }
    )
    bars = minute_bars(flat(20_000, 5))
    with pytest.raises(InvalidInput, match="ETH/USDT:USDT, which has no prices") as info:
        backtest(rows, {SYMBOL: bars}, one_follower(equity=1_000.0), load_markets("binance"))
    assert info.value.field == "lead.rows[2].symbol"


def test_negative_equity_is_rejected_for_followers_and_the_lead():
    bars = minute_bars(flat(20_000, 4))
    with pytest.raises(InvalidInput, match="equity") as info:
        backtest(simple_history(), bars, {"id": [1, 2], "equity": [1_000.0, -5.0]}, MARKETS)
    assert info.value.field == "followers.equity[1]"
    rows = simple_history()
    rows[1]["equity"] = -1.0
    with pytest.raises(InvalidInput, match="equity") as info:
        backtest(rows, bars, one_follower(equity=1_000.0), MARKETS)
    assert info.value.field == "rows[1].equity"


def test_events_outside_the_bars_and_bad_settings_are_rejected():
    bars = minute_bars(flat(20_000, 2))
    with pytest.raises(InvalidInput, match="after the last bar") as info:
        backtest(simple_history(), bars, one_follower(equity=1_000.0), MARKETS)
    assert info.value.field == "lead.rows[1].timestamp"
    bars = minute_bars(flat(20_000, 4))
    with pytest.raises(InvalidInput, match="whole number") as info:
        backtest(simple_history(), bars, one_follower(equity=1_000.0), MARKETS, sample_minutes=0)
    assert info.value.field == "sample_minutes"
    with pytest.raises(InvalidInput, match="start flat") as info:
        backtest(
            simple_history(),
            bars,
            one_follower(equity=1_000.0, position=0.1, entry_price=20_000.0),
            MARKETS,
        )
    assert info.value.field == "followers.position[0]"
    price = np.full(4, 20_000.0)
    price[2] = math.nan
    raw = dataclasses.replace(bars, close=price)
    with pytest.raises(InvalidInput, match="missing") as info:
        backtest(simple_history(), raw, one_follower(equity=1_000.0), MARKETS)
    assert info.value.field == "bars.close[2]"


def test_fills_far_outside_the_bars_are_another_market():
    # Arrange: bars at 20,000 +- 100; the lead's second fill at 40,000 (prices x2, or ETH bars
    # given for a BTC lead) is 98% above that bar's high of 20,100
    bars = minute_bars([(20_000, 20_100, 19_900, 20_000)] * 4)
    rows = simple_history()
    rows[1]["price"] = 40_000.0
    # Act / Assert
    with pytest.raises(InvalidInput, match="not the same market") as info:
        backtest(rows, bars, one_follower(equity=1_000.0), MARKETS)
    assert info.value.field == "lead.rows[1].price"
    # within the 5% tolerance (a perpetual's basis to spot bars): accepted
    rows[1]["price"] = 20_100 * 1.04
    backtest(rows, bars, one_follower(equity=1_000.0), MARKETS)


def test_a_lead_past_its_own_liquidation_is_refused():
    # 10 BTC at 20,000 = 200,000 notional, in Binance's bracket 50,000-600,000 (mmr 0.5%,
    # cum 50): maintenance margin 200,000 x 0.5% - 50 = 950 > the stated equity 900
    bars = minute_bars(flat(20_000, 4))
    rows = lead_rows((at_close(0), 20_000.0, 10.0, 900.0), (at_close(2), 20_000.0, 0.0, 900.0))
    assert SPEC.tiers.maintenance_margin(200_000.0) == pytest.approx(950.0)
    with pytest.raises(InvalidInput, match="would already be liquidated") as info:
        backtest(rows, bars, one_follower(equity=1_000.0), MARKETS)
    assert info.value.field == "lead.rows[0].equity"


def test_funding_outside_the_period_is_refused():
    bars = minute_bars(flat(20_000, 4))
    day = 86_400_000_000_000
    rates = FundingRates(
        timestamp=np.array([T0 - 3 * day, T0 - 2 * day], dtype=np.int64),
        rate=np.array([1e-4, 1e-4]),
    )
    with pytest.raises(InvalidInput, match="no funding falls in the replayed period") as info:
        backtest(simple_history(), bars, one_follower(equity=1_000.0), MARKETS, funding=rates)
    assert info.value.field == "funding"
