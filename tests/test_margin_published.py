"""Margin results checked against worked examples that exchanges (or their users) published.

Each test names its source. Where a source is a secondary copy or a user report, it says so.
"""

from __future__ import annotations

import pytest

from levalign.margin import (
    BitgetMarginModel,
    BybitMarginModel,
    GateMarginModel,
    KucoinMarginModel,
    Leg,
    OkxMarginModel,
    TieredMarginModel,
    margin_report,
)
from levalign.markets import MarketSpec, TierTable, load_markets, rebuild_cum

# Binance BTCUSDT brackets of 2021 (Binance announcement "Updates to Leverage and Margin Tiers",
# 2021-03-18): floor / mmr; cum follows from rebuild_cum and matches the FAQ's 50 and 1,300.
BTC_2021 = (
    [0, 50e3, 250e3, 1e6, 10e6, 20e6, 50e6, 100e6, 200e6, 300e6],
    [0.004, 0.005, 0.01, 0.025, 0.05, 0.1, 0.125, 0.15, 0.25, 0.5],
    [125, 100, 50, 20, 10, 5, 4, 3, 2, 1],
)
# Binance ETHUSDT brackets of the same period (floor / mmr); rebuilt cum gives the FAQ's
# 135,365 for the 2M-5M bracket: 2M*(10%-5%) + 35,365.
ETH_2021 = (
    [0, 10e3, 100e3, 500e3, 1e6, 2e6, 5e6, 10e6, 20e6],
    [0.005, 0.0065, 0.01, 0.02, 0.05, 0.1, 0.125, 0.15, 0.25],
    [100, 75, 50, 25, 10, 5, 4, 3, 2],
)


def _ccxt_tiers(floor, mmr, lev, top=1e12):
    caps = [*floor[1:], top]
    return [
        {"minNotional": f, "maxNotional": c, "maintenanceMarginRate": m, "maxLeverage": x}
        for f, c, m, x in zip(floor, caps, mmr, lev, strict=True)
    ]


def test_binance_maintenance_amount_faq():
    # Binance FAQ (USDⓈ-M liquidation price): "the Maintenance Amount on Level 3 =
    # 250,000 * (1% - 0.5%) + 50 USDT = 1,300 USDT"
    assert rebuild_cum(BTC_2021[0], BTC_2021[1])[2] == pytest.approx(1_300)
    assert rebuild_cum(ETH_2021[0], ETH_2021[1])[5] == pytest.approx(135_365)


def test_binance_cross_two_positions_faq_example():
    # Binance FAQ "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts", cross
    # one-way example (numbers via a scraped copy of the FAQ and freqtrade's test_binance.py
    # "From calc example"): WB 1,535,443.01; BTCUSDT long 109.488 @ 32,481.98, mark 31,967.27;
    # ETHUSDT long 3,683.979 @ 1,456.84, mark 1,335.18. Published: LP_ETH 1,153.26,
    # LP_BTC 26,316.89; MM_BTC 71,200.81144, MM_ETH 356,512.508.
    markets = load_markets(
        "bybit",
        tiers={"BTC/USDT:USDT": _ccxt_tiers(*BTC_2021), "ETH/USDT:USDT": _ccxt_tiers(*ETH_2021)},
    )
    markets = type(markets)("binance", dict(markets.items()))  # Binance convention
    account = {
        "exchange": "binance",
        "wallet_balance": 1_535_443.01,
        "positions": [
            {
                "symbol": "BTC/USDT:USDT",
                "side": "long",
                "contracts": 109.488,
                "entry_price": 32_481.98,
                "mark_price": 31_967.27,
            },
            {
                "symbol": "ETH/USDT:USDT",
                "side": "long",
                "contracts": 3_683.979,
                "entry_price": 1_456.84,
                "mark_price": 1_335.18,
            },
        ],
    }
    btc, eth = margin_report(account, markets).positions
    assert btc.maintenance_margin == pytest.approx(71_200.81144, abs=1e-4)
    assert eth.maintenance_margin == pytest.approx(356_512.508, abs=1e-3)
    assert eth.liquidation_price is not None
    assert btc.liquidation_price is not None
    assert round(eth.liquidation_price, 2) == 1_153.26
    assert round(btc.liquidation_price, 2) == 26_316.89


