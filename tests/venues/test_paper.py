from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from numpy.typing import NDArray

from levalign import testing
from levalign.errors import ConfigurationError, InvalidInput
from levalign.margin import margin_report
from levalign.markets import Markets, MarketSpec, load_markets
from levalign.normalize import NormalizeResult, Reason, allocate_result, normalize
from levalign.risk.ohlc import ohlc_from_arrays
from levalign.venues import _paper_kernels as vk
from levalign.venues.base import Ack, Lookup, OrderRequest, OrderVenue
from levalign.venues.paper import ExecutionReport, PaperVenue, SlippageModel

SYMBOL = "BTC/USDT:USDT"
# Real Binance BTC brackets with explicit lot rules (step 0.001 BTC, minimum 0.001 BTC and
# 100 USDT), so that hand derivations below do not depend on the preset's lot data.
SPEC: MarketSpec = dataclasses.replace(
    load_markets("binance")[SYMBOL], amount_step=0.001, min_amount=0.001, min_cost=100.0
)
MARKETS = Markets("binance", {SYMBOL: SPEC})
MINUTE = 60_000_000_000  # ns
NO_SLIP = SlippageModel(fixed_bps=0.0)
TIERS = (SPEC.tiers.floor, SPEC.tiers.cap, SPEC.tiers.mmr, SPEC.tiers.cum)


def orders(
    venue: PaperVenue,
    side: Any,
    amount: Any,
    *,
    reduce_only: Any = False,
    collateral: Any = 0.0,
    leverage: Any = math.nan,
    reasons: Any = 0,
    ids: Any = None,
) -> NormalizeResult:
    """A normalization result written by hand, one row per venue follower."""
    n = len(venue)
    cols = allocate_result(n)
    for name in cols:
        cols[name][:] = 0
    cols["side"][:] = side
    cols["amount"][:] = amount
    cols["close_amount"][:] = 0.0
    cols["reduce_only"][:] = reduce_only
    cols["collateral"][:] = collateral
    cols["leverage"][:] = leverage
    cols["reasons"][:] = reasons
    return NormalizeResult(
        event_id="hand",
        event_kind="open",
        symbol=SYMBOL,
        price=0.0,
        columns={"id": venue.ids if ids is None else np.asarray(ids), **cols},
    )


def bars(low: Any, *, high: Any = None, close: Any = None, start: int = 1) -> dict[str, Any]:
    low = np.asarray(low, dtype=np.float64)
    high = low + 100.0 if high is None else np.asarray(high, dtype=np.float64)
    close = (low + high) / 2 if close is None else np.asarray(close, dtype=np.float64)
    ts = (start + np.arange(low.size)) * MINUTE
    return {"timestamp": ts, "high": high, "low": low, "close": close}


def one(**row: Any) -> PaperVenue:
    return PaperVenue.from_cohort(
        {"id": [1], **{k: [v] for k, v in row.items()}}, SPEC, slippage=NO_SLIP, taker_fee=0.0
    )


# ---------------------------------------------------------------- fills, by hand


def test_hand_sequence_open_increase_reduce_flip_funding_close():
    # one isolated follower, 10,000 USDT, taker fee 5 bps, fixed slippage 2 bps
    venue = PaperVenue.from_cohort(
        {"id": [7], "equity": [10_000.0]}, SPEC, slippage=SlippageModel(fixed_bps=2.0)
    )
    # open: buy 0.5 at 20,000 -> fill 20,000 * 1.0002 = 20,004; fee 0.5 * 20,004 * 0.0005
    # = 5.001; slippage 0.5 * 4 = 2; wallet 10,000 - 5.001; collateral 1,000 posted
    rep = venue.execute(orders(venue, 1, 0.5, collateral=1_000.0), 20_000.0, 0)
    assert rep.fill_price[0] == pytest.approx(20_004.0)
    assert rep.fee[0] == pytest.approx(5.001)
    assert rep.slippage[0] == pytest.approx(2.0)
    assert venue.wallet_balance[0] == pytest.approx(9_994.999)
    assert (venue.position[0], venue.entry_price[0]) == (0.5, pytest.approx(20_004.0))
    assert venue.collateral[0] == 1_000.0
    # increase: buy 0.3 at 21,000 -> fill 21,004.2, fee 0.3 * 21,004.2 * 0.0005 = 3.15063;
    # entry (0.5 * 20,004 + 0.3 * 21,004.2) / 0.8 = 16,303.26 / 0.8 = 20,379.075
    venue.execute(orders(venue, 1, 0.3, collateral=600.0), 21_000.0, 1)
    assert venue.position[0] == pytest.approx(0.8)
    assert venue.entry_price[0] == pytest.approx(20_379.075)
    assert venue.collateral[0] == pytest.approx(1_600.0)
    assert venue.fees[0] == pytest.approx(5.001 + 3.15063)
    # partial reduce: sell 0.2 at 22,000 -> fill 21,995.6; realized 0.2 * (21,995.6 -
    # 20,379.075) = 323.305; collateral released pro rata: 1,600 * (1 - 0.2 / 0.8) = 1,200
    rep = venue.execute(orders(venue, -1, 0.2, reduce_only=True), 22_000.0, 2)
    assert rep.realized_pnl[0] == pytest.approx(323.305)
    assert rep.fee[0] == pytest.approx(0.2 * 21_995.6 * 0.0005)  # 2.19956
    assert venue.collateral[0] == pytest.approx(1_200.0)
    assert venue.position[0] == 0.6  # snapped to the lot grid, no float residue
    assert venue.entry_price[0] == pytest.approx(20_379.075)  # reductions keep the entry
    # flip: sell 1.0 at 21,000 -> fill 20,995.8; close 0.6 first: realized 0.6 * (20,995.8 -
    # 20,379.075) = 370.035; then open 0.4 short at 20,995.8 with 500 of fresh collateral
    rep = venue.execute(orders(venue, -1, 1.0, collateral=500.0), 21_000.0, 3)
    assert rep.realized_pnl[0] == pytest.approx(370.035)
    assert venue.position[0] == pytest.approx(-0.4)
    assert venue.entry_price[0] == pytest.approx(20_995.8)
    assert venue.collateral[0] == pytest.approx(500.0)
    # funding 0.01% at mark 21,000: the short receives 0.4 * 21,000 * 0.0001 = 0.84
    paid = venue.apply_funding(0.0001, 21_000.0, 4)
    assert paid[0] == pytest.approx(-0.84)
    # close: buy 0.4 at 20,000 -> fill 20,004; realized 0.4 * (20,995.8 - 20,004) = 396.72
    rep = venue.execute(orders(venue, 1, 0.4, reduce_only=True), 20_000.0, 5)
    assert rep.realized_pnl[0] == pytest.approx(396.72)
    assert (venue.position[0], venue.collateral[0]) == (0.0, 0.0)
    assert math.isnan(venue.entry_price[0])
    assert math.isnan(venue.liquidation_price[0])
    # totals: fees 5.001 + 3.15063 + 2.19956 + 10.4979 + 4.0008 = 24.84989
    s = venue.summary()
    assert s["fees"][0] == pytest.approx(24.84989)
    assert s["realized_pnl"][0] == pytest.approx(323.305 + 370.035 + 396.72)  # 1,090.06
    assert s["funding"][0] == pytest.approx(-0.84)
    assert s["slippage"][0] == pytest.approx(2.0 + 1.26 + 0.88 + 4.2 + 1.6)
    # wallet 10,000 + 1,090.06 - 24.84989 + 0.84
    assert s["equity"][0] == pytest.approx(11_066.05011)
    assert s["return"][0] == pytest.approx(0.106605011)
    assert venue.accounting_residual()[0] == pytest.approx(0.0, abs=1e-9)


