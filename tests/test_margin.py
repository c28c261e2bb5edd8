from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from levalign.errors import InvalidInput, Rejected
from levalign.margin import (
    HyperliquidMarginModel,
    Leg,
    TieredMarginModel,
    liquidation_prices,
    margin_report,
)
from levalign.markets import MarketSpec, TierTable, load_markets

MODEL = TieredMarginModel()


def _pos(symbol="BTC/USDT:USDT", side="long", contracts=1.0, entry=20_000.0, mark=20_000.0, **kw):
    return {
        "symbol": symbol,
        "side": side,
        "contracts": contracts,
        "entry_price": entry,
        "mark_price": mark,
        **kw,
    }


def _account(*positions, wallet=10_000.0, exchange="binance", **kw):
    return {"exchange": exchange, "wallet_balance": wallet, "positions": list(positions), **kw}


def test_isolated_long_by_hand(binance):
    # 1 BTC long at 20,000, isolated margin 2,000; notional 20k is in bracket 1 (mmr 0.4%, cum 0):
    # LP = (WB + cum - Q*EP) / (Q*mmr - Q) = (2,000 - 20,000) / (0.004 - 1) = 18,000 / 0.996
    report = margin_report(
        _account(_pos(margin_mode="isolated", collateral=2_000.0, leverage=10)), binance
    )
    p = report.positions[0]
    assert p.liquidation_price == pytest.approx(18_000 / 0.996, rel=1e-12)
    assert p.maintenance_margin == pytest.approx(80.0)  # 20,000 * 0.004
    assert p.initial_margin == pytest.approx(2_000.0)  # 20,000 / 10
    assert p.liquidation_distance == pytest.approx(1 - 18_000 / 0.996 / 20_000)


def test_isolated_short_by_hand(binance):
    # short: LP = (WB + cum + Q*EP) / (Q*mmr + Q) = (2,000 + 20,000) / 1.004
    report = margin_report(
        _account(_pos(side="short", margin_mode="isolated", collateral=2_000.0)), binance
    )
    assert report.positions[0].liquidation_price == pytest.approx(22_000 / 1.004, rel=1e-12)


def test_liquidation_recomputed_in_the_tier_at_the_liquidation_notional(binance):
    # 2.6 BTC at 20,000 = 52,000 notional: bracket 2 at the mark (mmr 0.5%, cum 50).
    # Bracket 2 gives LP = (5,200 + 50 - 52,000) / (2.6*0.005 - 2.6) = 18,071.1, whose notional
    # 46,985 is in bracket 1, so recompute with bracket 1:
    # LP = (5,200 - 52,000) / (2.6*0.004 - 2.6) = 46,800 / 2.5896 = 18,072.29
    # (notional 46,988: bracket 1, consistent)
    report = margin_report(
        _account(_pos(contracts=2.6, margin_mode="isolated", collateral=5_200.0)), binance
    )
    assert report.positions[0].liquidation_price == pytest.approx(46_800 / 2.5896, rel=1e-12)
    assert report.positions[0].maintenance_margin == pytest.approx(52_000 * 0.005 - 50)


def test_cross_uses_other_positions_mm_and_pnl(binance):
    # WB 10,000; BTC long 1 @ 20,000 (cross); ETH long 10, entry 1,500, mark 1,400 (cross).
    # LP_BTC = (WB - TMM_eth + UPNL_eth + cum - Q*EP) / (Q*mmr - Q), UPNL_eth = 10 * (1,400 - 1,500)
    eth = binance["ETH/USDT:USDT"].tiers
    tmm_eth = eth.maintenance_margin(14_000)
    expected = (10_000 - tmm_eth - 1_000 - 20_000) / (0.004 - 1)
    report = margin_report(
        _account(_pos(), _pos("ETH/USDT:USDT", contracts=10, entry=1_500, mark=1_400)), binance
    )
    assert report.positions[0].liquidation_price == pytest.approx(expected, rel=1e-12)
    assert report.equity == pytest.approx(9_000)
    # margin ratio = total MM / equity = (80 + tmm_eth) / 9,000
    assert report.margin_ratio == pytest.approx((80 + tmm_eth) / 9_000)
    assert report.effective_leverage == pytest.approx(34_000 / 9_000)


def test_hedge_mode_binance_formula(binance):
    # long 1 @ 20,000 and short 0.5 @ 21,000, cross WB 3,000, both legs in bracket 1:
    # LP = (WB + cumL + cumS - QL*EPL + QS*EPS) / (QL*mmr + QS*mmr - QL + QS)
    #    = (3,000 - 20,000 + 10,500) / (0.004 + 0.002 - 1 + 0.5) = -6,500 / -0.494
    report = margin_report(
        _account(
            _pos(mark=20_000),
            _pos(side="short", contracts=0.5, entry=21_000, mark=20_000),
            wallet=3_000,
            position_mode="hedge",
        ),
        binance,
    )
    assert report.positions[0].liquidation_price == pytest.approx(6_500 / 0.494, rel=1e-12)
    assert report.positions[1].liquidation_price == report.positions[0].liquidation_price


