from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from levalign.errors import ConfigurationError, InvalidInput
from levalign.markets import TierTable, load_markets, rebuild_cum


def test_rebuild_cum_matches_binance_published_cum_for_every_market(binance):
    # Binance publishes `cum` in every bracket; rebuilding it from floors and rates with
    # cum_n = floor_n (mmr_n - mmr_{n-1}) + cum_{n-1} must give the same numbers.
    checked = 0
    for symbol in binance:
        t = binance[symbol].tiers
        rebuilt = rebuild_cum(t.floor, t.mmr)
        np.testing.assert_allclose(rebuilt, t.cum, rtol=1e-9, atol=1e-6, err_msg=symbol)
        checked += 1
    assert checked == 349


def test_rebuild_cum_by_hand():
    # floors 0, 50k, 600k; mmr 0.4%, 0.5%, 0.65%:
    # cum_1 = 50,000 * 0.001 = 50; cum_2 = 600,000 * 0.0015 + 50 = 950
    # (Binance BTCUSDT brackets 1-3)
    assert rebuild_cum([0, 50_000, 600_000], [0.004, 0.005, 0.0065]) == pytest.approx([0, 50, 950])


def test_btc_tiers_from_preset(binance):
    t = binance["BTC/USDT:USDT"].tiers
    assert len(t) == 12
    assert t.index(49_999.99) == 0
    assert t.index(50_000) == 1  # bounds are [floor, cap)
    # MM at 100k notional: tier 2, 100,000 * 0.005 - 50 = 450
    assert t.maintenance_margin(100_000) == pytest.approx(450.0)
    assert t.max_leverage_at(100_000) == 100


def test_lookup_by_id_prefers_perpetual(binance):
    assert binance["BTCUSDT"].symbol == "BTC/USDT:USDT"


def test_symbol_mapping_across_venues(binance):
    # a Hyperliquid lead's BTC/USDC:USDC is copied to Binance's USDT perpetual ...
    assert binance.resolve("BTC/USDC:USDC", from_venue="hyperliquid") == "BTC/USDT:USDT"
    # ... unless the user maps it explicitly
    mapped = binance.with_symbol_map({"BTC/USDC:USDC": "BTC/USDC:USDC"})
    assert mapped.resolve("BTC/USDC:USDC", from_venue="hyperliquid") == "BTC/USDC:USDC"


def test_unknown_symbol_names_it_and_suggests(binance):
    with pytest.raises(
        InvalidInput, match=r"unknown symbol 'BTCX/USDT:USDT'.*did you mean"
    ) as info:
        binance.resolve("BTCX/USDT:USDT")
    assert info.value.field == "symbol"


def test_unknown_exchange():
    with pytest.raises(ConfigurationError, match=r"unknown exchange 'kraken'; known: .*binance"):
        load_markets("kraken")


def test_unknown_preset():
    with pytest.raises(ConfigurationError, match="unknown markets preset 'bogus'"):
        load_markets("binance", markets="bogus")


def test_user_markets_win_over_preset(tmp_path: Path):
    user = {"BTC/USDT:USDT": {"precision": {"amount": 0.01}, "limits": {"cost": {"min": 5}}}}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(user))
    spec = load_markets("binance", markets=path)["BTC/USDT:USDT"]
    assert spec.amount_step == 0.01
    assert spec.min_cost == 5
    assert (
        spec.min_amount == load_markets("binance")["BTC/USDT:USDT"].min_amount
    )  # unstated: preset


def test_hyperliquid_leverage_max_sets_first_tier():
    # ccxt reports Hyperliquid's max leverage in limits.leverage.max; it replaces tier 1's
    m = load_markets(
        "hyperliquid", markets={"BTC/USDC:USDC": {"limits": {"leverage": {"max": 25}}}}
    )
    t = m["BTC/USDC:USDC"].tiers
    assert t.max_leverage[0] == 25
    assert t.mmr[0] == pytest.approx(1 / 50)


def test_hyperliquid_tiers_per_design(hyperliquid):
    # BTC: 40x to 150M then 20x -> mmr 1/80 then 1/40; deduction_1 = 150M * (1/40 - 1/80) = 1.875M
    t = hyperliquid["BTC/USDC:USDC"].tiers
    assert list(t.max_leverage) == [40, 20]
    assert t.mmr[0] == pytest.approx(0.0125)
    assert t.cum[1] == pytest.approx(1_875_000)
    assert math.isinf(t.cap[-1])


def test_malformed_markets_json(tmp_path: Path):
    path = tmp_path / "bad.json"
    path.write_text('{"BTC/USDT:USDT": {')
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        load_markets("binance", markets=path)


def test_missing_markets_file(tmp_path: Path):
    with pytest.raises(ConfigurationError, match="cannot read markets file"):
        load_markets("binance", markets=tmp_path / "nope.json")


def test_market_without_tiers_on_non_preset_exchange():
    with pytest.raises(ConfigurationError, match="has no leverage tiers"):
        load_markets("bybit", markets={"BTC/USDT:USDT": {"precision": {"amount": 0.001}}})


def _tier(lo, hi, mmr, lev):
    return {"minNotional": lo, "maxNotional": hi, "maintenanceMarginRate": mmr, "maxLeverage": lev}


def test_tier_gap_is_rejected():
    tiers = {"X/USDT:USDT": [_tier(0, 100, 0.01, 50), _tier(200, 300, 0.02, 20)]}
    with pytest.raises(
        ConfigurationError, match=r"leave a gap: tier 1 ends at 100\.0 but tier 2 starts at 200\.0"
    ):
        load_markets("bybit", tiers=tiers)