def test_square_root_impact():
    # delta = 1e-4 * (1 + 10 * sqrt(1,000,000 / 1,000,000)) = 11 bps: 50 BTC at 20,000 fills at
    # 20,022 (buy); slippage cost 50 * 22 = 1,100
    venue = PaperVenue.from_cohort(
        {"id": [1], "equity": [1e6], "margin_mode": ["cross"]},
        SPEC,
        slippage=SlippageModel(fixed_bps=1.0, impact_bps=10.0, impact_notional=1e6),
        taker_fee=0.0,
    )
    rep = venue.execute(orders(venue, 1, 50.0), 20_000.0, 0)
    assert rep.fill_price[0] == pytest.approx(20_022.0)
    assert venue.slippage[0] == pytest.approx(1_100.0)
    # a sell of a quarter of the size: 1 + 10 * sqrt(0.25) = 6 bps below: 19,988
    rep = venue.execute(orders(venue, -1, 12.5), 20_000.0, 1)
    assert rep.fill_price[0] == pytest.approx(19_988.0)


def test_cross_fill_posts_no_collateral_and_frees_equity_less_initial_margin():
    venue = one(equity=1_000.0, margin_mode="cross")
    venue.execute(orders(venue, 1, 0.5, collateral=300.0, leverage=20.0), 20_000.0, 0)
    assert venue.collateral[0] == 0.0
    # available = equity - N / leverage = 1,000 - 10,000 / 20 = 500 at the fill price
    cohort = venue.cohort()
    assert cohort.floats["available_balance"][0] == pytest.approx(500.0)
    # at 21,000: equity 1,500, IM 10,500 / 20 = 525 -> 975
    assert venue.cohort(21_000.0).floats["available_balance"][0] == pytest.approx(975.0)
    # cross LP from the wallet with the entry: (1,000 - 10,000) / (0.5 * 0.004 - 0.5)
    assert venue.liquidation_price[0] == pytest.approx(9_000 / 0.498)


def test_reduce_only_never_opens_or_grows():
    venue = one(equity=10_000.0, position=1.0, entry_price=20_000.0, collateral=2_000.0)
    # reduce-only buy on a long: nothing to reduce
    rep = venue.execute(orders(venue, 1, 0.5, reduce_only=True), 20_000.0, 0)
    assert rep.flags[0] == ExecutionReport.REDUCE_ONLY_REJECTED
    assert venue.position[0] == 1.0
    # reduce-only sell of 3 on a long of 1: clipped to a close
    rep = venue.execute(orders(venue, -1, 3.0, reduce_only=True), 21_000.0, 1)
    assert rep.flags[0] == ExecutionReport.FILLED | ExecutionReport.REDUCE_ONLY_CLIPPED
    assert venue.position[0] == 0.0
    assert venue.realized_pnl[0] == pytest.approx(1_000.0)  # 1 * (21,000 - 20,000)


def test_rows_without_an_order_are_untouched():
    venue = PaperVenue.from_cohort(
        {"id": [1, 2], "equity": [5_000.0, 5_000.0]}, SPEC, slippage=NO_SLIP
    )
    venue.execute(orders(venue, [1, 0], [0.1, 0.7], collateral=[500.0, 900.0]), 20_000.0, 0)
    assert venue.position.tolist() == [0.1, 0.0]
    assert venue.wallet_balance[1] == 5_000.0
    assert venue.collateral[1] == 0.0