def _linear(
    mmr: float, symbol: str = "BTC/USDT:USDT", taker_fee: float | None = None
) -> MarketSpec:
    tiers = TierTable.from_rows([0.0], [1e12], [mmr], [125.0], symbol=symbol)
    return MarketSpec(
        symbol=symbol,
        id="X",
        base="BTC",
        quote="USDT",
        settle="USDT",
        tiers=tiers,
        taker_fee=taker_fee,
    )


def test_bybit_isolated_example():
    # Bybit Help Center "Liquidation Price (USDT Contract)", example 1: long 1 BTC at 20,000 USDT,
    # 50x, MMR 0.5%: IM 400, MM 100, LP = 20,000 - (400 - 100) = 19,700
    lp = BybitMarginModel().liquidation_price(
        _linear(0.005), [Leg(1.0, 1.0, 20_000.0)], 400.0, 20_000.0
    )
    assert lp == pytest.approx(19_700)
    # the Binance convention (MM at the liquidation price) differs on the same inputs:
    # (400 - 20,000) / (0.005 - 1) = 19,698.49
    binance = TieredMarginModel().liquidation_price(
        _linear(0.005), [Leg(1.0, 1.0, 20_000.0)], 400.0, 20_000.0
    )
    assert binance == pytest.approx(19_600 / 0.995)


@pytest.mark.parametrize(
    ("side", "entry", "leverage", "published"),
    [
        (1.0, 10_000.0, 50, 9_850.0),  # long 1 BTC @ 10,000, 50x: 10,000 * (1 - 2% + 0.5%)
        (-1.0, 8_000.0, 40, 8_160.0),  # short 1 BTC @ 8,000, 40x: 8,000 * (1 + 2.5% - 0.5%)
    ],
)
def test_bybit_older_article_examples(side, entry, leverage, published):
    # Bybit's older "Liquidation Price (USDT Contract)" article (via a translated copy), MMR 0.5%
    lp = BybitMarginModel().liquidation_price(
        _linear(0.005), [Leg(side, 1.0, entry)], entry / leverage, entry
    )
    assert lp == pytest.approx(published)


def test_kucoin_short_example():
    # KuCoin "How to Calculate Futures Liquidation Price": short, 100x, entry 28,000, MMR 0.4%:
    # 28,000 * [1 + (1% - 0.4%)] = 28,168
    lp = KucoinMarginModel().liquidation_price(
        _linear(0.004), [Leg(-1.0, 1.0, 28_000.0)], 280.0, 28_000.0
    )
    assert lp == pytest.approx(28_168)


def test_kucoin_long_by_hand():
    # KuCoin's long formula, EP * (1 - IMR + MMR): 1 BTC at 28,000, 20x (IMR 5%), MMR 0.4%:
    # 28,000 * (1 - 0.05 + 0.004) = 26,712
    lp = KucoinMarginModel().liquidation_price(
        _linear(0.004), [Leg(1.0, 1.0, 28_000.0)], 1_400.0, 28_000.0
    )
    assert lp == pytest.approx(26_712)


# freqtrade tests/exchange/test_exchange.py::test_get_liquidation_price (commit c9ae5e1e, 2024-10),
# isolated, mmr 1%, taker fee 0.06%, margin = amount * open_rate / leverage:
# (is_short, leverage, open_rate, amount, published liquidation price)
FREQTRADE_GATE_OKX = [
    (True, 5, 10.0, 1.0, 11.87413417771621),  # (10 + 2 / 1) / (1 + 0.0106)
    (True, 5, 10.0, 2.0, 11.87413417771621),
    (True, 3, 10.0, 1.0, 13.193482419684678),
    (True, 5, 8.0, 1.0, 9.499307342172967),
    (False, 5, 10.0, 1.0, 8.085708510208207),  # (10 - 2 / 1) / (1 - 0.0106)
    (False, 3, 10.0, 1.0, 6.738090425173506),
]