def test_tier_bounds_must_increase():
    tiers = {"X/USDT:USDT": [_tier(0, 100, 0.01, 50), _tier(100, 100, 0.02, 20)]}
    with pytest.raises(ConfigurationError, match="must exceed minNotional"):
        load_markets("bybit", tiers=tiers)


def test_tier_rate_out_of_range():
    with pytest.raises(
        ConfigurationError, match=r"maintenance margin rate 1.5 must be in \[0, 1\)"
    ):
        TierTable.from_rows([0.0], [100.0], [1.5], [10.0], symbol="X")


def test_tier_with_nan_bound():
    with pytest.raises(ConfigurationError, match="non-numeric or NaN"):
        TierTable.from_rows([0.0], [math.nan], [0.01], [10.0], symbol="X")


def test_tiers_only_market_gets_rebuilt_cum_and_default_id():
    tiers = {"X/USDT:USDT": [_tier(0, 100, 0.01, 50), _tier(100, 1000, 0.02, 20)]}
    m = load_markets("bybit", tiers=tiers)
    spec = m["X/USDT:USDT"]
    assert spec.id == "XUSDT"
    assert spec.tiers.cum[1] == pytest.approx(1.0)  # 100 * (0.02 - 0.01)
    assert m["XUSDT"] is spec


def test_hyperliquid_price_rounding(hyperliquid):
    spec = hyperliquid["BTC/USDC:USDC"]
    # 5 significant figures: 67,123.45 -> 67,123
    assert spec.round_price(67_123.45) == 67_123


def test_amount_decimals_follow_the_step(binance, hyperliquid):
    assert binance["BTC/USDT:USDT"].amount_decimals == 3  # step 0.001
    assert binance["1000PEPE/USDT:USDT"].amount_decimals == 0  # step 1
    assert hyperliquid["BTC/USDC:USDC"].amount_decimals == 5  # szDecimals 5


def test_a_preset_name_is_accepted_where_markets_are_expected(binance):
    from levalign.markets import as_markets

    assert as_markets("binance").keys() == binance.keys()
    assert as_markets(binance) is binance
    with pytest.raises(InvalidInput, match=r"markets must be levalign\.load_markets"):
        as_markets(42)  # type: ignore[arg-type]


def test_coin_margined_symbol_is_never_swapped_for_the_usdt_contract(binance):
    # Binance's preset holds USDⓈ-M markets only: BTC/USD:BTC (COIN-M) is not BTC/USDT:USDT
    with pytest.raises(
        InvalidInput, match=r"unknown symbol 'BTC/USD:BTC' on binance; did you mean one of: "
    ) as info:
        binance.resolve("BTC/USD:BTC")
    assert "BTC/USDT:USDT" in str(info.value)
    assert info.value.field == "symbol"


def test_exact_symbol_and_exchange_id_resolve(binance):
    assert binance.resolve("BTC/USDT:USDT") == "BTC/USDT:USDT"
    assert binance.resolve("BTCUSDT") == "BTC/USDT:USDT"
    assert binance.resolve("BTC/USDC:USDC") == "BTC/USDC:USDC"  # same venue: no remapping


def test_foreign_coin_margined_lead_needs_a_symbol_map(binance):
    with pytest.raises(InvalidInput, match=r"coin-margined.*symbol_map"):
        binance.resolve("BTC/USD:BTC", from_venue="bybit")
    mapped = binance.with_symbol_map({"BTC/USD:BTC": "BTC/USDT:USDT"})
    assert mapped.resolve("BTC/USD:BTC", from_venue="bybit") == "BTC/USDT:USDT"


def test_symbol_map_to_an_unknown_market_names_both():
    m = load_markets("binance", symbol_map={"X/USDC:USDC": "NOPE/USDT:USDT"})
    with pytest.raises(InvalidInput, match=r"'NOPE/USDT:USDT' \(symbol_map of 'X/USDC:USDC'\)"):
        m.resolve("X/USDC:USDC", from_venue="hyperliquid")


@pytest.mark.parametrize(
    ("info", "cum"),
    [
        ({"cum": "50"}, 50.0),  # Binance
        ({"mmDeduction": "50"}, 50.0),  # Bybit
        ({"deduction": "50"}, 50.0),  # Gate
    ],
)
def test_stated_maintenance_amounts_are_read(info, cum):
    tiers = {
        "X/USDT:USDT": [
            _tier(0, 50_000, 0.004, 125),
            {**_tier(50_000, 1e6, 0.005, 100), "info": info},
        ]
    }
    assert load_markets("bybit", tiers=tiers)["X/USDT:USDT"].tiers.cum[1] == cum


@pytest.mark.parametrize(("exchange", "cum"), [("okx", 0.0), ("gate", 0.0), ("bybit", 50.0)])
def test_unstated_maintenance_amounts_per_venue(exchange, cum):
    # whole-position rate venues (OKX, Bitget, Gate, KuCoin) have no maintenance amount; Bybit's
    # deduction is rebuilt like Binance's cum: 50,000 * (0.5% - 0.4%) = 50
    tiers = {"X/USDT:USDT": [_tier(0, 50_000, 0.004, 125), _tier(50_000, 1e6, 0.005, 100)]}
    assert load_markets(exchange, tiers=tiers)["X/USDT:USDT"].tiers.cum[1] == pytest.approx(cum)


def test_taker_fee_is_read_from_ccxt_markets():
    tiers = {"X/USDT:USDT": [_tier(0, 1e6, 0.004, 125)]}
    m = load_markets("okx", markets={"X/USDT:USDT": {"taker": 0.0005}}, tiers=tiers)
    assert m["X/USDT:USDT"].taker_fee == 0.0005