def test_margin_topup_moves_free_balance_into_the_position():
    venue = one(equity=10_000.0, position=1.0, entry_price=20_000.0, collateral=2_000.0)
    top = int(Reason.MARGIN_TOPUP)
    rep = venue.execute(orders(venue, 0, 0.0, collateral=1_000.0, reasons=top), 20_000.0, 0)
    assert rep.flags[0] == ExecutionReport.TOPUP
    assert venue.collateral[0] == 3_000.0
    assert venue.wallet_balance[0] == 10_000.0  # money moves inside the wallet
    # LP = (3,000 - 20,000) / (0.004 - 1) = 17,068.27
    assert venue.liquidation_price[0] == pytest.approx(17_000 / 0.996)
    # asking more than the 7,000 free posts the 7,000
    rep = venue.execute(orders(venue, 0, 0.0, collateral=8_000.0, reasons=top), 20_000.0, 1)
    assert rep.flags[0] == ExecutionReport.TOPUP | ExecutionReport.COLLATERAL_SHORT
    assert venue.collateral[0] == 10_000.0


def test_collateral_is_posted_from_what_is_free_and_fees_come_out_of_it_last():
    # 1,000 USDT, asks to post all 1,000: the fee 0.5 * 20,000 * 0.0005 = 5 is paid first, so
    # only 995 is free to post
    venue = PaperVenue.from_cohort({"id": [1], "equity": [1_000.0]}, SPEC, slippage=NO_SLIP)
    rep = venue.execute(orders(venue, 1, 0.5, collateral=1_000.0), 20_000.0, 0)
    assert rep.flags[0] == ExecutionReport.FILLED | ExecutionReport.COLLATERAL_SHORT
    assert venue.collateral[0] == pytest.approx(995.0)
    assert venue.wallet_balance[0] == pytest.approx(995.0)
    # nothing is free now: the next fill's fee 0.1 * 20,000 * 0.0005 = 1 comes out of collateral
    rep = venue.execute(orders(venue, 1, 0.1), 20_000.0, 1)
    assert rep.flags[0] == ExecutionReport.FILLED | ExecutionReport.CHARGED_COLLATERAL
    assert venue.collateral[0] == pytest.approx(994.0)
    assert venue.wallet_balance[0] == pytest.approx(994.0)
    # LP from the 994 left: (994 - 0.6 * 20,000) / (0.6 * 0.004 - 0.6)
    assert venue.liquidation_price[0] == pytest.approx((994 - 12_000) / (0.0024 - 0.6))


def test_funding_longs_pay_and_isolated_collateral_pays_when_free_balance_is_short():
    # isolated long 1 BTC at 20,000 holding all 2,000 of its equity as collateral
    venue = one(equity=2_000.0, position=1.0, entry_price=20_000.0, collateral=2_000.0)
    # rate 0.1% at mark 20,000: pays 20; nothing free, so collateral falls to 1,980
    paid = venue.apply_funding(0.001, 20_000.0)
    assert paid[0] == pytest.approx(20.0)
    assert venue.funding[0] == pytest.approx(20.0)
    assert venue.collateral[0] == pytest.approx(1_980.0)
    # and the liquidation price moves up: (1,980 - 20,000) / (0.004 - 1) = 18,092.37
    assert venue.liquidation_price[0] == pytest.approx(18_020 / 0.996)
    # a negative rate pays the long to its free balance; collateral unchanged
    paid = venue.apply_funding(-0.0005, 20_000.0)
    assert paid[0] == pytest.approx(-10.0)
    assert venue.collateral[0] == pytest.approx(1_980.0)
    assert venue.wallet_balance[0] == pytest.approx(1_990.0)


# ---------------------------------------------------------------- liquidation


def test_isolated_long_liquidated_on_the_bar_whose_low_reaches_it():
    # 1 BTC long at 20,000, isolated margin 2,000. Notional at LP is in bracket 1 (< 50,000:
    # mmr 0.4%, cum 0): LP = (2,000 + 0 - 20,000) / (0.004 - 1) = 18,072.289...
    lp = 18_000 / 0.996
    venue = one(equity=10_000.0, position=1.0, entry_price=20_000.0, collateral=2_000.0)
    account = {
        "exchange": "binance",
        "wallet_balance": 10_000.0,
        "positions": [
            {
                "symbol": SYMBOL,
                "side": "long",
                "contracts": 1.0,
                "entry_price": 20_000.0,
                "mark_price": 20_000.0,
                "margin_mode": "isolated",
                "collateral": 2_000.0,
            }
        ],
    }
    engine_lp = margin_report(account, MARKETS).positions[0].liquidation_price
    assert engine_lp == pytest.approx(lp, rel=1e-12)
    assert venue.liquidation_price[0] == pytest.approx(lp, rel=1e-12)
    # bar 1's low is a cent above LP, bar 2's a cent below
    out = venue.advance(bars([19_000.0, lp + 0.01, lp - 0.01, 17_000.0]))
    assert out.liquidated_bar[0] == 2
    assert out.liquidations_per_bar.tolist() == [0, 0, 1, 0]
    # the collateral is lost in full: wallet 10,000 - 2,000
    assert venue.wallet_balance[0] == pytest.approx(8_000.0)
    assert venue.realized_pnl[0] == pytest.approx(lp - 20_000.0)
    # what is left at LP is the maintenance margin, lost to the insurance fund
    assert venue.liquidation_losses[0] == pytest.approx(SPEC.tiers.maintenance_margin(lp))
    assert venue.liquidations[0] == 1
    assert venue.position[0] == 0.0
    assert venue.bars_in_market[0] == 3  # bars 0, 1 and 2 held the position
    assert venue.accounting_residual()[0] == pytest.approx(0.0, abs=1e-9)