@pytest.mark.parametrize("model", [OkxMarginModel(), GateMarginModel(), BitgetMarginModel()])
@pytest.mark.parametrize(("short", "leverage", "entry", "amount", "published"), FREQTRADE_GATE_OKX)
def test_fee_venues_against_freqtrade(model, short, leverage, entry, amount, published):
    # freqtrade publishes these for gate and okx; Bitget's formula (Bitget Help Center,
    # "Liquidation price calculation", the same one freqtrade's bitget.py implements):
    # (margin - Q*EP*s) / (Q*(MMR + taker - s)) is the same expression, so the same numbers
    side = -1.0 if short else 1.0
    lp = model.liquidation_price(
        _linear(0.01, taker_fee=0.0006),
        [Leg(side, amount, entry)],
        amount * entry / leverage,
        entry,
    )
    assert lp == pytest.approx(published, rel=1e-12)


def test_fee_venue_default_taker_rate():
    # no taker fee in the market: OKX's base rate 0.05%. Long 1 @ 10, margin 2, mmr 1%:
    # (2 - 10) / (0.01 + 0.0005 - 1) = 8 / 0.9895
    lp = OkxMarginModel().liquidation_price(_linear(0.01), [Leg(1.0, 1.0, 10.0)], 2.0, 10.0)
    assert lp == pytest.approx(8 / 0.9895, rel=1e-12)


@pytest.mark.parametrize(
    ("short", "leverage", "published"),
    [
        (False, 1.0, 0.1),
        (False, 3.0, 6.7666666),
        (False, 5.0, 8.1),
        (False, 10.0, 9.1),
        (True, 1.0, 19.9),
        (True, 3.0, 13.233333),
        (True, 5.0, 11.9),
        (True, 10.0, 10.9),
    ],
)
def test_bybit_against_freqtrade(short, leverage, published):
    # freqtrade test_get_liquidation_price, bybit rows: 1 contract at 10, mmr 1%,
    # EP * (1 -+ 1/leverage +- mmr); the model: EP - s * (B - MM(Q*EP)) / Q
    side = -1.0 if short else 1.0
    lp = BybitMarginModel().liquidation_price(
        _linear(0.01), [Leg(side, 1.0, 10.0)], 10.0 / leverage, 10.0
    )
    assert lp == pytest.approx(published, rel=1e-7)


def _inverse(mmr: float) -> MarketSpec:
    tiers = TierTable.from_rows([0.0], [1e9], [mmr], [100.0], [0.0], symbol="BTC/USD:BTC")
    return _coin_m(tiers, contract_size=1.0)


def _coin_m(tiers: TierTable, contract_size: float = 100.0) -> MarketSpec:
    return MarketSpec(
        symbol="BTC/USD:BTC",
        id="BTCUSD_PERP",
        base="BTC",
        quote="USD",
        settle="BTC",
        tiers=tiers,
        linear=False,
        contract_size=contract_size,
    )


@pytest.mark.parametrize("model", [BybitMarginModel(), KucoinMarginModel()])
def test_inverse_maintenance_margin_at_entry_value(model):
    # Bybit "Liquidation Price (Inverse Contract)", isolated long, derived by hand from the
    # formula: 10,000 contracts of 1 USD at 8,000, 50x, mmr 0.5%.
    # IM = 10,000 / 8,000 / 50 = 0.025 BTC; MM at the entry value = 1.25 BTC * 0.5% = 0.00625
    # 1/LP = 1/8,000 + (0.025 - 0.00625) / 10,000 = 0.000126875 -> LP = 7,881.77
    lp = model.liquidation_price(_inverse(0.005), [Leg(1.0, 10_000.0, 8_000.0)], 0.025, 8_000.0)
    assert lp == pytest.approx(1 / 0.000126875, rel=1e-12)
    # the Binance convention (MM at the liquidation price) gives 8,000 * 1.005 / 1.02 = 7,882.35
    binance = TieredMarginModel().liquidation_price(
        _inverse(0.005), [Leg(1.0, 10_000.0, 8_000.0)], 0.025, 8_000.0
    )
    assert binance == pytest.approx(8_000 * 1.005 / 1.02, rel=1e-12)
    # short: 1/LP = 1/8,000 - 0.000001875 = 0.000123125 -> LP = 8,121.83
    short = model.liquidation_price(_inverse(0.005), [Leg(-1.0, 10_000.0, 8_000.0)], 0.025, 8_000.0)
    assert short == pytest.approx(1 / 0.000123125, rel=1e-12)