def _inverse_market() -> MarketSpec:
    tiers = TierTable.from_rows([0, 5], [5, 50], [0.004, 0.01], [125, 50], symbol="BTC/USD:BTC")
    return MarketSpec(
        symbol="BTC/USD:BTC",
        id="BTCUSD_PERP",
        base="BTC",
        quote="USD",
        settle="BTC",
        tiers=tiers,
        linear=False,
        contract_size=100.0,
        amount_step=1.0,
        min_amount=1.0,
    )


def test_inverse_coin_m_formula():
    # Binance COIN-M: LP = (Q*mmr + s*Q) / (WB + cum + s*Q/EP), Q in USD = 100 contracts * $100.
    # long, WB 0.05 BTC: LP = (10,000*0.004 + 10,000) / (0.05 + 10,000/20,000) = 10,040 / 0.55
    spec = _inverse_market()
    lp = MODEL.liquidation_price(spec, [Leg(1.0, 100.0, 20_000.0)], 0.05, 20_000.0)
    assert lp == pytest.approx(10_040 / 0.55, rel=1e-12)
    # the notional at LP, 10,000 / 18,254.5 = 0.548 BTC, is in tier 1 as used
    assert lp is not None
    assert 10_000 / lp < 5
    # PnL in coin: s*Q*(1/EP - 1/x) = 10,000 * (1/20,000 - 1/25,000) = 0.1 BTC
    assert MODEL.unrealized_pnl(spec, 1.0, 100.0, 20_000.0, 25_000.0) == pytest.approx(0.1)


def test_inverse_short_fully_collateralized_never_liquidates():
    # short 100 contracts ($10,000) with 1 BTC margin at 20,000: balance exceeds Q/EP = 0.5 BTC,
    # so the coin balance covers any rally: no liquidation price
    spec = _inverse_market()
    assert MODEL.liquidation_price(spec, [Leg(-1.0, 100.0, 20_000.0)], 1.0, 20_000.0) is None


def test_hyperliquid_docs_formula(hyperliquid):
    # Hyperliquid: liq = price - side * margin_available / size / (1 - l * side), l = 1/(2*40)
    # isolated 1 BTC at 60,000 with 3,000 margin: MM = 60,000/80 = 750, available = 2,250
    # liq = 60,000 - 2,250 / (1 - 1/80)
    report = margin_report(
        _account(
            _pos(
                "BTC/USDC:USDC", entry=60_000, mark=60_000, margin_mode="isolated", collateral=3_000
            ),
            exchange="hyperliquid",
        ),
        hyperliquid,
    )
    assert report.positions[0].liquidation_price == pytest.approx(
        60_000 - 2_250 / (1 - 1 / 80), rel=1e-12
    )
    assert report.positions[0].maintenance_margin == pytest.approx(750)


def test_hyperliquid_has_no_hedge_mode(hyperliquid):
    acct = _account(_pos("BTC/USDC:USDC"), exchange="hyperliquid", position_mode="hedge")
    with pytest.raises(InvalidInput, match="hyperliquid has no hedge mode"):
        margin_report(acct, hyperliquid)


def test_leverage_above_tier_max_is_rejected(binance):
    with pytest.raises(Rejected, match=r"leverage 150x is above the maximum 125x") as info:
        margin_report(_account(_pos(leverage=150)), binance)
    assert info.value.details["max_leverage"] == 125


def test_leverage_limit_falls_with_notional(binance):
    # 10 BTC at 20,000 = 200,000 notional: bracket 2, max 100x; 110x is refused there
    with pytest.raises(Rejected, match="maximum 100x"):
        MODEL.initial_margin(binance["BTC/USDT:USDT"], 10, 20_000, 110)


def test_bankrupt_account_is_invalid(binance):
    with pytest.raises(InvalidInput, match=r"equity .* must be positive"):
        margin_report(_account(_pos(mark=5_000), wallet=1_000), binance)


def test_two_settle_currencies_are_invalid(binance):
    with pytest.raises(InvalidInput, match="settle in USDC, USDT"):
        margin_report(_account(_pos(), _pos("BTC/USDC:USDC")), binance)


def test_two_positions_in_one_way_mode_are_invalid(binance):
    with pytest.raises(InvalidInput, match=r"positions\[0\] and positions\[1\] are two positions"):
        margin_report(_account(_pos(), _pos()), binance)