def test_isolated_short_liquidated_by_the_high():
    # short 1 BTC at 20,000 with 2,000: LP = (2,000 + 20,000) / (0.004 + 1) = 21,912.35
    lp = 22_000 / 1.004
    venue = one(equity=5_000.0, position=-1.0, entry_price=20_000.0, collateral=2_000.0)
    assert venue.liquidation_price[0] == pytest.approx(lp)
    highs = np.array([21_000.0, lp - 0.01, lp + 0.01])
    out = venue.advance(bars(highs - 500.0, high=highs))
    assert out.liquidated_bar[0] == 2
    assert venue.wallet_balance[0] == pytest.approx(3_000.0)


def test_cross_long_liquidated_at_the_margin_engine_price():
    # cross, wallet 3,000, 1 BTC long at 20,000: LP = (3,000 - 20,000) / (0.004 - 1)
    account = {
        "exchange": "binance",
        "wallet_balance": 3_000.0,
        "positions": [
            {
                "symbol": SYMBOL,
                "side": "long",
                "contracts": 1.0,
                "entry_price": 20_000.0,
                "mark_price": 19_000.0,
                "margin_mode": "cross",
            }
        ],
    }
    engine_lp = margin_report(account, MARKETS).positions[0].liquidation_price
    assert engine_lp is not None
    assert engine_lp == pytest.approx(17_000 / 0.996, rel=1e-12)
    # the cohort states equity at the mark 19,000: 3,000 - 1,000 = 2,000
    venue = PaperVenue.from_cohort(
        {
            "id": ["x"],
            "equity": [2_000.0],
            "position": [1.0],
            "entry_price": [20_000.0],
            "margin_mode": ["cross"],
        },
        SPEC,
        mark=19_000.0,
    )
    assert venue.wallet_balance[0] == pytest.approx(3_000.0)
    assert venue.liquidation_price[0] == pytest.approx(engine_lp, rel=1e-12)
    out = venue.advance(bars([18_000.0, engine_lp + 0.01, engine_lp]))
    assert out.liquidated_bar[0] == 2  # low == LP reaches it
    # the account keeps nothing: the maintenance margin left at LP is lost
    assert venue.wallet_balance[0] == 0.0
    assert venue.liquidation_losses[0] == pytest.approx(0.004 * engine_lp)
    assert venue.summary()["return"][0] == -1.0
    assert venue.accounting_residual(19_000.0)[0] == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------- marking, drawdown, recording


def test_drawdown_time_in_market_groups_and_tracking():
    # follower 0: cross, 10,000 wallet, 1 BTC long at 20,000 (LP ~ 10,040: never reached)
    # follower 1: flat, 5,000
    venue = PaperVenue.from_cohort(
        {
            "id": [1, 2],
            "equity": [10_000.0, 5_000.0],
            "position": [1.0, 0.0],
            "entry_price": [20_000.0, math.nan],
            "margin_mode": ["cross", "cross"],
        },
        SPEC,
    )
    closes = np.array([21_000.0, 19_000.0, 22_000.0, 21_000.0])
    out = venue.advance(
        bars(closes - 100.0, high=closes + 100.0, close=closes),
        groups=np.array([0, 0]),
        track=[0],
    )
    # equity 11,000 (peak), 9,000, 12,000 (peak), 11,000: max drawdown 2,000 / 11,000
    assert out.track_equity is not None
    assert out.track_equity[0].tolist() == [11_000.0, 9_000.0, 12_000.0, 11_000.0]
    assert out.group_equity is not None
    assert out.group_equity[0].tolist() == [16_000.0, 14_000.0, 17_000.0, 16_000.0]
    assert out.group_notional is not None
    assert out.group_notional[0].tolist() == closes.tolist()
    s = venue.summary()
    assert s["max_drawdown"][0] == pytest.approx(2 / 11)
    assert s["max_drawdown"][1] == 0.0
    assert s["time_in_market"].tolist() == [1.0, 0.0]
    assert venue.peak_equity[0] == 12_000.0
    # a later walk keeps the running peak: 12,000 -> 10,800 is a 10% drawdown (< 2/11)
    venue.advance(bars([20_700.0], close=[20_800.0], start=10))
    assert venue.max_drawdown[0] == pytest.approx(2 / 11)


def test_advance_accepts_ohlc_and_a_separate_mark():
    venue = one(equity=10_000.0, position=1.0, entry_price=20_000.0, collateral=2_000.0)
    ohlc = ohlc_from_arrays(
        np.array([1, 2]) * MINUTE,
        [20_000.0, 20_000.0],
        [20_500.0, 20_600.0],
        [19_900.0, 19_800.0],
        [20_100.0, 20_200.0],
    )
    out = venue.advance(ohlc, mark=[20_150.0, 20_250.0], track=[0])
    assert out.track_equity is not None
    assert out.track_equity[0].tolist() == [10_150.0, 10_250.0]
    assert venue.mark_price == 20_250.0


# ---------------------------------------------------------------- through normalize