# Hyperliquid liquidation prices as returned by its API (recorded through ccxt in freqtrade's
# tests/exchange/test_hyperliquid.py, 2024): isolated positions, max leverage 50 (BTC, ETH) or 20.
HYPERLIQUID_API = [
    ("ETH", 1.0, 2459.5, 0.0199, 24.454895, 50, 1243.0411908),
    ("BTC", 1.0, 66930.0, 0.0015, 20.043862, 50, 54108.51043771),
    ("ETH", -1.0, 2552.0, 0.0327, 20.833393, 50, 3157.53150453),
    ("SOL", -1.0, 155.89, 0.32, 24.924941, 20, 228.07847866),
    ("DOGE", 1.0, 0.11586, 437.0, 25.29769, 20, 0.05945697),
]


@pytest.mark.parametrize(
    ("coin", "side", "entry", "size", "margin", "max_lev", "api_liq"), HYPERLIQUID_API
)
def test_hyperliquid_api_liquidation_prices(coin, side, entry, size, margin, max_lev, api_liq):
    symbol = f"{coin}/USDC:USDC"
    markets = load_markets(
        "hyperliquid", markets={symbol: {"limits": {"leverage": {"max": max_lev}}}}
    )
    account = {
        "exchange": "hyperliquid",
        "wallet_balance": 1_000.0,
        "positions": [
            {
                "symbol": symbol,
                "side": "long" if side > 0 else "short",
                "contracts": size,
                "entry_price": entry,
                "mark_price": entry,
                "margin_mode": "isolated",
                "collateral": margin,
            }
        ],
    }
    assert margin_report(account, markets).positions[0].liquidation_price == pytest.approx(
        api_liq, rel=1e-6
    )


def test_binance_coin_m_maintenance_margin_faq():
    # Binance FAQ (COIN-M): 100 contracts of 100 USD at mark 25,000: notional 0.4 BTC,
    # MM = 0.4 * 0.4% - 0 = 0.0016 BTC
    tiers = TierTable.from_rows(
        [0.0, 5.0], [5.0, 1e6], [0.004, 0.005], [125.0, 100.0], symbol="BTC/USD:BTC"
    )
    spec = _coin_m(tiers)
    assert TieredMarginModel().maintenance_margin(spec, 100, 25_000) == pytest.approx(0.0016)


def test_binance_coin_m_user_reported_calculator_case():
    # Binance developer forum (dev.binance.vision, topic 6292, user report, not official):
    # cross WB 101 BTC, long 100,000 BTCUSD contracts (100 USD) at 45,000, bracket mmr 12.5%.
    # Binance's calculator showed 33,599.40 with maintenance amount 11.605 BTC; the user's own
    # code, with the older 11.81, gave 33,578.859744834.
    def lp(cum: float) -> float | None:
        # only the bracket holding the notional at LP (~298 BTC) matters; a lower one fills [0, 250)
        tiers = TierTable.from_rows(
            [0.0, 250.0], [250.0, 1e6], [0.1, 0.125], [10.0, 5.0], [0.0, cum], symbol="X"
        )
        return TieredMarginModel().liquidation_price(
            _coin_m(tiers), [Leg(1.0, 100_000.0, 45_000.0)], 101.0, 45_000.0
        )

    assert lp(11.81) == pytest.approx(33_578.859744834, rel=1e-11)
    assert lp(11.605) == pytest.approx(33_599.40, abs=0.05)  # calculator display, 2 dp