def test_nan_mark_price_names_the_field(binance):
    with pytest.raises(
        InvalidInput, match=r"account.positions\[0\].mark_price: must be a positive"
    ) as info:
        margin_report(_account(_pos(mark=math.nan)), binance)
    assert info.value.field == "account.positions[0].mark_price"


def test_ccxt_camel_case_position_is_accepted(binance):
    # a position straight from ccxt fetch_positions(), with fields we do not use
    ccxt_position = {
        "info": {"symbol": "BTCUSDT"},
        "symbol": "BTC/USDT:USDT",
        "timestamp": 1,
        "side": "long",
        "contracts": 1,
        "contractSize": 1,
        "entryPrice": 20_000,
        "markPrice": 20_000,
        "marginMode": "isolated",
        "collateral": 2_000,
        "leverage": 10,
        "hedged": False,
        "liquidationPrice": 18_072.29,
        "percentage": 0,
    }
    report = margin_report(
        {"exchange": "binance", "walletBalance": 10_000, "positions": [ccxt_position]}, binance
    )
    assert report.positions[0].liquidation_price == pytest.approx(18_000 / 0.996)


def test_signed_contracts_without_side(binance):
    report = margin_report(_account({**_pos(), "side": None, "contracts": -1.0}), binance)
    assert report.positions[0].side == "short"


def test_hyperliquid_tier_table_deduction():
    # ETH: 25x to 100M then 15x: mmr 2% then 3.333%; deduction = 100M * (1/30 - 1/50)
    t = HyperliquidMarginModel.tier_table([0, 100e6], [25, 15])
    assert t.cum[1] == pytest.approx(100e6 * (1 / 30 - 1 / 50))
    # MM is continuous at the bound
    assert t.maintenance_margin(100e6 - 1e-6) == pytest.approx(
        t.maintenance_margin(100e6), rel=1e-9
    )


# ---------------------------------------------------------------- kernel vs scalar solver

_btc = load_markets("binance")["BTC/USDT:USDT"]


@given(
    side=st.sampled_from([1.0, -1.0]),
    contracts=st.floats(0.001, 20_000.0),
    entry=st.floats(1_000.0, 200_000.0),
    margin_fraction=st.floats(0.005, 1.5),
)
def test_vectorized_kernel_equals_scalar_solver(side, contracts, entry, margin_fraction):
    balance = contracts * entry * margin_fraction
    scalar = MODEL.liquidation_price(_btc, [Leg(side, contracts, entry)], balance, entry)
    vector = liquidation_prices(
        _btc, np.array([side]), np.array([contracts]), np.array([entry]), np.array([balance])
    )[0]
    if scalar is None:
        assert math.isnan(vector)
    else:
        assert vector == pytest.approx(scalar, rel=1e-9)


@given(
    side=st.sampled_from([1.0, -1.0]),
    contracts=st.floats(0.001, 20_000.0),
    entry=st.floats(1_000.0, 200_000.0),
    margin_fraction=st.floats(0.005, 0.9),
)
def test_at_the_liquidation_price_balance_equals_maintenance_margin(
    side, contracts, entry, margin_fraction
):
    # definition check: at LP, isolated margin + PnL == N(LP) * mmr - cum, in the tier of N(LP)
    balance = contracts * entry * margin_fraction
    lp = MODEL.liquidation_price(_btc, [Leg(side, contracts, entry)], balance, entry)
    assert lp is not None
    equity_at_lp = balance + side * contracts * (lp - entry)
    mm_at_lp = _btc.tiers.maintenance_margin(contracts * lp)
    assert equity_at_lp == pytest.approx(mm_at_lp, rel=1e-7, abs=1e-6 * contracts * entry)


def test_underwater_short_is_liquidatable_now_not_never(binance):
    # short 1 BTC at 20,000 with a balance of -20,100 behind it (other positions ate it):
    # g(x) = -20,100 - (x - 20,000) - MM(x) starts at g(0) = -100 and falls: negative at every
    # price, no root, and the answer is "liquidated now" (the mark), not "never"
    spec = binance["BTC/USDT:USDT"]
    assert (
        MODEL.liquidation_price(spec, [Leg(-1.0, 1.0, 20_000.0)], -20_100.0, 20_000.0) == 20_000.0
    )
    vec = liquidation_prices(
        spec, np.array([-1.0]), np.array([1.0]), np.array([20_000.0]), np.array([-20_100.0])
    )
    assert vec[0] == 20_000.0
    # while a long with more margin than notional is safe at every price
    assert MODEL.liquidation_price(spec, [Leg(1.0, 1.0, 20_000.0)], 25_000.0, 20_000.0) is None