def test_normalize_sizes_events_on_the_venue_state():
    venue = PaperVenue.from_cohort(
        [
            {"id": "iso", "equity": 1_000.0, "margin_mode": "isolated"},
            {"id": "cross", "equity": 1_000.0, "margin_mode": "cross"},
        ],
        SPEC,
        slippage=NO_SLIP,
        taker_fee=0.0,
    )
    lead = {"symbol": SYMBOL, "lead_equity": 10_000.0}
    # lead opens 5 BTC with 10,000: each follower gets 0.5 BTC (proportional)
    ev = {"event_id": "a", "price": 20_000.0, **lead}
    res = normalize(
        {**ev, "lead_position_before": 0, "lead_position_after": 5}, venue.cohort(), MARKETS
    )
    venue.execute(res, 20_000.0, 0)
    assert venue.position.tolist() == [0.5, 0.5]
    coll = venue.collateral[0]
    assert coll == pytest.approx(res["collateral"][0])
    assert venue.collateral[1] == 0.0
    # lead cuts 60% (5 -> 2): each follower sells 0.3; isolated margin released pro rata
    ev = {"event_id": "b", "price": 21_000.0, **lead}
    res = normalize(
        {**ev, "lead_position_before": 5, "lead_position_after": 2}, venue.cohort(), MARKETS
    )
    venue.execute(res, 21_000.0, 1)
    assert venue.position.tolist() == [0.2, 0.2]
    assert venue.collateral[0] == pytest.approx(coll * 0.4)
    # realized 0.3 * (21,000 - 20,000) = 300
    assert venue.realized_pnl.tolist() == pytest.approx([300.0, 300.0])
    # lead closes: every follower closes exactly
    ev = {"event_id": "c", "price": 19_000.0, **lead}
    res = normalize(
        {**ev, "lead_position_before": 2, "lead_position_after": 0}, venue.cohort(), MARKETS
    )
    venue.execute(res, 19_000.0, 2)
    assert venue.position.tolist() == [0.0, 0.0]
    assert venue.collateral.tolist() == [0.0, 0.0]
    assert np.abs(venue.accounting_residual()).max() < 1e-9


# ---------------------------------------------------------------- accounting identity

_order = st.tuples(
    st.sampled_from([-1, 0, 1]),
    st.integers(0, 3_000),  # lots of 0.001
    st.booleans(),  # reduce_only
    st.floats(0.0, 3_000.0),  # collateral asked
)


@st.composite
def _operations(draw: st.DrawFn) -> list[tuple[str, Any]]:
    ops: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(2, 12))):
        kind = draw(st.sampled_from(["order", "order", "bars", "bars", "funding", "topup"]))
        arg: Any
        if kind in ("order", "topup"):
            arg = draw(st.lists(_order, min_size=4, max_size=4))
        elif kind == "bars":
            arg = draw(st.lists(st.floats(-0.1, 0.1), min_size=1, max_size=6))
        else:
            arg = draw(st.floats(-0.003, 0.003))
        ops.append((kind, arg))
    return ops


@given(ops=_operations(), fee=st.floats(0.0, 0.001), bps=st.floats(0.0, 5.0))
def test_accounting_identity_holds_per_follower(ops, fee, bps):
    venue = PaperVenue.from_cohort(
        {
            "id": [1, 2, 3, 4],
            "equity": [2_000.0, 5_000.0, 500.0, 20_000.0],
            # the short is liquidated ~8% above 20,000, the 5 BTC cross long ~20% below
            "position": [0.0, -1.0, 0.0, 5.0],
            "entry_price": [math.nan, 21_000.0, math.nan, 19_000.0],
            "collateral": [0.0, 800.0, 0.0, 0.0],
            "margin_mode": ["isolated", "isolated", "cross", "cross"],
            # the short adds margin, the cross long reduces, inside their floors
            "derisk_distance": [math.nan, 0.04, math.nan, 0.05],
            "derisk": ["reduce", "add_margin", "reduce", "reduce"],
        },
        SPEC,
        taker_fee=fee,
        slippage=SlippageModel(fixed_bps=bps, impact_bps=2.0),
        mark=20_000.0,
    )
    price, clock = 20_000.0, 0
    for kind, arg in ops:
        clock += 1
        if kind in ("order", "topup"):
            side = np.array([o[0] for o in arg]) if kind == "order" else 0
            venue.execute(
                orders(
                    venue,
                    side,
                    [o[1] / 1000 for o in arg],
                    reduce_only=[o[2] for o in arg],
                    collateral=[o[3] for o in arg],
                    reasons=int(Reason.MARGIN_TOPUP) if kind == "topup" else 0,
                ),
                price,
                clock * MINUTE,
            )
        elif kind == "bars":
            closes = price * np.cumprod(1.0 + np.asarray(arg))
            lows = np.minimum(closes, np.r_[price, closes[:-1]]) * 0.99
            highs = np.maximum(closes, np.r_[price, closes[:-1]]) * 1.01
            venue.advance(bars(lows, high=highs, close=closes, start=clock))
            clock += len(arg)
            price = float(closes[-1])
        else:
            venue.apply_funding(arg, price, clock * MINUTE)
        scale = (
            venue.equity_start
            + np.abs(venue.realized_pnl)
            + np.abs(venue.unrealized_pnl(price))
            + venue.fees
            + np.abs(venue.funding)
            + venue.liquidation_losses
        )
        residual = venue.accounting_residual(price)
        assert np.all(np.abs(residual) <= 1e-12 * scale), residual
        assert np.all(venue.collateral <= np.maximum(venue.wallet_balance, 0.0) + 1e-9)
    event(f"liquidated: {int(np.count_nonzero(venue.liquidations))} of 4")
    event(f"de-risked: {int(np.count_nonzero(venue.derisks))} of 2")


# ---------------------------------------------------------------- kernels vs references


