from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from levalign.errors import ConfigurationError, InvalidInput, Rejected
from levalign.margin import (
    HyperliquidMarginModel,
    Leg,
    TieredMarginModel,
    liquidation_market,
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


# ---------------------------------------------------------------- one import direction


def test_markets_does_not_import_margin():
    # margin imports markets; markets must not import margin back (no cycle, at any depth of
    # the module: lazy imports inside functions count)
    import ast
    import inspect

    import levalign.markets

    tree = ast.parse(inspect.getsource(levalign.markets))
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not {m for m in imported if m.startswith("levalign.margin")}


# ---------------------------------------------------------------- every venue's model


def _tiers(
    symbol: str, mmr: float = 0.005, lev: float = 100.0
) -> dict[str, list[dict[str, float]]]:
    return {
        symbol: [
            {"minNotional": 0, "maxNotional": 1e9, "maintenanceMarginRate": mmr, "maxLeverage": lev}
        ]
    }


@pytest.mark.parametrize(
    ("exchange", "model"),
    [
        ("bybit", "BybitMarginModel"),
        ("okx", "OkxMarginModel"),
        ("bitget", "BitgetMarginModel"),
        ("gate", "GateMarginModel"),
        ("gateio", "GateMarginModel"),
        ("kucoinfutures", "KucoinMarginModel"),
        ("binancecoinm", "TieredMarginModel"),
    ],
)
def test_every_venue_reports_with_its_own_model(exchange, model):
    # 1 BTC long at 20,000, isolated margin 2,000, mmr 0.5%, no taker fee stated
    from levalign import margin

    markets = load_markets(exchange, tiers=_tiers("BTC/USDT:USDT"))
    assert type(margin.margin_model(markets.family)).__name__ == model
    report = margin_report(
        _account(_pos(margin_mode="isolated", position_margin=2_000.0), exchange=exchange),
        markets,
    )
    lp = report.positions[0].liquidation_price
    fee = {"okx": 0.0005, "bitget": 0.0006, "gate": 0.0005, "gateio": 0.0005}.get(exchange)
    if exchange in ("bybit", "kucoinfutures"):
        # MM at the entry value, 100; Bybit's position margin holds the fee to close at its
        # base taker rate f = 0.055%: B = (2,000 - f * 20,000) / (1 - f)
        b = (2_000 - 0.00055 * 20_000) / (1 - 0.00055) if exchange == "bybit" else 2_000.0
        assert lp == pytest.approx(20_000 - (b - 100), rel=1e-12)
    elif fee is not None:
        assert lp == pytest.approx((2_000 - 20_000) / (0.005 + fee - 1), rel=1e-12)
    else:
        assert lp == pytest.approx((2_000 - 20_000) / (0.005 - 1), rel=1e-12)


@pytest.mark.parametrize("exchange", ["bybit", "okx", "bitget", "gate", "kucoinfutures"])
def test_venue_without_preset_says_which_files_to_pass(exchange):
    with pytest.raises(
        ConfigurationError, match=r"no bundled markets.*tiers.*fetch_leverage_tiers"
    ):
        margin_report(_account(_pos(), exchange=exchange))


def test_okx_tiers_are_bounded_in_contracts():
    # OKX position tiers by size: ccxt reports minSz/maxSz as min/maxNotional. 0-100 contracts
    # at mmr 1%, 100+ at 2%. 150 contracts of 0.01 BTC at 20,000 (notional 30,000) are in tier 2
    # by size, whatever the notional; taker 0.05%:
    # MM = 30,000 * 2% = 600; LP = (B - Q*EP) / (Q*(mmr + f - 1)), Q = 1.5 BTC, B = 3,000
    tiers = {
        "BTC/USDT:USDT": [
            {
                "minNotional": 0,
                "maxNotional": 100,
                "maintenanceMarginRate": 0.01,
                "maxLeverage": 50,
            },
            {
                "minNotional": 100,
                "maxNotional": 1e6,
                "maintenanceMarginRate": 0.02,
                "maxLeverage": 20,
            },
        ]
    }
    markets = load_markets("okx", markets={"BTC/USDT:USDT": {"contractSize": 0.01}}, tiers=tiers)
    report = margin_report(
        _account(
            _pos(contracts=150, margin_mode="isolated", position_margin=3_000.0, leverage=10),
            exchange="okx",
        ),
        markets,
    )
    p = report.positions[0]
    assert p.maintenance_margin == pytest.approx(600.0)
    assert p.liquidation_price == pytest.approx((3_000 - 30_000) / (1.5 * (0.0205 - 1)), rel=1e-12)


# ---------------------------------------------------------------- ccxt position payloads


def _hyperliquid_eth_payload(mark: float) -> dict[str, Any]:
    # ccxt python/ccxt/hyperliquid.py, fetch_positions / parse_position docstring: a real
    # clearinghouseState isolated ETH position, 0.2259 @ 2,213.9, 20x, marginUsed 24.88097,
    # liquidationPx 2,125.00856238 (with 0 unrealized PnL). At another `mark` Hyperliquid's
    # marginUsed and ccxt's `collateral` move with the PnL: 24.88097 + 0.2259 * (mark - 2,213.9).
    upnl = 0.2259 * (mark - 2213.9)
    used = 24.88097 + upnl
    info = {
        "position": {
            "coin": "ETH",
            "entryPx": "2213.9",
            "leverage": {"rawUsd": "-475.23904", "type": "isolated", "value": "20"},
            "liquidationPx": "2125.00856238",
            "marginUsed": str(used),
            "maxLeverage": "50",
            "positionValue": str(0.2259 * mark),
            "szi": "0.2259",
            "unrealizedPnl": str(upnl),
        },
        "type": "oneWay",
    }
    return {
        "info": info,
        "id": None,
        "symbol": "ETH/USDC:USDC",
        "timestamp": None,
        "datetime": None,
        "isolated": True,
        "hedged": None,
        "side": "long",
        "contracts": 0.2259,
        "contractSize": 1,
        "entryPrice": 2213.9,
        "markPrice": mark,
        "notional": 0.2259 * mark,
        "leverage": 20,
        "positionMargin": 24.88097,
        "collateral": used,
        "initialMargin": 24.88097,
        "maintenanceMargin": None,
        "initialMarginPercentage": None,
        "maintenanceMarginPercentage": None,
        "unrealizedPnl": upnl,
        "liquidationPrice": 2125.00856238,
        "marginMode": "isolated",
        "marginRatio": None,
        "percentage": 0.0,
    }


@pytest.mark.parametrize("drop", [(), ("positionMargin",), ("positionMargin", "info")])
@pytest.mark.parametrize("mark", [2213.9, 2150.0])
def test_hyperliquid_ccxt_position_as_is(drop, mark):
    # isolated margin at entry is marginUsed - unrealizedPnl = 24.88097 whatever the mark;
    # max leverage 50 -> mmr 1%: LP = (24.88097 - 0.2259 * 2,213.9) / (0.2259 * (0.01 - 1))
    #                              = 475.23904 / 0.223641 = 2,125.00856 (the API's liquidationPx)
    markets = load_markets(
        "hyperliquid", markets={"ETH/USDC:USDC": {"limits": {"leverage": {"max": 50}}}}
    )
    position = {k: v for k, v in _hyperliquid_eth_payload(mark).items() if k not in drop}
    report = margin_report(
        {"exchange": "hyperliquid", "walletBalance": 100.0, "positions": [position]}, markets
    )
    assert report.positions[0].liquidation_price == pytest.approx(2125.00856238, rel=1e-9)


def test_binance_coin_m_ccxt_position_as_is():
    # ccxt python/ccxt/binance.py parse_position_risk docstring, a COIN-M isolated position
    # (dapi positionRisk): BTCUSD_PERP 2 contracts of 100 USD, entry 37,643.10000021, mark
    # 38,103.05510455, unRealizedProfit 0.00006413, isolatedMargin 0.00274471 (ccxt collateral)
    # = isolatedWallet 0.00268058 (ccxt positionMargin) + the PnL; liquidationPrice 25,119.9744576.
    # COIN-M formula, bracket 1 (mmr 0.4%): (Q*mmr + Q) / (WB + Q/EP) with Q = 200 USD
    info = {
        "symbol": "BTCUSD_PERP",
        "positionAmt": "2",
        "entryPrice": "37643.10000021",
        "markPrice": "38103.05510455",
        "unRealizedProfit": "0.00006413",
        "liquidationPrice": "25119.97445760",
        "leverage": "2",
        "maxQty": "1500",
        "marginType": "isolated",
        "isolatedMargin": "0.00274471",
        "isAutoAddMargin": "false",
        "positionSide": "BOTH",
        "notionalValue": "0.00524892",
        "isolatedWallet": "0.00268058",
    }
    ccxt_position = {
        "info": info,
        "id": None,
        "symbol": "BTC/USD:BTC",
        "contracts": 2.0,
        "contractSize": 100.0,
        "unrealizedPnl": 0.00006413,
        "leverage": 2.0,
        "liquidationPrice": 25119.9744576,
        "positionMargin": 0.00268058,
        "collateral": 0.00274471,
        "notional": 0.00524892,
        "markPrice": 38103.05510455,
        "entryPrice": 37643.10000021,
        "timestamp": None,
        "initialMargin": 0.00262446,
        "initialMarginPercentage": 0.5,
        "maintenanceMargin": 0.000021,
        "maintenanceMarginPercentage": 0.004,
        "marginRatio": 0.0077,
        "datetime": None,
        "marginMode": "isolated",
        "side": "long",
        "hedged": False,
        "percentage": 2.44,
        "stopLossPrice": None,
        "takeProfitPrice": None,
    }
    tiers = {
        "BTC/USD:BTC": [
            {
                "minNotional": 0,
                "maxNotional": 5,
                "maintenanceMarginRate": 0.004,
                "maxLeverage": 125,
            },
            {
                "minNotional": 5,
                "maxNotional": 1e4,
                "maintenanceMarginRate": 0.005,
                "maxLeverage": 100,
            },
        ]
    }
    markets = load_markets(
        "binancecoinm",
        markets={"BTC/USD:BTC": {"id": "BTCUSD_PERP", "inverse": True, "contractSize": 100}},
        tiers=tiers,
    )
    for drop in ((), ("positionMargin",), ("positionMargin", "collateral")):
        position = {k: v for k, v in ccxt_position.items() if k not in drop}
        report = margin_report(
            {"exchange": "binancecoinm", "walletBalance": 1.0, "positions": [position]}, markets
        )
        assert report.positions[0].liquidation_price == pytest.approx(25119.9744576, rel=1e-9)
    # collateral read as the margin at entry (PnL counted twice) would give another price
    wrong = {**ccxt_position, "positionMargin": 0.00274471}
    report = margin_report(
        {"exchange": "binancecoinm", "walletBalance": 1.0, "positions": [wrong]}, markets
    )
    assert report.positions[0].liquidation_price != pytest.approx(25119.9744576, rel=1e-6)


def test_binance_usdm_hedge_short_payload(binance):
    # a Binance /fapi/v2/positionRisk isolated short recorded in a public repository (DOGEUSDT,
    # hedge mode): positionAmt -32, entryPrice 0.16395, markPrice 0.16465933, unRealizedProfit
    # -0.02269856, isolatedMargin 0.86034145 = isolatedWallet 0.88304001 + PnL,
    # liquidationPrice 0.19059204. Bracket 1 of DOGEUSDT: mmr 0.5%, cum 0:
    # LP = (WB + Q*EP) / (Q*mmr + Q) = (0.88304001 + 5.2464) / (32 * 1.005) = 0.19059204
    ccxt_position = {
        "info": {"isolatedWallet": "0.88304001", "positionSide": "SHORT"},
        "symbol": "DOGE/USDT:USDT",
        "contracts": 32.0,
        "contractSize": 1.0,
        "side": "short",
        "entryPrice": 0.16395,
        "markPrice": 0.16465933,
        "unrealizedPnl": -0.02269856,
        "collateral": 0.86034145,
        "leverage": 6.0,
        "marginMode": "isolated",
        "hedged": True,
        "liquidationPrice": 0.19059204,
    }
    report = margin_report(
        {"exchange": "binance", "walletBalance": 10.0, "positions": [ccxt_position]}, binance
    )
    assert report.positions[0].liquidation_price == pytest.approx(0.19059204, rel=1e-8)
    without_info = {k: v for k, v in ccxt_position.items() if k != "info"}
    report = margin_report(
        {"exchange": "binance", "walletBalance": 10.0, "positions": [without_info]}, binance
    )
    assert report.positions[0].liquidation_price == pytest.approx(0.19059204, rel=1e-8)


def test_bybit_linear_payload_fee_to_close():
    # ccxt python/ccxt/bybit.py parse_position docstring, "linear swap": ETHUSDT Buy 0.10 at
    # 1,198.45, leverage 4.2, positionBalance 28.58931118, unrealisedPnl 0.083, liqPrice 919.10,
    # bustPrice 913.15 (tradeMode 1: isolated; the payload has no mark: 1,198.45 + 0.083 / 0.1).
    # Bybit's position margin = IM + fee to close at the bankruptcy price; with the 0.06% taker
    # rate of the time, IM = (28.58931118 - 0.0006 * 119.845) / (1 - 0.0006) = 28.534525 and
    # LP = 1,198.45 - (28.534525 - 119.845 * 0.5%) / 0.1 = 919.097, which the tick of 0.05
    # shows as 919.10
    markets = load_markets(
        "bybit",
        markets={"ETH/USDT:USDT": {"taker": 0.0006}},
        tiers=_tiers("ETH/USDT:USDT", mmr=0.005),
    )
    ccxt_position = {
        "info": {"symbol": "ETHUSDT", "positionIdx": 0, "positionBalance": "28.58931118"},
        "symbol": "ETH/USDT:USDT",
        "side": "long",
        "contracts": 0.1,
        "entryPrice": 1198.45,
        "markPrice": 1199.28,
        "notional": 119.845,
        "leverage": 4.2,
        "unrealizedPnl": 0.083,
        "collateral": 28.67231118,
        "positionMargin": 28.58931118,
        "liquidationPrice": 919.1,
        "marginMode": "isolated",
        "hedged": False,
    }
    report = margin_report(
        {"exchange": "bybit", "walletBalance": 100.0, "positions": [ccxt_position]}, markets
    )
    lp = report.positions[0].liquidation_price
    assert lp is not None
    assert abs(lp - 919.10) < 0.025


def test_unknown_position_key_is_refused_with_the_closest_name(binance):
    with pytest.raises(
        InvalidInput, match=r"unknown field 'levrage': did you mean 'leverage'\?"
    ) as info:
        margin_report(_account(_pos(levrage=10)), binance)
    assert info.value.field == "account.positions[0].levrage"
    # ccxt's own fields and info are accepted as they come
    margin_report(_account(_pos(info={"x": 1}, liquidationPrice=1.0, marginRatio=0.1)), binance)


def test_isolated_position_without_margin_is_invalid(binance):
    with pytest.raises(InvalidInput, match=r"position_margin .* or collateral"):
        margin_report(_account(_pos(margin_mode="isolated")), binance)


# ---------------------------------------------------------------- normalize prices by the venue


def _tier_rows(floors, caps, mmrs, levs, deduction=None):
    rows = []
    for i, (f, c, m, x) in enumerate(zip(floors, caps, mmrs, levs, strict=True)):
        row: dict[str, Any] = {
            "minNotional": f,
            "maxNotional": c,
            "maintenanceMarginRate": m,
            "maxLeverage": x,
        }
        if deduction is not None:
            row["info"] = {"deduction": deduction[i]}
        rows.append(row)
    return rows


_LOT = {"precision": {"amount": 0.001}, "limits": {"amount": {"min": 0.001}}}


def _venue(exchange: str) -> tuple[Any, str]:
    """Each venue's markets for one BTC perpetual, as a user's ccxt files would give them."""
    if exchange in ("binance", "hyperliquid"):
        markets = load_markets(exchange)
        return markets, "BTC/USDT:USDT" if exchange == "binance" else "BTC/USDC:USDC"
    symbol = "BTC/USDT:USDT"
    if exchange == "okx":
        # position tiers in contracts of 0.01 BTC: 0-2,000 at 0.4%, then 0.6%; taker 0.05%
        market = {**_LOT, "contractSize": 0.01, "precision": {"amount": 1}, "taker": 0.0005}
        market["limits"] = {"amount": {"min": 1}}
        tiers = _tier_rows([0, 2_000], [2_000, 1e6], [0.004, 0.006], [100, 50])
    elif exchange == "gate":
        # risk-limit tiers with Gate's deduction (continuous), taker 0.05%:
        # deduction_1 = 1M * (0.75% - 0.5%) = 2,500
        market = {**_LOT, "taker": 0.0005}
        tiers = _tier_rows([0, 1e6], [1e6, 1e9], [0.005, 0.0075], [100, 50], [0, 2_500])
    elif exchange == "bybit":
        # risk limits with Bybit's deduction (continuous), taker 0.055%:
        # deduction_1 = 2M * (1% - 0.5%) = 10,000
        market = {**_LOT, "taker": 0.00055}
        tiers = _tier_rows([0, 2e6], [2e6, 1e9], [0.005, 0.01], [100, 50], [0, 10_000])
    elif exchange == "kucoinfutures":
        # risk-limit levels: a whole-position rate with no deduction
        market = dict(_LOT)
        tiers = _tier_rows([0, 1e6], [1e6, 1e9], [0.004, 0.006], [125, 75])
    else:  # bitget: a whole-position rate with no deduction, the default taker rate
        market = dict(_LOT)
        tiers = _tier_rows([0, 150_000], [150_000, 1e9], [0.004, 0.005], [125, 100])
    return load_markets(exchange, markets={symbol: market}, tiers={symbol: tiers}), symbol


def _reported_margin(exchange: str, spec: Any, side: float, qty: float, price: float, b: float):
    """The position margin a venue reports for margin ``b`` behind a position entered at price.

    Bybit's also holds the fee to close at the bankruptcy price (BybitMarginModel's docstring):
    PM = B + f Q x_bust with x_bust = EP - s B / Q, that is B (1 - s f) + f Q EP.
    """
    if exchange != "bybit":
        return b
    f = spec.taker_fee
    return b * (1.0 - side * f) + f * qty * price


@pytest.mark.parametrize(
    "exchange", ["binance", "hyperliquid", "okx", "bitget", "gate", "bybit", "kucoinfutures"]
)
@given(
    equity=st.floats(50.0, 2e6),
    lead_size=st.floats(0.01, 40.0),
    side=st.sampled_from([1.0, -1.0]),
    price=st.floats(5_000.0, 120_000.0),
    scale=st.floats(0.1, 5.0),
)
def test_normalize_liquidation_is_the_venues(exchange, equity, lead_size, side, price, scale):
    # a follower opened by normalize, taken to the margin engine as the isolated position it
    # holds (entry at the event price, margin = the collateral posted): the same liquidation
    # price, by the venue's own rule (the taker fee to close on OKX, Bitget and Gate;
    # maintenance margin at the entry value on Bybit and KuCoin)
    from levalign.normalize import normalize

    markets, symbol = _venue(exchange)
    spec = markets[symbol]
    contracts = lead_size / spec.contract_size
    event = {
        "event_id": "e",
        "symbol": symbol,
        "price": price,
        "lead_equity": 100_000.0,
        "lead_position_before": 0.0,
        "lead_position_after": side * contracts,
    }
    follower = {
        "id": ["f"],
        "equity": [equity],
        "scale": [scale],
        "margin_mode": ["isolated"],
        "min_liq_distance": [0.0],
    }
    r = normalize(event, follower, markets)
    held = float(r["target_position"][0])
    if held == 0.0:
        return
    position = _pos(
        symbol,
        "long" if held > 0 else "short",
        abs(held),
        price,
        price,
        margin_mode="isolated",
        position_margin=_reported_margin(
            exchange,
            spec,
            math.copysign(1.0, held),
            abs(held) * spec.contract_size,
            price,
            float(r["collateral"][0]),
        ),
        leverage=float(r["leverage"][0]),
    )
    report = margin_report(_account(position, wallet=equity, exchange=exchange), markets)
    engine = report.positions[0].liquidation_price
    kernel = float(r["liquidation_price"][0])
    # known limit: a whole-position rate that jumps at a tier bound (Bitget's table here) is
    # handed to the kernel up to that bound; a short whose liquidation notional crosses it is
    # priced there at the lower tier's rate (liquidation_market's docstring)
    kept = liquidation_market(spec, price).tiers
    assume(engine is None or abs(held) * spec.contract_size * engine < kept.max_notional)
    if engine is None:
        assert math.isnan(kernel)
    else:
        assert kernel == pytest.approx(engine, rel=1e-9)


@pytest.mark.parametrize("margin_mode", ["isolated", "cross"])
def test_normalize_on_bybit_takes_maintenance_margin_at_the_entry_value(margin_mode):
    # A follower with 10,000 copies 3x a lead's 5 BTC on 100,000: 1.5 BTC long at 20,000,
    # notional 30,000 in the first risk limit (mmr 0.5%): MM(N_entry) = 150. Isolated, 5% away:
    # R = 30,000 * 0.05 + 150 = 1,650 posted, LP = 20,000 - (1,650 - 150) / 1.5 = 19,000
    # (Bybit's formula); the Binance convention (MM at 19,000) would give 18,994.97.
    # Cross on the whole 10,000: LP = 20,000 - (10,000 - 150) / 1.5 = 13,433.33.
    from levalign.normalize import normalize

    markets, symbol = _venue("bybit")
    event = {
        "event_id": "e",
        "symbol": symbol,
        "price": 20_000.0,
        "lead_equity": 100_000.0,
        "lead_position_before": 0.0,
        "lead_position_after": 5.0,
    }
    follower = {
        "id": ["f"],
        "equity": [10_000.0],
        "scale": [3.0],
        "margin_mode": [margin_mode],
        "min_liq_distance": [0.05],
    }
    r = normalize(event, follower, markets)
    assert r["target_position"][0] == pytest.approx(1.5)
    if margin_mode == "isolated":
        assert r["collateral"][0] == pytest.approx(1_650.0)
        assert r["liquidation_price"][0] == pytest.approx(19_000.0, rel=1e-12)
    else:
        assert r["liquidation_price"][0] == pytest.approx(20_000 - 9_850 / 1.5, rel=1e-12)


def test_normalize_refuses_an_inverse_market_and_never_swaps_it():
    from levalign.normalize import normalize

    event = {
        "event_id": "e",
        "symbol": "BTC/USD:BTC",
        "price": 20_000.0,
        "lead_equity": 10_000.0,
        "lead_position_before": 0.0,
        "lead_position_after": 10.0,
    }
    followers = {"id": ["f"], "equity": [1_000.0]}
    # Binance's USDⓈ-M preset has no BTC/USD:BTC: refused, not sized on BTC/USDT:USDT
    with pytest.raises(InvalidInput, match=r"unknown symbol 'BTC/USD:BTC' on binance"):
        normalize(event, followers, load_markets("binance"))
    coin_m = load_markets(
        "binancecoinm",
        markets={
            "BTC/USD:BTC": {
                "inverse": True,
                "contractSize": 100,
                "precision": {"amount": 1},
                "limits": {"amount": {"min": 1}},
            }
        },
        tiers=_tiers("BTC/USD:BTC"),
    )
    with pytest.raises(ConfigurationError, match=r"BTC/USD:BTC is an inverse .* linear") as info:
        normalize(event, followers, coin_m)
    assert info.value.value == "BTC/USD:BTC"


def test_okx_isolated_position_payload():
    # an OKX isolated position as ccxt's okx.parse_position returns it (fields per ccxt's code:
    # positionMargin = OKX's `margin`, collateral = margin + upl), built by hand:
    # BTC-USDT-SWAP pos 150 (ctVal 0.01 BTC), avgPx 20,000, markPx 19,800, margin 300,
    # upl = 1.5 * (19,800 - 20,000) = -30, lever 100; tier 1 (0-2,000 contracts) mmr 0.4%,
    # taker 0.05%: LP = (300 - 1.5 * 20,000) / (1.5 * (0.004 + 0.0005 - 1)) = 29,700 / 1.49325
    info = {
        "instId": "BTC-USDT-SWAP",
        "mgnMode": "isolated",
        "pos": "150",
        "posSide": "net",
        "avgPx": "20000",
        "markPx": "19800",
        "margin": "300",
        "upl": "-30",
        "lever": "100",
    }
    ccxt_position = {
        "info": info,
        "symbol": "BTC/USDT:USDT",
        "contracts": 150.0,
        "contractSize": 0.01,
        "side": "long",
        "hedged": False,
        "entryPrice": 20_000.0,
        "markPrice": 19_800.0,
        "unrealizedPnl": -30.0,
        "positionMargin": 300.0,
        "collateral": 270.0,
        "initialMargin": 300.0,
        "leverage": 100.0,
        "marginMode": "isolated",
    }
    tiers = _tier_rows([0, 2_000], [2_000, 1e6], [0.004, 0.006], [100, 50])
    markets = load_markets(
        "okx",
        markets={"BTC/USDT:USDT": {"contractSize": 0.01, "taker": 0.0005}},
        tiers={"BTC/USDT:USDT": tiers},
    )
    for drop in ((), ("positionMargin",), ("positionMargin", "collateral")):
        position = {k: v for k, v in ccxt_position.items() if k not in drop}
        report = margin_report(
            {"exchange": "okx", "walletBalance": 1_000.0, "positions": [position]}, markets
        )
        assert report.positions[0].liquidation_price == pytest.approx(29_700 / 1.49325, rel=1e-12)