def _random_state(rng: np.random.Generator, n: int, price: float) -> dict[str, np.ndarray]:
    lots = rng.integers(-3_000, 3_001, n) * (rng.random(n) < 0.8)
    position = lots / 1000.0
    entry = np.where(position != 0.0, price * rng.uniform(0.9, 1.1, n), np.nan)
    isolated = rng.random(n) < 0.5
    notional = np.abs(position) * price
    wallet = notional * rng.uniform(0.05, 1.5, n) + rng.uniform(0.0, 500.0, n)
    collateral = np.where(isolated & (position != 0), wallet * rng.uniform(0.0, 1.0, n), 0.0)
    state: dict[str, np.ndarray] = {
        "position": position,
        "entry_price": entry,
        "wallet": wallet,
        "collateral": collateral,
        "isolated": isolated,
        "leverage": np.where(rng.random(n) < 0.5, rng.integers(1, 126, n), np.nan).astype(float),
        "fees": rng.uniform(0.0, 5.0, n),
        "funding": rng.uniform(-5.0, 5.0, n),
        "slippage": rng.uniform(0.0, 5.0, n),
        "realized": rng.uniform(-50.0, 50.0, n),
        "liquidations": rng.integers(0, 2, n).astype(np.int64),
        "liquidation_losses": rng.uniform(0.0, 10.0, n),
        "peak_equity": wallet * rng.uniform(1.0, 1.2, n),
        "max_drawdown": rng.uniform(0.0, 0.3, n),
        "bars_in_market": rng.integers(0, 100, n).astype(np.int64),
    }
    state["liq_price"] = vk.liquidation_prices(
        position, entry, wallet, collateral, isolated, 1.0, *TIERS
    )
    return state


def _copy(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in state.items()}


def _assert_same(a: Mapping[str, NDArray[Any]], b: Mapping[str, NDArray[Any]]) -> None:
    assert a.keys() == b.keys()
    for name, value in a.items():
        assert np.array_equal(value, b[name], equal_nan=True), name


@pytest.mark.parametrize("with_derisk", [False, True])
def test_advance_kernel_matches_reference(rng, with_derisk):
    n, n_bars, price = 211, 300, 20_000.0
    state = _random_state(rng, n, price)
    state["derisks"] = np.zeros(n, dtype=np.int64)
    # de-risking floors of 1-6% on two thirds of the followers (NaN: none), restored to
    # 1-3 points more; a third of the isolated ones add margin first
    floor = np.where(rng.random(n) < 2 / 3, rng.uniform(0.01, 0.06, n), np.nan)
    if not with_derisk:
        floor[:] = np.nan
    setup = testing.DeriskSetup(
        floor=floor,
        restore=floor + rng.uniform(0.0, 0.03, n),
        add_margin=rng.random(n) < 1 / 3,
        fill=np.array([0.0005, 1.5, 3.0, 1e6, 0.001, 3, 0.001]),
        tiers=(*TIERS, SPEC.tiers.max_leverage),
    )
    closes = price * np.exp(np.cumsum(rng.normal(0.0, 0.01, n_bars)))
    low = closes * (1 - rng.uniform(0.0, 0.02, n_bars))
    high = closes * (1 + rng.uniform(0.0, 0.02, n_bars))
    group = rng.integers(-1, 3, n).astype(np.int64)
    tracked = rng.choice(n, 9, replace=False)
    track_row = np.full(n, -1, dtype=np.int64)
    track_row[tracked] = np.arange(9)
    for groups, tracks, n_groups, n_tracked in (
        (group, track_row, 3, 9),
        (np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64), 0, 0),
    ):
        kernel_state = _copy(state)
        out: dict[str, NDArray[Any]] = {
            "liquidated_bar": np.empty(n, dtype=np.int64),
            "group_equity": np.zeros((vk.CHUNKS, n_groups, n_bars)),
            "group_notional": np.zeros((vk.CHUNKS, n_groups, n_bars)),
            "group_flat": np.zeros((vk.CHUNKS, n_groups, n_bars)),
            "track_equity": np.zeros((n_tracked, n_bars)),
            "track_position": np.zeros((n_tracked, n_bars)),
        }
        k = kernel_state
        vk.advance_kernel(
            high, low, closes, 1.0,
            k["position"], k["entry_price"], k["wallet"], k["collateral"], k["isolated"],
            k["liq_price"], k["realized"], k["liquidations"], k["liquidation_losses"],
            k["peak_equity"], k["max_drawdown"], k["bars_in_market"],
            setup.floor, setup.restore, setup.add_margin, setup.fill, *setup.tiers,
            k["fees"], k["slippage"], k["derisks"],
            groups, tracks, *out.values(),
        )  # fmt: skip
        ref_state = _copy(state)
        ref = testing.advance_reference(
            high, low, closes, 1.0, ref_state, groups, tracks, n_groups, n_tracked, setup
        )
        _assert_same(kernel_state, ref_state)
        _assert_same(out, ref)
        # the walk is not trivial: some followers were liquidated, by both
        assert (out["liquidated_bar"] >= 0).sum() > 5
        # and with floors, some were de-risked, some of those more than once
        if with_derisk:
            assert (kernel_state["derisks"] > 0).sum() > 5
            assert (kernel_state["derisks"] > 1).sum() > 0
        else:
            assert (kernel_state["derisks"] == 0).all()


def test_execute_kernel_matches_reference(rng):
    n, price = 307, 20_000.0
    state = _random_state(rng, n, price)
    side = rng.integers(-1, 2, n).astype(np.int8)
    amount = rng.integers(0, 4_000, n) / 1000.0
    reduce_only = rng.random(n) < 0.3
    post = rng.uniform(0.0, 3_000.0, n)
    topup = (side == 0) & (rng.random(n) < 0.5)
    leverage = np.where(rng.random(n) < 0.5, 10.0, np.nan)
    args = (side, amount, reduce_only, post, topup, leverage, price, 0.0005, 1.5, 3.0, 1e6, 1.0)
    kernel_state = _copy(state)
    k = kernel_state
    out: dict[str, NDArray[Any]] = {
        "fill_price": np.empty(n),
        "fee": np.empty(n),
        "slippage": np.empty(n),
        "realized": np.empty(n),
        "flags": np.empty(n, dtype=np.uint8),
    }
    vk.execute_kernel(
        *args, 0.001, 3, *TIERS,
        k["position"], k["entry_price"], k["wallet"], k["collateral"], k["isolated"],
        k["liq_price"], k["leverage"], k["fees"], k["slippage"], k["realized"],
        *out.values(),
    )  # fmt: skip
    ref_state = _copy(state)
    ref = testing.execute_reference(*args, 0.001, 3, TIERS, ref_state)
    _assert_same(kernel_state, ref_state)
    _assert_same(out, ref)
    flags = out["flags"]
    for bit in (vk.X_FILLED, vk.X_REDUCE_ONLY_REJECTED, vk.X_REDUCE_ONLY_CLIPPED, vk.X_TOPUP):
        assert np.any(flags & bit), bit  # every branch was taken


def test_funding_and_free_balance_kernels_match_references(rng):
    n, price = 199, 20_000.0
    state = _random_state(rng, n, price)
    k = _copy(state)
    pay = np.empty(n)
    vk.funding_kernel(
        0.002, price, 1.0, *TIERS,
        k["position"], k["entry_price"], k["wallet"], k["collateral"], k["isolated"],
        k["liq_price"], k["funding"], pay,
    )  # fmt: skip
    ref_state = _copy(state)
    ref_pay = testing.funding_reference(0.002, price, 1.0, TIERS, ref_state)
    _assert_same(k, ref_state)
    assert np.array_equal(pay, ref_pay)
    equity = k["wallet"] + vk.unrealized_pnl(k["position"], k["entry_price"], price, 1.0)
    cols = (k["position"], equity, k["wallet"], k["collateral"], k["isolated"], k["leverage"])
    t = SPEC.tiers
    free = vk.free_balance(*cols, price, 1.0, t.cap, t.max_leverage)
    assert np.array_equal(
        free, testing.free_balance_reference(*cols, price, 1.0, t.cap, t.max_leverage)
    )


# ---------------------------------------------------------------- bad input


def test_bars_with_nan_or_negative_prices_name_the_field():
    venue = one(equity=1_000.0)
    with pytest.raises(InvalidInput, match=r"bars.low is missing \(NaN\) at row 1") as err:
        venue.advance(bars([20_000.0, math.nan], high=[20_100.0, 20_100.0]))
    assert err.value.field == "bars.low[1]"
    b = bars([20_000.0, 20_000.0])
    b["close"] = np.array([20_050.0, -5.0])
    with pytest.raises(InvalidInput, match=r"bars\.close is -5\.0 at row 1") as err:
        venue.advance(b)
    assert err.value.field == "bars.close[1]"
    with pytest.raises(InvalidInput, match=r"below bars\.low") as err:
        venue.advance(bars([20_000.0], high=[19_000.0]))
    assert err.value.field == "bars.high[0]"
    with pytest.raises(InvalidInput, match="no 'high' column") as err:
        venue.advance({"timestamp": [1], "low": [1.0], "close": [1.0]})
    assert err.value.field == "bars.high"


def test_unsorted_or_repeated_timestamps_are_rejected():
    venue = one(equity=1_000.0)
    b = bars([20_000.0, 20_000.0, 20_000.0])
    b["timestamp"] = np.array([3, 5, 4]) * MINUTE
    with pytest.raises(InvalidInput, match="is earlier than row 1") as err:
        venue.advance(b)
    assert err.value.field == "bars.timestamp[2]"
    b["timestamp"] = np.array([3, 3, 4]) * MINUTE
    with pytest.raises(InvalidInput, match="duplicates row 0"):
        venue.advance(b)
    venue.advance(bars([20_000.0, 20_000.0], start=10))
    with pytest.raises(InvalidInput, match="not after the last bar") as err:
        venue.advance(bars([20_000.0], start=11))
    assert err.value.field == "bars.timestamp[0]"
    with pytest.raises(InvalidInput, match="earlier than the venue's clock") as err:
        venue.execute(orders(venue, 0, 0.0), 20_000.0, 5 * MINUTE)
    assert err.value.field == "timestamp"
    venue.execute(orders(venue, 0, 0.0), 20_000.0, 30 * MINUTE)
    with pytest.raises(InvalidInput, match="before the venue's clock"):
        venue.advance(bars([20_000.0], start=20))


def test_result_for_other_followers_or_symbol_is_rejected():
    venue = PaperVenue.from_cohort({"id": [1, 2], "equity": [1_000.0, 1_000.0]}, SPEC)
    with pytest.raises(
        InvalidInput, match=r"result.id\[0\] is 2 but the venue's follower 0 is 1"
    ) as err:
        venue.execute(orders(venue, 1, 0.1, ids=[2, 1]), 20_000.0, 0)
    assert err.value.field == "result.id[0]"
    short = NormalizeResult("e", "open", SYMBOL, 1.0, {**orders(venue, 1, 0.1).columns})
    short.columns["id"] = np.array([1])
    with pytest.raises(InvalidInput, match="lists 1 followers but the venue holds 2") as err:
        venue.execute(short, 20_000.0, 0)
    assert err.value.field == "result.id"
    other = dataclasses.replace(orders(venue, 1, 0.1), symbol="ETH/USDT:USDT")
    with pytest.raises(InvalidInput, match="result is for ETH/USDT:USDT") as err:
        venue.execute(other, 20_000.0, 0)
    assert err.value.field == "result.symbol"
    with pytest.raises(InvalidInput, match=r"result.amount\[1\] is nan") as err:
        venue.execute(orders(venue, 1, [0.1, math.nan]), 20_000.0, 0)
    assert err.value.field == "result.amount[1]"
    with pytest.raises(InvalidInput, match="positive finite price") as err:
        venue.execute(orders(venue, 1, 0.1), -1.0, 0)
    assert err.value.field == "price"
    assert venue.position.tolist() == [0.0, 0.0]  # nothing was filled by a rejected call


def test_inverse_market_is_a_configuration_error():
    inverse = dataclasses.replace(SPEC, linear=False)
    with pytest.raises(ConfigurationError, match="inverse") as err:
        PaperVenue.from_cohort({"id": [1], "equity": [1_000.0]}, inverse)
    assert err.value.field == "market"


def test_bad_cohort_rows_and_parameters():
    with pytest.raises(InvalidInput, match="row 1: equity is nan") as err:
        PaperVenue.from_cohort({"id": [1, 2], "equity": [1.0, math.nan]}, SPEC)
    assert err.value.field == "followers.equity[1]"
    with pytest.raises(InvalidInput, match="entry_price is nan") as err:
        PaperVenue.from_cohort({"id": [1], "equity": [1.0], "position": [0.5]}, SPEC)
    assert err.value.field == "followers.entry_price[0]"
    with pytest.raises(InvalidInput, match="above its wallet balance") as err:
        PaperVenue.from_cohort(
            {"id": [1], "equity": [100.0], "position": [1.0], "entry_price": [1.0],
             "collateral": [200.0]},
            SPEC,
        )  # fmt: skip
    assert err.value.field == "followers.collateral[0]"
    with pytest.raises(InvalidInput, match="taker_fee") as err:
        PaperVenue.from_cohort({"id": [1], "equity": [1.0]}, SPEC, taker_fee=-0.1)
    assert err.value.field == "taker_fee"
    with pytest.raises(InvalidInput, match="impact_notional") as err:
        SlippageModel(impact_notional=0.0)
    assert err.value.field == "slippage.impact_notional"
    with pytest.raises(InvalidInput, match=r"cohort\.id"):
        PaperVenue.from_cohort({"id": [1], "equity": [1.0]}, SPEC).update_cohort(
            {"id": [9], "equity": [1.0]}
        )


# ---------------------------------------------------------------- the order venue protocol


def order_venue() -> PaperVenue:
    # two cross-margin followers of 10,000 USDT, mark 20,000, no fee, no slippage, clock at 1 ms
    return PaperVenue.from_cohort(
        {"id": ["a", "b"], "equity": [10_000.0, 10_000.0], "margin_mode": ["cross", "cross"]},
        SPEC,
        taker_fee=0.0,
        slippage=NO_SLIP,
        mark=20_000.0,
        timestamp=1_000_000,
    )


def request(client_id: str, **changes: Any) -> OrderRequest:
    fields: dict[str, Any] = {
        "client_id": client_id,
        "venue_client_id": client_id,
        "account": "a",
        "credentials_ref": "env:NONE",
        "symbol": SYMBOL,
        "side": "buy",
        "amount": "0.1",
        "price_limit": None,
        "reduce_only": False,
        "time_in_force": "ioc",
        "expires_at_ms": 60_000,
    }
    return OrderRequest(**{**fields, **changes})


def test_paper_venue_is_an_order_venue():
    assert isinstance(order_venue(), OrderVenue)


def test_an_order_fills_at_the_mark():
    v = order_venue()
    ack = v.submit(request("0x01"))
    # 0.1 BTC at the 20,000 mark, no fee or slippage
    assert ack == Ack("0x01", "filled", exchange_id="0x01", filled="0.1", average_price="20000.0")
    assert v.position.tolist() == [0.1, 0.0]
    assert v.entry_price[0] == 20_000.0


def test_a_client_id_fills_once_and_is_found_by_lookup():
    v = order_venue()
    first = v.submit(request("0x02"))
    assert v.submit(request("0x02", amount="0.3")) == first
    assert v.position[0] == 0.1
    assert v.lookup(request("0x02")) == Lookup("0x02", "filled", exchange_id="0x02")
    assert v.lookup(request("0x03")) == Lookup("0x03", "not_found")


def test_refusals_are_rejected_acks_with_a_reason():
    v = order_venue()
    cases = {
        "0x10": (request("0x10", side="sell", reduce_only=True), "nothing to reduce"),
        "0x11": (request("0x11", symbol="ETH/USDT:USDT"), "not ETH/USDT:USDT"),
        # a buy capped at 19,990 cannot match at the 20,000 mark; a sell floored at 20,010 either
        "0x12": (request("0x12", price_limit="19990"), "could not match"),
        "0x13": (request("0x13", side="sell", price_limit="20010"), "could not match"),
        # the clock (1 ms) is past an expiry at 0 ms
        "0x14": (request("0x14", expires_at_ms=0), "after its expiry"),
    }
    for client_id, (order, reason) in cases.items():
        ack = v.submit(order)
        assert ack.status == "rejected", client_id
        assert ack.reason is not None
        assert reason in ack.reason
        assert v.lookup(order).status == "rejected"
    assert v.position.tolist() == [0.0, 0.0]
    # a limit the mark satisfies fills
    assert v.submit(request("0x15", price_limit="20010")).status == "filled"


def test_a_reduce_only_order_larger_than_the_position_fills_the_position():
    v = order_venue()
    v.submit(request("0x20", amount="0.05"))
    ack = v.submit(request("0x21", side="sell", amount="0.2", reduce_only=True))
    assert (ack.status, ack.filled) == ("filled", "0.050")
    assert v.position[0] == 0.0


def test_unknown_account_and_malformed_amount():
    with pytest.raises(InvalidInput, match="account 'z' is not a follower"):
        order_venue().submit(request("0x30", account="z"))
    with pytest.raises(InvalidInput, match="amount must be a positive decimal"):
        order_venue().submit(request("0x31", amount="-1"))
