from __future__ import annotations

import dataclasses
import math
from decimal import Decimal
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from levalign import _normalize_kernel as nk
from levalign.errors import ConfigurationError, InvalidInput
from levalign.margin import liquidation_market
from levalign.markets import Markets, MarketSpec, TierTable, load_markets
from levalign.normalize import (
    DERISK_ACTIONS,
    MARGIN_MODES,
    MODES,
    POLICIES,
    RESULT_COLUMNS,
    Cohort,
    Reason,
    allocate_result,
    derisk,
    event_curve,
    kernel_args,
    normalize,
    prepare_event,
    run_kernel,
)
from levalign.risk.curve import LiquidationCurve
from levalign.risk.first_passage import liquidation_probability
from levalign.samples import sample_cohort
from levalign.schemas import LeadEvent
from levalign.testing import reference_normalize_one

SYMBOL = "BTC/USDT:USDT"
# Real Binance BTC brackets with explicit lot rules, so hand derivations below do not depend on
# the preset's lot data: step 0.001 BTC, minimum 0.001 BTC, minimum order value 100 USDT.
SPEC: MarketSpec = dataclasses.replace(
    load_markets("binance")[SYMBOL], amount_step=0.001, min_amount=0.001, min_cost=100.0
)
STEP, MIN_COST = 0.001, 100.0
MARKETS = Markets("binance", {SYMBOL: SPEC})
P = 20_000.0
# Lead: 10,000 USDT cross, buys 5 BTC at 20,000 = 10x. Its notional 100,000 is in bracket 2
# (mmr 0.5%, cum 50): LP = (10,000 + 50 - 100,000) / (5*0.005 - 5) = 89,950 / 4.975
LEAD_LP = 89_950 / 4.975
LEAD_DIST = 1 - LEAD_LP / P  # 9.598%


def event(before=0.0, after=5.0, **kw):
    return {
        "event_id": "e1",
        "symbol": SYMBOL,
        "price": P,
        "lead_equity": 10_000.0,
        "lead_position_before": before,
        "lead_position_after": after,
        **kw,
    }


def run(rows, ev=None):
    res = normalize(ev or event(), rows, MARKETS)
    return res.orders()


def one(ev=None, **row):
    return run([{"id": 1, "equity": 1_000.0, **row}], ev)[0]


def mm(notional):
    return SPEC.tiers.maintenance_margin(notional)


# ---------------------------------------------------------------- sizing modes, by hand


def test_proportional_cross_keeps_lead_leverage():
    # dq = scale * dq_L * E_F / E_L = 5 * 1,000 / 10,000 = 0.5 BTC -> 10x like the lead
    o = one(margin_mode="cross")
    assert (o["side"], o["amount"], o["reasons"]) == ("buy", 0.5, [])
    assert o["effective_leverage"] == pytest.approx(10.0)
    # cross LP with balance 1,000 at 20,000:
    # (1,000 - 0.5*20,000) / (0.5*0.004 - 0.5) = 9,000 / 0.498
    assert o["liquidation_price"] == pytest.approx(9_000 / 0.498)
    assert o["leverage"] == 125  # cross: the bracket maximum; risk is set by size, not the setting


def test_proportional_isolated_posts_margin_to_match_lead_distance():
    # default buffer = lead's distance d. Margin needed: R = Q p d + MM(Q p (1-d)), Q = 0.5
    o = one()
    need = 0.5 * P * LEAD_DIST + mm(0.5 * P * (1 - LEAD_DIST))
    # posted rounded down to the settle currency's 1e-8
    assert o["collateral"] == math.floor(need * 1e8) / 1e8
    assert o["liquidation_distance"] == pytest.approx(LEAD_DIST, rel=1e-9)
    assert o["leverage"] == math.ceil(10_000 / need)  # 11: the smallest setting whose IM fits


def test_account_leverage_cap():
    # max_leverage 3 on (notional + other) / equity: Q <= (3 * 1,000 - 0) / 20,000 = 0.15
    o = one(max_leverage=3)
    assert o["amount"] == 0.15
    assert o["reasons"] == ["account_leverage"]


def test_account_leverage_counts_other_positions():
    # (Q * 20,000 + 1,000) / 1,000 <= 3  ->  Q <= 0.1
    assert one(max_leverage=3, other_notional=1_000)["amount"] == pytest.approx(0.1)


def test_position_leverage_cap():
    # max_position_leverage 2: Q <= 2 * 1,000 / 20,000 = 0.1
    o = one(max_position_leverage=2)
    assert o["amount"] == 0.1
    assert o["reasons"] == ["position_leverage"]


def test_liquidation_buffer_solved_exactly():
    # isolated, 20% buffer, all 1,000 available: R(Q) = Q*20,000*0.2 + Q*16,000*0.004 = 4,064 Q
    # 4,064 Q <= 1,000 -> Q = 0.24606 -> 0.246 whole lots; margin R(0.246) = 999.744
    o = one(min_liq_distance=0.2)
    assert o["amount"] == 0.246
    assert o["reasons"] == ["liq_buffer", "lot_rounding"]
    assert o["collateral"] == pytest.approx(999.744)
    assert o["leverage"] == 5  # ceil(4,920 / 999.744)
    # LP = (999.744 - 4,920) / (0.246*0.004 - 0.246) = 16,000: exactly 20% below
    assert o["liquidation_price"] == pytest.approx(16_000.0)


def test_available_margin_limits_initial_margin():
    # equity 100,000 but 500 available, no buffer: raw 50 BTC.
    # IM <= 500: in bracket 2 (max 100x) the notional can reach 500 * 100 = 50,000 -> 2.5 BTC
    o = one(equity=100_000, available_balance=500, min_liq_distance=0.0)
    assert o["raw_amount"] == pytest.approx(50.0)
    assert o["amount"] == 2.5
    assert "available_margin" in o["reasons"]
    assert o["collateral"] == pytest.approx(500.0)
    assert o["leverage"] == 100


def test_tier_table_bounds_the_position():
    # the last BTC bracket ends at 1.8e9 notional: 90,000 BTC at 20,000
    o = one(equity=1e12, min_liq_distance=0.0, margin_mode="cross")
    assert o["amount"] == pytest.approx(1.8e9 / P)
    assert "tier_limit" in o["reasons"]


def test_max_notional():
    o = one(max_notional=4_000)
    assert o["amount"] == 0.2
    assert o["reasons"] == ["max_notional"]


def test_fixed_notional_open_then_increase():
    # open: 2,000 / 20,000 = 0.1 BTC
    assert one(mode="fixed_notional", fixed_notional=2_000)["amount"] == 0.1
    # the lead grows 5 -> 7.5 (+50%): the follower's 0.1 grows by 0.05
    o = one(
        event(before=5, after=7.5),
        mode="fixed_notional",
        fixed_notional=2_000,
        position=0.1,
        entry_price=P,
    )
    assert o["amount"] == 0.05


def test_target_leverage_split_over_symbols():
    # lead: 100,000 in BTC of 200,000 total -> lambda_L = 20, BTC share 1/2.
    # follower: min(1 * 20, max_leverage 10) * 1,000 * 1/2 = 5,000 notional = 0.25 BTC
    o = one(event(lead_total_notional=200_000), mode="target_leverage", max_leverage=10)
    assert o["amount"] == 0.25


def test_risk_constant_with_lead_stop():
    # loss at the stop = 2% of 1,000: 20 / |20,000 - 19,000| = 0.02 BTC
    o = one(
        event(lead_stop_price=19_000), mode="risk_constant", risk_fraction=0.02, margin_mode="cross"
    )
    assert o["amount"] == 0.02


def test_risk_constant_with_sigma_stop():
    # no lead stop: stop 2 sigma * sqrt(24/8760) away; sigma 0.8 -> distance 20,000 * 1.6 * 0.05234
    dist = P * 2 * 0.8 * math.sqrt(24 / 8760)
    o = one(event(sigma=0.8), mode="risk_constant", risk_fraction=0.02, margin_mode="cross")
    assert o["raw_amount"] == pytest.approx(20 / dist)


def test_vol_target():
    # notional = vol_target / sigma * E = 0.5 / 0.6 * 1,000 = 833.33 -> 0.041666 BTC -> 0.041
    o = one(mode="vol_target", vol_target=0.5, sigma=0.6, margin_mode="cross")
    assert o["amount"] == 0.041
    assert o["reasons"] == ["lot_rounding"]


def test_missing_mode_parameter_is_a_reason_not_an_error():
    o = one(mode="fixed_notional")
    assert o["amount"] == 0
    assert o["reasons"] == ["missing_parameter"]


def test_a_leverage_setting_sets_the_isolated_margin():
    # Naive copy at the lead's 20x: proportional 5 * 1,000 / 10,000 = 0.5 BTC = 10,000 notional,
    # no buffer; isolated margin = 10,000 / 20 = 500 (tier max is 125x, so 20x is the cap)
    o = one(min_liq_distance=0.0, leverage_setting=20.0, available_balance=1_000.0)
    assert o["amount"] == pytest.approx(0.5)
    assert o["leverage"] == 20
    assert o["collateral"] == pytest.approx(500.0)
    # the margin then covers a 5% fall less maintenance margin: LP = 20,000 * (1 - 1/20) / (1 -
    # mmr 0.4%) -> 19,076.3, 4.6% away
    assert o["liquidation_price"] == pytest.approx(
        (0.5 * P - 500.0) / (0.5 * (1 - 0.004)), rel=1e-9
    )


def test_a_leverage_setting_limits_what_available_margin_buys():
    # 3x setting and 100 USDT free: initial margin N / 3 <= 100 -> N <= 300 -> 0.015 BTC
    o = one(min_liq_distance=0.0, leverage_setting=3.0, available_balance=100.0)
    assert o["amount"] == pytest.approx(0.015)
    assert "available_margin" in o["reasons"]
    assert o["leverage"] == 3


def test_a_non_positive_leverage_setting_is_an_invalid_row():
    assert one(leverage_setting=0.0)["reasons"] == ["invalid_row"]


def test_risk_limits_need_a_volatility_model():
    # no sigma on the event and no curve given: nothing to price P(liquidation) with
    assert one(max_liq_probability=0.01)["reasons"] == ["risk_model_required"]
    # optimal needs sigma and an expected return
    assert one(mode="optimal")["reasons"] == ["missing_parameter"]
    assert one(event(sigma=0.5), mode="optimal")["reasons"] == ["missing_parameter"]


def test_optimal_is_the_kelly_leverage():
    # Kelly leverage = mu / sigma^2 = 0.25 / 0.5^2 = 1.0 -> notional 1,000 on 1,000 equity
    # -> 1,000 / 20,000 = 0.05 BTC, cross (the 1x position is far outside the lead's 9.6% buffer)
    o = one(event(sigma=0.5, expected_return=0.25), mode="optimal", margin_mode="cross")
    assert o["amount"] == pytest.approx(0.05)
    assert o["side"] == "buy"
    assert o["reasons"] == []
    # the follower's own view wins over the event's: mu 0.5 -> 2x -> 0.1 BTC
    o = one(event(sigma=0.5, expected_return=0.25), mode="optimal", expected_return=0.5)
    assert o["amount"] == pytest.approx(0.1)


def test_optimal_follows_the_drift_not_the_lead():
    # a short lead with a negative drift: Kelly leverage -(-0.25)/0.25 = 1 in the lead's (short)
    # direction; a positive drift against a short lead gives a negative Kelly size: no order
    o = one(event(after=-5, sigma=0.5, expected_return=-0.25), mode="optimal")
    assert (o["side"], o["amount"]) == ("sell", pytest.approx(0.05))
    o = one(event(after=-5, sigma=0.5, expected_return=0.25), mode="optimal")
    assert o["amount"] == 0
    assert o["reasons"] == ["at_target"]


@pytest.mark.parametrize("after", [5.0, -5.0])
def test_max_liq_probability_sets_the_buffer(after):
    # A 10x-scaled proportional copy (100x) must keep P(touch within 24 h) <= 1% under GBM with
    # sigma 60%: the curve's required distance d is about 8% (2 N(-z) = 1% at z = 2.576,
    # y = z sigma sqrt(T) = 2.576 * 0.6 * sqrt(24 / 8760) = 0.081, rounded up on the grid).
    curve = LiquidationCurve.gbm(0.6)
    side: Literal["long", "short"] = "long" if after > 0 else "short"
    d_req = curve.required_distance(0.01, 24.0, side)
    assert 0.075 < d_req < 0.095
    o = one(
        event(after=after, sigma=0.6),
        scale=10.0,
        margin_mode="cross",
        max_liq_probability=0.01,
        horizon_hours=24.0,
    )
    assert "liq_buffer" in o["reasons"]
    # the buffer binds: liquidation lies at d_req (less the last lot's rounding), and P there,
    # in closed form, is at most the limit
    assert d_req <= o["liquidation_distance"] < d_req + 0.002
    p = liquidation_probability(
        P, o["liquidation_price"], 0.6, 24.0 / 8760, side="long" if after > 0 else "short"
    )
    assert 0.005 < p <= 0.01


def test_a_larger_min_liq_distance_wins_over_the_probability_limit():
    o = one(
        event(sigma=0.6),
        scale=10.0,
        margin_mode="cross",
        max_liq_probability=0.01,
        min_liq_distance=0.3,
    )
    assert 0.3 <= o["liquidation_distance"] < 0.302


def test_bad_probability_limit_is_an_invalid_row():
    assert one(event(sigma=0.6), max_liq_probability=1.5)["reasons"] == ["invalid_row"]
    assert one(event(sigma=0.6), max_liq_probability=0.0)["reasons"] == ["invalid_row"]


def test_a_horizon_beyond_the_curve_needs_another_model():
    # the closed-form curve covers horizons up to 2^(105/8) h ~ 1.04 years
    o = one(event(sigma=0.6), max_liq_probability=0.01, horizon_hours=20_000.0)
    assert o["reasons"] == ["risk_model_required"]


# ---------------------------------------------------------------- reductions, closes, flips


def test_close_is_exact_whatever_the_lot():
    # 0.1234567 is not a whole lot; a close still sends exactly that, reduce-only
    o = one(event(before=5, after=0), position=0.1234567, entry_price=P)
    assert (o["side"], o["amount"], o["reduce_only"], o["target_position"]) == (
        "sell",
        0.1234567,
        True,
        0.0,
    )


def test_reduce_is_a_fraction():
    # lead 5 -> 2 cuts 60%: the follower's 0.5 loses 0.3
    o = one(event(before=5, after=2), position=0.5, entry_price=P)
    assert (o["side"], o["amount"], o["reduce_only"]) == ("sell", 0.3, True)


def test_reduce_rounds_to_nearest_lot():
    # 60% of 0.007 = 4.2 lots -> 4 lots
    o = one(event(before=5, after=2), position=0.007, entry_price=P)
    assert o["amount"] == pytest.approx(0.004)


def test_short_reduce_buys_back():
    o = one(event(before=-5, after=-2.5), position=-0.4, entry_price=P)
    assert (o["side"], o["amount"]) == ("buy", pytest.approx(0.2))


def test_nothing_to_close():
    assert one(event(before=5, after=0))["reasons"] == ["nothing_to_close"]


def test_flip_is_close_plus_open():
    # lead +5 -> -3: close the follower's 0.5 long, then open 3 * 1,000 / 10,000 = 0.3 short
    o = one(event(before=5, after=-3), position=0.5, entry_price=P, margin_mode="cross")
    assert (o["side"], o["amount"], o["close_amount"], o["reduce_only"]) == (
        "sell",
        0.8,
        0.5,
        False,
    )
    assert o["target_position"] == pytest.approx(-0.3)


def test_follower_on_wrong_side_is_flipped_on_open():
    o = one(position=-0.2, entry_price=P, margin_mode="cross")
    assert "flipped" in o["reasons"]
    assert (o["side"], o["amount"], o["close_amount"]) == ("buy", pytest.approx(0.7), 0.2)


def test_margin_top_up_is_mirrored():
    # lead isolated margin 1,000 -> 1,500 (+50%): the follower's 100 gets +50
    ev = event(before=5, after=5, lead_collateral_before=1_000, lead_collateral_after=1_500)
    o = one(ev, position=0.5, entry_price=P, collateral=100)
    assert o["collateral"] == pytest.approx(50)
    assert o["reasons"] == ["margin_topup"]
    assert (
        o["liquidation_price"]
        < one(event(before=5, after=5), position=0.5, entry_price=P, collateral=100)[
            "liquidation_price"
        ]
    )


# ---------------------------------------------------------------- minimum size policies


def test_below_min_cost_skip_records_residual():
    # equity 5: 5 * 5 / 10,000 = 0.0025 BTC -> 0.002 (40 USDT) < 100 minimum cost
    o = one(equity=5)
    assert o["amount"] == 0
    assert {"below_min_cost", "skipped"} <= set(o["reasons"])
    assert o["residual"] == pytest.approx(0.0025)


def test_round_up_only_if_every_limit_still_holds():
    # rounding up to 100 USDT = 0.005 BTC needs margin for the lead's ~9.6% buffer:
    # 0.005 * 20,000 * 0.096 + MM ~ 9.96 > 5 available -> still skipped
    assert "skipped" in one(equity=5, min_size_policy="round_up")["reasons"]
    # without a buffer it needs only IM 100/125 = 0.8 -> rounded up to 0.005
    o = one(equity=5, min_size_policy="round_up", min_liq_distance=0.0)
    assert o["amount"] == 0.005
    assert "rounded_up" in o["reasons"]


def test_accumulate_carries_the_residual_until_it_is_tradeable():
    first = one(equity=5, min_size_policy="accumulate", min_liq_distance=0.0)
    assert first["amount"] == 0
    assert first["residual"] == pytest.approx(0.0025)
    # next +5 BTC event: 0.0025 new + 0.0025 carried = 0.005 = 100 USDT: traded
    second = one(
        event(before=5, after=10),
        equity=5,
        min_size_policy="accumulate",
        min_liq_distance=0.0,
        residual=first["residual"],
    )
    assert second["amount"] == 0.005
    assert second["residual"] == pytest.approx(0.0)


# ---------------------------------------------------------------- bad input


def test_bad_rows_get_a_reason_and_the_rest_trade():
    rows = [
        {"id": "ok", "equity": 1_000.0},
        {"id": "zero", "equity": 0.0},
        {"id": "negative", "equity": -5.0},
        {"id": "nan", "equity": math.nan},
        {"id": "nan-position", "equity": 1_000.0, "position": math.nan},
        {"id": "no-entry", "equity": 1_000.0, "position": 0.1},
        {"id": "bad-mode", "equity": 1_000.0},
        {"id": "ok2", "equity": 2_000.0},
    ]
    table = pa.table(
        {
            "id": [r["id"] for r in rows],
            "equity": [r["equity"] for r in rows],
            "position": [r.get("position", 0.0) for r in rows],
            "mode": ["proportional"] * 6 + ["yolo", "proportional"],
        }
    )
    out = {o["id"]: o for o in normalize(event(), table, MARKETS).orders()}
    for bad in ("zero", "negative", "nan", "nan-position", "no-entry", "bad-mode"):
        assert out[bad]["reasons"] == ["invalid_row"], bad
        assert out[bad]["amount"] == 0, bad
    assert out["ok"]["amount"] == 0.5
    assert out["ok2"]["amount"] == 1.0


def test_unknown_event_symbol():
    with pytest.raises(InvalidInput, match="unknown symbol 'DOGE/USDT:USDT'") as info:
        normalize(event(symbol="DOGE/USDT:USDT"), [{"id": 1, "equity": 1}], MARKETS)
    assert info.value.field == "event.symbol"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("price", -1.0, "event.price: must be a positive finite number"),
        ("price", math.inf, "event.price: must be a positive finite number"),
        ("lead_equity", 0.0, "event.lead_equity: must be a positive"),
        ("lead_position_after", math.nan, "event.lead_position_after: must be a finite number"),
        ("lead_stop_price", 21_000.0, "lead_stop_price 21000.0 must be below price"),
    ],
)
def test_bad_event_fields_are_named(field, value, message):
    with pytest.raises(InvalidInput, match=message):
        normalize(event(**{field: value}), [{"id": 1, "equity": 1}], MARKETS)


def test_missing_required_column():
    with pytest.raises(InvalidInput, match="no 'equity' column"):
        normalize(event(), pa.table({"id": [1]}), MARKETS)


def test_unknown_column_is_named():
    with pytest.raises(InvalidInput, match=r"unknown follower column.*equty"):
        normalize(event(), pa.table({"id": [1], "equity": [1.0], "equty": [1.0]}), MARKETS)


def test_wrong_type_in_json_row_names_row_and_field():
    with pytest.raises(InvalidInput, match=r"followers\[1\]\.equity") as info:
        normalize(event(), [{"id": 1, "equity": 1}, {"id": 2, "equity": "lots"}], MARKETS)
    assert info.value.field == "followers[1].equity"


def test_market_without_lot_step_is_a_configuration_error():
    markets = Markets("binance", {SYMBOL: dataclasses.replace(SPEC, amount_step=None)})
    with pytest.raises(ConfigurationError, match="no amount step"):
        normalize(event(), [{"id": 1, "equity": 1}], markets)


# ---------------------------------------------------------------- table types


def test_pandas_polars_arrow_and_json_give_the_same_result():
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    cols = {
        "id": [1, 2, 3],
        "equity": [1_000.0, 50.0, 3_000.0],
        "max_leverage": [3.0, math.inf, 5.0],
    }
    rows = [dict(zip(cols, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]
    results = [
        normalize(event(), t, MARKETS).orders()
        for t in (pa.table(cols), pd.DataFrame(cols), pl.DataFrame(cols), cols, rows)
    ]
    for r in results[1:]:
        assert r == results[0]


# ---------------------------------------------------------------- properties and cross-checks


def random_cohort(seed: int, n: int = 40) -> dict[str, np.ndarray]:
    r = np.random.default_rng(seed)
    pos = np.where(r.random(n) < 0.5, 0.0, np.round(r.uniform(-2, 2, n), 3))
    return {
        "id": np.arange(n),
        "equity": np.round(r.lognormal(7, 2, n), 2),
        "available_balance": np.where(r.random(n) < 0.3, r.uniform(0, 5_000, n), np.nan),
        "position": pos,
        "entry_price": r.uniform(15_000, 25_000, n),
        "collateral": np.where(pos != 0, r.uniform(0, 5_000, n), 0.0),
        "other_notional": np.where(r.random(n) < 0.3, r.uniform(0, 20_000, n), 0.0),
        "mode": r.choice(list(MODES), n),
        "expected_return": r.choice([np.nan, -0.5, 0.3, 2.0], n),
        "leverage_setting": r.choice([np.nan, np.nan, 3.0, 20.0, 200.0], n),
        "max_liq_probability": r.choice([np.nan, np.nan, 0.001, 0.05, 0.5], n),
        "horizon_hours": r.choice([1.0, 24.0, 24.0 * 30], n),
        "scale": r.choice([0.5, 1.0, 2.0], n),
        "fixed_notional": r.uniform(10, 50_000, n),
        "risk_fraction": r.uniform(0.001, 0.05, n),
        "vol_target": r.uniform(0.1, 2.0, n),
        "max_leverage": r.choice([1.0, 3.0, 10.0, 50.0, np.inf], n),
        "max_position_leverage": r.choice([2.0, 20.0, np.inf], n),
        "min_liq_distance": r.choice([np.nan, 0.0, 0.05, 0.2, 0.5], n),
        "max_notional": r.choice([1_000.0, 1e6, np.inf], n),
        "margin_mode": r.choice(["isolated", "cross"], n),
        "min_size_policy": r.choice(["skip", "round_up", "accumulate"], n),
        "residual": np.where(r.random(n) < 0.2, r.uniform(0, 0.01, n), 0.0),
    }


events = st.sampled_from(
    [
        event(),  # open long
        event(after=-3),  # open short
        event(before=5, after=8),  # increase
        event(before=5, after=2),  # reduce
        event(before=-5, after=-1),  # reduce short
        event(before=5, after=0),  # close
        event(before=5, after=-4),  # flip
        event(sigma=0.9, lead_stop_price=19_000),  # open with stop and sigma
        event(sigma=0.6, expected_return=0.4),  # open with a volatility model
        event(before=-1, after=-4, sigma=1.2, expected_return=-0.1),  # increase short, model
    ]
).map(LeadEvent.model_validate)


@given(seed=st.integers(0, 2**32 - 1), ev=events)
# an order at exactly the first tier's cap, whose margin at the second tier's leverage is more
# than the follower's free balance: the margin posted is capped at that balance
@example(seed=73039, ev=LeadEvent.model_validate(event()))
def test_kernel_equals_plain_python_reference(seed, ev):
    cols = random_cohort(seed)
    res = normalize(ev, cols, MARKETS)
    cohort = Cohort.from_table(cols)
    vec = prepare_event(ev, SPEC, SPEC)
    curve = event_curve(ev, cohort)
    names = {
        "mode": MODES,
        "margin_mode": MARGIN_MODES,
        "min_size_policy": POLICIES,
        "derisk": DERISK_ACTIONS,
    }
    for i in range(len(cohort)):
        row: dict[str, object] = {k: float(v[i]) for k, v in cohort.floats.items()}
        row.update({k: names[k][int(v[i])] for k, v in cohort.codes.items()})
        row["allowed"] = bool(cohort.allowed[i])
        want = reference_normalize_one(list(vec), SPEC, row, curve)
        got = {k: res[k][i] for k in want}
        assert int(got["side"]) == want["side"], (i, row, want, got)
        assert got["amount"] == pytest.approx(want["amount"], rel=1e-9, abs=1e-12), (
            i,
            row,
            want,
            got,
        )
        assert Reason(int(got["reasons"])) == Reason(want["reasons"]), (i, row)
        assert bool(got["reduce_only"]) == want["reduce_only"]
        for k in (
            "target_position",
            "collateral",
            "leverage",
            "liquidation_price",
            "residual",
            "effective_leverage",
        ):
            assert got[k] == pytest.approx(want[k], rel=1e-6, abs=1e-9, nan_ok=True), (
                k,
                i,
                row,
                want,
                got,
            )


def _entry_value_markets(exchange: str) -> Markets:
    """SPEC's lots and Binance's BTC brackets on a venue taking maintenance margin at entry.

    Bybit's risk limits carry a deduction (the brackets' cum as they are); KuCoin's levels a
    whole-position rate (no deduction: the maintenance amounts are zeros, and the kernels get
    the table up to the first rate jump).
    """
    t = SPEC.tiers
    loaded = load_markets(
        exchange,
        markets={SYMBOL: {"precision": {"amount": STEP}, "limits": {"amount": {"min": STEP}}}},
        tiers={
            SYMBOL: [
                {"minNotional": f, "maxNotional": c, "maintenanceMarginRate": m, "maxLeverage": x}
                for f, c, m, x in zip(
                    t.floor.tolist(),
                    t.cap.tolist(),
                    t.mmr.tolist(),
                    t.max_leverage.tolist(),
                    strict=True,
                )
            ]
        },
    )
    return Markets(exchange, {SYMBOL: dataclasses.replace(loaded[SYMBOL], min_cost=MIN_COST)})


@pytest.mark.parametrize("exchange", ["bybit", "kucoinfutures"])
@given(seed=st.integers(0, 2**32 - 1), ev=events)
def test_entry_value_kernel_equals_plain_python_reference(exchange, seed, ev):
    # Bybit and KuCoin take maintenance margin at the entry value: the kernel's buffer solve
    # and liquidation price against the reference's bisection on Bybit's scalar formula, for
    # every event kind, opens from flat and increases of a holding, isolated and cross
    markets = _entry_value_markets(exchange)
    spec = liquidation_market(markets[SYMBOL], ev.price)
    cols = random_cohort(seed)
    res = normalize(ev, cols, markets)
    cohort = Cohort.from_table(cols)
    vec = prepare_event(ev, spec, spec)
    assert vec[nk.E_MM_AT_ENTRY] == 1.0
    curve = event_curve(ev, cohort)
    names = {"mode": MODES, "margin_mode": MARGIN_MODES, "min_size_policy": POLICIES}
    for i in range(len(cohort)):
        row: dict[str, object] = {k: float(v[i]) for k, v in cohort.floats.items()}
        row.update({k: names[k][int(v[i])] for k, v in cohort.codes.items() if k in names})
        row["allowed"] = bool(cohort.allowed[i])
        want = reference_normalize_one(list(vec), spec, row, curve)
        got = {k: res[k][i] for k in want}
        assert int(got["side"]) == want["side"], (i, row, want, got)
        assert got["amount"] == pytest.approx(want["amount"], rel=1e-9, abs=1e-12), (i, row)
        assert Reason(int(got["reasons"])) == Reason(want["reasons"]), (i, row, want, got)
        for k in ("target_position", "collateral", "leverage", "liquidation_price"):
            assert got[k] == pytest.approx(want[k], rel=1e-6, abs=1e-9, nan_ok=True), (
                k,
                i,
                row,
                want,
                got,
            )


@pytest.mark.parametrize("exchange", ["bybit", "kucoinfutures"])
def test_an_entry_value_venue_takes_the_generic_kernel_on_the_open_path(exchange):
    # the vectorized pass models maintenance margin at the liquidation notional only: on a
    # venue taking it at the entry value every row goes to the generic row code, same bits
    markets = _entry_value_markets(exchange)
    spec = liquidation_market(markets[SYMBOL], P)
    cohort = Cohort.from_table(random_cohort(7, 300))
    vec = prepare_event(LeadEvent.model_validate(event()), spec, spec)
    fast, generic = allocate_result(len(cohort)), allocate_result(len(cohort))
    run_kernel(vec, spec, cohort, fast, fast_path=True)
    run_kernel(vec, spec, cohort, generic, fast_path=False)
    for k in fast:
        np.testing.assert_array_equal(fast[k], generic[k], err_msg=k)


@given(seed=st.integers(0, 2**32 - 1), ev=events)
def test_numba_kernel_equals_its_python_execution(seed, ev):
    # the compiled kernel (open_kernel for opens, generic_kernel for the rest) against the
    # generic row code's plain-Python execution over every row
    cohort = Cohort.from_table(random_cohort(seed, 25))
    vec = prepare_event(ev, SPEC, SPEC)
    curve = event_curve(ev, cohort)
    outs = [allocate_result(len(cohort)), allocate_result(len(cohort))]
    run_kernel(vec, SPEC, cohort, outs[0], curve, fast_path=True)
    python_args: tuple[Any, ...] = (
        *kernel_args(vec, SPEC, cohort, outs[1], curve),
        np.empty(0, dtype=np.bool_),  # no selection: every row
        0,
        len(cohort),
    )
    nk.generic_rows.py_func(*python_args)
    for k in outs[0]:
        np.testing.assert_allclose(
            outs[0][k].astype(float), outs[1][k].astype(float), rtol=1e-12, err_msg=k
        )


OPEN_EVENTS = st.sampled_from(
    [
        event(),
        event(after=-3),
        event(before=5, after=8),
        event(before=-1, after=-4, sigma=1.2, expected_return=-0.1),
        event(before=5, after=-4),
        event(sigma=0.9, lead_stop_price=19_000),
        event(sigma=0.6, expected_return=0.4),
        event(price=2_000.0, after=400.0),  # deep in the tier table
    ]
).map(LeadEvent.model_validate)


@pytest.mark.parametrize("exchange", ["binance", "hyperliquid"])
@given(seed=st.integers(0, 2**32 - 1), ev=OPEN_EVENTS)
def test_the_open_fast_path_computes_exactly_what_the_generic_kernel_computes(exchange, seed, ev):
    # every constraint, tier edge, probability limit and rounding the random cohort reaches
    # gives the same bits on the vectorized fast path; Binance's BTC brackets (10 tiers, the
    # first to 50,000) and Hyperliquid's (two tiers, the first to 150 M)
    spec = SPEC if exchange == "binance" else load_markets("hyperliquid")["BTC/USDC:USDC"]
    cohort = Cohort.from_table(random_cohort(seed, 200))
    vec = prepare_event(ev, spec, spec)
    # probability limits on the event's curve (None without sigma: the limit cannot be met)
    curve = event_curve(ev, cohort)
    fast, generic = allocate_result(len(cohort)), allocate_result(len(cohort))
    run_kernel(vec, spec, cohort, fast, curve, fast_path=True)
    run_kernel(vec, spec, cohort, generic, curve, fast_path=False)
    for k in fast:
        np.testing.assert_array_equal(fast[k], generic[k], err_msg=k)


def _filled_result(n: int, value: int) -> dict[str, np.ndarray]:
    """Output columns holding ``value`` everywhere: a row a kernel skips keeps it."""
    cols = allocate_result(n)
    for col in cols.values():
        col[:] = value
    return cols


@pytest.mark.parametrize("seed", [0, 1])
def test_open_kernel_blocks_cover_every_row_once(seed):
    # two whole blocks and a partial third (2 * 2048 + 37 rows), probability limits included:
    # each block's vectorized pass and its generic rows give the generic kernel's bits, at
    # block edges too; outputs start as different sentinels, so a row either kernel skipped
    # would show
    n = 2 * nk._BLOCK + 37
    cohort = Cohort.from_table(random_cohort(seed, n))
    ev = LeadEvent.model_validate(event(sigma=0.7))
    vec, curve = prepare_event(ev, SPEC, SPEC), event_curve(ev, cohort)
    fast, generic = _filled_result(n, 7), _filled_result(n, 9)
    run_kernel(vec, SPEC, cohort, fast, curve, fast_path=True)
    run_kernel(vec, SPEC, cohort, generic, curve, fast_path=False)
    for k in fast:
        np.testing.assert_array_equal(fast[k], generic[k], err_msg=k)


def test_a_tier_table_not_starting_at_zero_leaves_every_row_to_the_generic_code():
    # the vectorized pass's first-tier shortcuts assume a first floor of 0 (TierTable.from_rows
    # guarantees it); a table built around that check still gets the generic kernel's bits
    t = SPEC.tiers
    floor = t.floor.copy()
    floor[0] = 1_000.0
    spec = dataclasses.replace(
        SPEC,
        tiers=TierTable(floor=floor, cap=t.cap, mmr=t.mmr, cum=t.cum, max_leverage=t.max_leverage),
    )
    cohort = Cohort.from_table(random_cohort(3, 400))
    vec = prepare_event(LeadEvent.model_validate(event(sigma=0.7)), spec, spec)
    fast, generic = allocate_result(400), allocate_result(400)
    slow = np.zeros(400, dtype=np.bool_)
    open_args: tuple[Any, ...] = (*kernel_args(vec, spec, cohort, fast), slow)

    nk.open_kernel(*open_args)
    run_kernel(vec, spec, cohort, generic, fast_path=False)

    assert slow.all()
    for k in fast:
        np.testing.assert_array_equal(fast[k], generic[k], err_msg=k)


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_division_by_zero_is_a_value_on_both_paths(fast_path):
    # sigma = 1e-170 squares to 0: the optimal (Kelly) quantity mu / sigma^2 is inf, which the
    # position cap binds to 2 x 10,000 / 20,000 = 1 BTC; both kernels use numpy's error model
    # (set, not inherited from whichever kernel compiled the generic rows first), so neither
    # raises from inside its parallel loop
    cohort = Cohort.from_table(
        {
            "id": np.arange(2),
            "equity": np.full(2, 10_000.0),
            "mode": np.full(2, "optimal"),
            "sigma": np.array([1e-170, 1e-170]),
            "expected_return": np.full(2, 0.3),
            "margin_mode": np.full(2, "cross"),
            "max_position_leverage": np.full(2, 2.0),
        }
    )
    vec = prepare_event(LeadEvent.model_validate(event()), SPEC, SPEC)
    cols = allocate_result(2)

    run_kernel(vec, SPEC, cohort, cols, fast_path=fast_path)

    np.testing.assert_array_equal(cols["amount"], [1.0, 1.0])
    assert np.isinf(cols["raw_amount"]).all()
    assert (cols["reasons"] & Reason.POSITION_LEVERAGE).all()


@pytest.mark.parametrize("margin_mode", ["cross", "isolated"])
def test_a_fully_collateralized_long_has_no_liquidation_price_on_either_path(margin_mode):
    # a flat follower with 10,000 USDT opens a fixed 5,000 USDT: 0.25 BTC at 20,000 (0.5x).
    # Cross: the balance at the mark, 10,000, exceeds the notional, so the first-tier root
    # (10,000 + 0 - 0.25 * 20,000) / (0.25 * 0.004 - 0.25) is negative and no price liquidates
    # the long. Isolated at a 1x setting: the 5,000 margin posted covers the whole notional,
    # root (5,000 - 5,000) / (0.25 * 0.004 - 0.25) = -0, the same
    rows = Cohort.from_table(
        {
            "id": np.arange(3),
            "equity": np.full(3, 10_000.0),
            "mode": np.full(3, "fixed_notional"),
            "fixed_notional": np.full(3, 5_000.0),
            "margin_mode": np.full(3, margin_mode),
            "leverage_setting": np.full(3, 1.0 if margin_mode == "isolated" else np.nan),
        }
    )
    vec = prepare_event(LeadEvent.model_validate(event()), SPEC, SPEC)
    fast, generic = allocate_result(3), allocate_result(3)
    slow = np.ones(3, dtype=np.bool_)
    open_args: tuple[Any, ...] = (*kernel_args(vec, SPEC, rows, fast), slow)

    nk.open_kernel(*open_args)
    run_kernel(vec, SPEC, rows, generic, fast_path=False)

    assert not slow.any()  # sized by the vectorized pass itself
    np.testing.assert_allclose(fast["amount"], 0.25)
    assert np.isnan(fast["liquidation_price"]).all()
    for k in fast:
        np.testing.assert_array_equal(fast[k], generic[k], err_msg=k)


def test_the_fast_path_sizes_most_of_a_realistic_cohort():
    # the sample cohort copying a 10x open (with the sigma its risk and volatility modes need):
    # rows leave the vectorized pass for a round-up to the exchange minimum or a notional
    # beyond the second tier (measured: 0.74%, two thirds of them round-ups; 18% before the
    # pass took second-tier notionals, 16% of the rows). If a change sent rows back to the
    # generic code, results would stay right and only this test would notice.
    cohort = Cohort.from_table(sample_cohort(20_000, 3))
    vec = prepare_event(LeadEvent.model_validate(event(sigma=0.55)), SPEC, SPEC)
    slow = np.empty(len(cohort), dtype=np.bool_)
    fast_args: tuple[Any, ...] = (
        *kernel_args(vec, SPEC, cohort, allocate_result(len(cohort))),
        slow,
    )
    nk.open_kernel(*fast_args)
    assert slow.mean() < 0.03


def test_out_reuses_a_previous_results_columns():
    # a second event for the same cohort written into the first result's columns gives what a
    # fresh call gives, in the same arrays
    cohort = Cohort.from_table(random_cohort(5, 40))
    first = normalize(event(), cohort, MARKETS)
    fresh = normalize(event(before=5.0, after=8.0), cohort, MARKETS)

    reused = normalize(event(before=5.0, after=8.0), cohort, MARKETS, out=first)

    for name in RESULT_COLUMNS[1:]:
        assert reused[name] is first[name]
        np.testing.assert_array_equal(reused[name], fresh[name], err_msg=name)


def test_out_of_another_length_is_refused():
    first = normalize(event(), random_cohort(5, 40), MARKETS)
    with pytest.raises(InvalidInput, match=r"these 41 followers.*'side' is int8 of shape \(40,\)"):
        normalize(event(), random_cohort(5, 41), MARKETS, out=first)


def test_out_never_shares_memory_with_a_cohort_read_from_a_table():
    # a live engine feeding the last targets back in as positions: the cohort copies the table
    # into its own matrices, so the kernel never reads a position it has already overwritten
    # and the reused result is what a fresh call gives
    cohort = random_cohort(5, 40)
    first = normalize(event(), cohort, MARKETS)
    cohort["position"] = first["target_position"]
    fresh = normalize(event(), dict(cohort, position=first["target_position"].copy()), MARKETS)

    reused = normalize(event(), cohort, MARKETS, out=first)

    for name in RESULT_COLUMNS[1:]:
        np.testing.assert_array_equal(reused[name], fresh[name], err_msg=name)


def test_out_sharing_memory_with_the_cohort_is_refused():
    cohort = Cohort.from_table(random_cohort(5, 40))
    first = normalize(event(), cohort, MARKETS)
    first.columns["amount"] = cohort.floats["scale"]
    with pytest.raises(InvalidInput, match=r"'amount' shares memory with the cohort") as err:
        normalize(event(), cohort, MARKETS, out=first)
    assert err.value.field == "out"


def test_out_with_columns_of_no_result_is_refused():
    cohort = Cohort.from_table(random_cohort(5, 40))
    first = normalize(event(), cohort, MARKETS)
    first.columns["amount"] = first["amount"].copy()
    with pytest.raises(InvalidInput, match=r"not the output columns of one normalize\(\) result"):
        normalize(event(), cohort, MARKETS, out=first)


@pytest.mark.parametrize("fault", ["read_only", "shared_column"])
def test_out_with_unusable_columns_is_refused(fault):
    cohort = Cohort.from_table(random_cohort(5, 40))
    first = normalize(event(), cohort, MARKETS)
    if fault == "read_only":
        first["amount"].setflags(write=False)
        message = r"'amount' is read-only or not contiguous"
    else:
        first.columns["close_amount"] = first["amount"]
        message = r"'close_amount' shares memory with 'amount'"
    with pytest.raises(InvalidInput, match=message):
        normalize(event(), cohort, MARKETS, out=first)


@given(seed=st.integers(0, 2**32 - 1), ev=events)
def test_a_cohort_grouped_by_profile_gets_the_same_orders_by_id(seed, ev):
    cohort = Cohort.from_table(random_cohort(seed, 60))
    grouped = cohort.grouped_by_profile()
    plain = normalize(ev, cohort, MARKETS)
    regrouped = normalize(ev, grouped, MARKETS)
    # the same followers in another row order: neighbours share their sizing mode
    assert sorted(grouped.ids.tolist()) == sorted(cohort.ids.tolist())
    assert np.all(np.diff(grouped.codes["mode"]) >= 0)
    row = {follower: i for i, follower in enumerate(plain["id"].tolist())}
    order = np.array([row[follower] for follower in regrouped["id"].tolist()])
    for name in RESULT_COLUMNS[1:]:
        np.testing.assert_array_equal(regrouped[name], plain[name][order], err_msg=name)


@given(seed=st.integers(0, 2**32 - 1), after=st.sampled_from([5.0, -3.0]))
def test_opens_respect_caps_buffers_and_lots(seed, after):
    cols = random_cohort(seed)
    cols["position"] = np.zeros(len(cols["id"]))  # flat followers: the open is all they hold
    res = normalize(event(after=after, sigma=0.8), cols, MARKETS)
    traded = res["side"] != 0
    eff = res["effective_leverage"][traded]
    assert np.all(eff <= cols["max_leverage"][traded] * (1 + 1e-9))
    notional = np.abs(res["target_position"][traded]) * P
    assert np.all(
        notional <= cols["max_position_leverage"][traded] * cols["equity"][traded] * (1 + 1e-9)
    )
    alpha = cols["max_liq_probability"]
    default = np.where(np.isnan(alpha), LEAD_DIST, 0.0)
    buffer = np.where(np.isnan(cols["min_liq_distance"]), default, cols["min_liq_distance"])
    dist = res["liquidation_distance"]
    assert np.all(np.isnan(dist[traded]) | (dist[traded] >= buffer[traded] - 1e-9))
    # P(liquidation within the horizon), in closed form at the liquidation price reached, is
    # within each follower's limit
    side: Literal["long", "short"] = "long" if after > 0 else "short"
    for i in np.flatnonzero(traded & ~np.isnan(alpha) & np.isfinite(res["liquidation_price"])):
        p = liquidation_probability(
            P, res["liquidation_price"][i], 0.8, cols["horizon_hours"][i] / 8760, side=side
        )
        assert p <= alpha[i] * (1 + 1e-9), (i, p, alpha[i])
    lots = res["amount"][traded] / SPEC.amount_step
    assert np.allclose(lots, np.round(lots), rtol=0, atol=1e-6)
    assert np.all(res["amount"][traded] * P >= MIN_COST * (1 - 1e-12))


@given(seed=st.integers(0, 2**32 - 1))
def test_proportional_is_exact_when_nothing_binds(seed):
    r = np.random.default_rng(seed)
    n = 30
    cols = {
        "id": np.arange(n),
        "equity": r.uniform(1_000, 1e6, n),
        "margin_mode": ["cross"] * n,
        "min_liq_distance": np.zeros(n),
        "scale": r.uniform(0.1, 3, n),
    }
    res = normalize(event(), cols, MARKETS)
    free = (res["reasons"] & ~np.uint32(Reason.LOT_ROUNDING)) == 0
    assert free.any()
    scale, equity = np.asarray(cols["scale"]), np.asarray(cols["equity"])
    want = np.floor(scale * 5 * equity / 10_000 / STEP + 1e-9) * STEP
    np.testing.assert_allclose(res["amount"][free], want[free], rtol=1e-12)


@given(seed=st.integers(0, 2**32 - 1), side=st.sampled_from([1.0, -1.0]))
def test_lead_close_always_closes_exactly(seed, side):
    cols = random_cohort(seed)
    cols["position"] = side * np.abs(
        np.round(np.random.default_rng(seed).uniform(0.0001, 3, 40), 7)
    )
    res = normalize(event(before=5 * side, after=0), cols, MARKETS)
    ok = (res["reasons"] & np.uint32(Reason.INVALID_ROW)) == 0
    np.testing.assert_array_equal(res["amount"][ok], np.abs(cols["position"][ok]))
    assert np.all(res["reduce_only"][ok])
    assert np.all(res["target_position"][ok] == 0)
    assert np.all(res["side"][ok] == -side)


@given(seed=st.integers(0, 2**32 - 1), after=st.floats(0.05, 4.95))
def test_reductions_are_proportional_within_one_step(seed, after):
    cols = random_cohort(seed)
    cols["position"] = np.round(np.abs(cols["position"]) + 0.001, 3)
    cols["min_size_policy"] = np.array(["skip"] * 40)
    res = normalize(event(before=5, after=after), cols, MARKETS)
    phi = 1 - after / 5
    ok = (res["reasons"] & np.uint32(Reason.INVALID_ROW | Reason.SKIPPED)) == 0
    assert np.all(np.abs(res["amount"][ok] - phi * cols["position"][ok]) <= STEP / 2 + 1e-9)


def test_hyperliquid_lead_copied_to_binance_followers(binance, hyperliquid):
    # lead on Hyperliquid BTC/USDC:USDC, followers on Binance: mapped to BTC/USDT:USDT
    ev = event(symbol="BTC/USDC:USDC")
    res = normalize(
        ev,
        [{"id": 1, "equity": 1_000.0, "margin_mode": "cross"}],
        binance,
        lead_markets=hyperliquid,
    )
    assert res.symbol == "BTC/USDT:USDT"
    assert res.orders()[0]["amount"] == pytest.approx(0.5)  # 5 BTC * 1,000 / 10,000


def test_hyperliquid_followers_use_its_lot_and_ten_dollar_minimum(hyperliquid):
    # BTC on Hyperliquid: 5 size decimals, $10 minimum order value.
    # equity 1.5: 5 * 1.5 / 10,000 = 0.00075 BTC = $15 >= $10: traded in 0.00001 lots
    ev = event(symbol="BTC/USDC:USDC")
    small = normalize(ev, [{"id": 1, "equity": 1.5, "margin_mode": "cross"}], hyperliquid).orders()[
        0
    ]
    assert small["amount"] == pytest.approx(0.00075)
    # equity 1: 0.0005 BTC = $10 exactly: allowed; equity 0.9: $9 < $10: skipped
    tiny = normalize(ev, [{"id": 1, "equity": 0.9, "margin_mode": "cross"}], hyperliquid).orders()[
        0
    ]
    assert {"below_min_cost", "skipped"} <= set(tiny["reasons"])


# --------------------------------------------------------------------------- intake, updates

_CODE_VALUES = st.one_of(st.sampled_from([*MODES, "nope", "Proportional", ""]), st.none())


@given(values=st.lists(_CODE_VALUES, min_size=1, max_size=30))
def test_text_codes_equal_a_per_row_lookup_from_every_table_type(values):
    # the vectorized coding (Arrow's hash lookup) against the obvious loop: the index in
    # MODES, -1 for an unknown value, the default (proportional, 0) for a missing one
    want = np.array([0 if v is None else MODES.index(v) if v in MODES else -1 for v in values])
    n = len(values)
    base = {"id": np.arange(n), "equity": np.full(n, 1_000.0)}
    tables = [
        {**base, "mode": np.array(values, dtype=object)},
        pa.table({**base, "mode": pa.array(values, type=pa.string())}),
        pa.table({**base, "mode": pa.array(values, type=pa.string()).dictionary_encode()}),
        pa.table({**base, "mode": pa.array(values, type=pa.large_string())}),
    ]
    if None not in values:
        tables.append({**base, "mode": np.array(values)})  # numpy text, no missing values
    for table in tables:
        np.testing.assert_array_equal(Cohort.from_table(table).codes["mode"], want)


def test_codes_mixed_with_numbers_are_coded_row_by_row():
    # a number or NaN among the names is unknown (-1), None the default (0)
    table = {
        "id": np.arange(4),
        "equity": np.full(4, 1_000.0),
        "mode": np.array(["optimal", 3, math.nan, None], dtype=object),
    }
    np.testing.assert_array_equal(Cohort.from_table(table).codes["mode"], [5, -1, -1, 0])


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (np.array([1, 2, 1]), r"follower id 1 is given twice \(rows 0 and 2\)"),
        (np.array(["a", "b", "a"]), r"follower id 'a' is given twice \(rows 0 and 2\)"),
        (np.array(["a", None, "c"], dtype=object), r"id of row 1 is missing or empty \(None\)"),
        (np.array(["a", "b", " "]), r"id of row 2 is missing or empty"),
        (np.array([1.0, math.nan, 2.0]), r"id of row 1 is missing or empty \(nan\)"),
    ],
)
def test_bad_follower_ids_are_refused_naming_the_row(ids, message):
    table = pa.table({"id": pa.array(ids.tolist()), "equity": [1_000.0] * 3})
    for followers in (table, {"id": ids, "equity": np.full(3, 1_000.0)}):
        with pytest.raises(InvalidInput, match=message):
            Cohort.from_table(followers)


def test_update_in_place_sizes_like_a_cohort_built_with_the_new_state():
    # after fills, the state written by update() gives the orders a cohort rebuilt from a
    # table holding that state gives (two ways to the same cohort)
    table = random_cohort(8, 40)
    cohort = Cohort.from_table(table)
    first = normalize(event(), cohort, MARKETS)
    filled = first["side"] != 0
    ids = cohort.ids[filled]
    new_position = first["target_position"][filled]
    new_collateral = cohort.floats["collateral"][filled] + first["collateral"][filled]
    cohort.update(
        ids,
        position=new_position,
        entry_price=20_000.0,
        collateral=new_collateral,
        residual=first["residual"][filled],
    )
    rebuilt = dict(table)
    for name, values in (
        ("position", new_position),
        ("entry_price", 20_000.0),
        ("collateral", new_collateral),
        ("residual", first["residual"][filled]),
    ):
        column = np.array(rebuilt[name], dtype=float)
        column[filled] = values
        rebuilt[name] = column
    rebuilt["available_balance"] = cohort.floats["available_balance"].copy()

    after = normalize(event(before=5.0, after=8.0), cohort, MARKETS)
    want = normalize(event(before=5.0, after=8.0), rebuilt, MARKETS)

    for name in RESULT_COLUMNS:
        np.testing.assert_array_equal(after[name], want[name], err_msg=name)


def test_update_by_rows_or_mask_and_refusals_write_nothing():
    cohort = Cohort.from_table({"id": ["a", "b", "c"], "equity": [1_000.0, 2_000.0, 3_000.0]})
    cohort.update(rows=[2], equity=3_500.0)
    cohort.update(rows=np.array([True, False, False]), position=0.5, entry_price=20_000.0)
    np.testing.assert_array_equal(cohort.floats["equity"], [1_000.0, 2_000.0, 3_500.0])
    np.testing.assert_array_equal(cohort.floats["position"], [0.5, 0.0, 0.0])
    np.testing.assert_array_equal(cohort.rows_of(["c", "a"]), [2, 0])
    before = cohort.float_matrix.copy()
    refusals = [
        # a position held with no entry price
        ({"ids": "b", "position": 1.0}, r"follower 'b' \(row 1\) would have entry_price nan"),
        # one bad equity among valid ones: nothing of either column is written
        ({"ids": ["a", "c"], "equity": [5.0, -1.0], "residual": 0.1}, r"'c' \(row 2\).*equity"),
        ({"ids": "zz", "equity": 1.0}, r"follower id 'zz' is not in the cohort"),
        ({"rows": [3], "equity": 1.0}, r"row 3 is outside the cohort's 3 rows"),
        ({"rows": [0, 1], "equity": [1.0, 2.0, 3.0]}, r"3 values for 2 selected followers"),
    ]
    for kwargs, message in refusals:
        with pytest.raises(InvalidInput, match=message):
            cohort.update(**kwargs)
    np.testing.assert_array_equal(cohort.float_matrix, before)


def test_markets_may_be_an_exchange_name():
    by_name = normalize(event(), [{"id": "a", "equity": 1_000.0}], "binance")
    loaded = normalize(event(), [{"id": "a", "equity": 1_000.0}], load_markets("binance"))
    assert by_name.orders() == loaded.orders()
    with pytest.raises(InvalidInput, match="got a dict") as info:
        normalize(event(), [{"id": "a", "equity": 1_000.0}], {"binance": 1})  # type: ignore[arg-type]
    assert info.value.field == "markets"


# --------------------------------------------------------------------------- exact amounts

_SETTLE_GRID = Decimal("1e-8")

ALL_KINDS = st.sampled_from(
    [
        event(),  # open
        event(after=-3),  # open short
        event(before=5, after=8),  # increase
        event(before=5, after=2.9),  # reduce by 42%
        event(before=-5, after=-1.7),  # reduce a short
        event(before=5, after=0),  # close
        event(before=5, after=-4.1),  # flip
        event(before=-2, after=3.3, sigma=0.8),  # flip to long, with a volatility model
        event(
            before=5, after=5, lead_collateral_before=10_000.0, lead_collateral_after=13_000.0
        ),  # margin top-up
    ]
).map(LeadEvent.model_validate)


def _on_the_grid(values: np.ndarray, grid: Decimal) -> list[float]:
    """The values (as printed: repr) that are not whole multiples of ``grid``."""
    return [float(v) for v in values if math.isfinite(v) and Decimal(repr(float(v))) % grid != 0]


@pytest.mark.parametrize("step", [0.001, 0.01, 0.5])
@given(seed=st.integers(0, 2**32 - 1), ev=ALL_KINDS, price=st.floats(12_000.0, 28_000.0))
def test_amounts_are_whole_lots_as_printed_and_margin_is_what_the_follower_has(
    step, seed, ev, price
):
    # positions on the lot grid; every amount, close and target printed by repr is a whole
    # number of lots (what ccxt's amount_to_precision keeps), and the margin to post is whole
    # 1e-8 of the settle currency, never more than the follower's free balance (opens, top-ups)
    # or its equity (de-risking, which also releases margin)
    spec = dataclasses.replace(SPEC, amount_step=step, min_amount=step)
    markets = Markets("binance", {SYMBOL: spec})
    decimals = spec.amount_decimals
    table = random_cohort(seed, 60)
    lots = np.round(table["position"] / step)
    table["position"] = np.array([round(k * step, decimals) for k in lots])
    table["derisk_distance"] = np.where(table["position"] != 0, 0.3, np.nan)
    cohort = Cohort.from_table(table)
    grid = Decimal(str(step))

    sized = normalize(ev, cohort, markets)
    cut = derisk(SYMBOL, price, cohort, markets)

    for res in (sized, cut):
        for name in ("amount", "close_amount", "target_position"):
            assert _on_the_grid(res[name], grid) == [], (res.event_kind, name)
        assert _on_the_grid(res["collateral"], _SETTLE_GRID) == []
        assert (res["collateral"] >= 0.0).all()
    # (a stated NaN balance makes an invalid row, which posts nothing)
    free = np.nan_to_num(cohort.floats["available_balance"], nan=0.0)
    opens = sized["close_amount"] == 0.0
    assert (sized["collateral"][opens] <= free[opens]).all()
    assert (cut["collateral"] <= cohort.floats["equity"]).all()


def test_a_flip_prints_the_lots_it_trades():
    # a follower long 0.31 flips with a lead going from 5 long to 1 short on 10,000 of lead
    # equity: close 0.31, open 1,000 / 10,000 * 1 = 0.1, amount 0.41, target -0.1; summed in
    # floating point, 0.31 + 0.1 is 0.41000000000000003
    res = normalize(
        event(before=5, after=-1),
        {
            "id": [1],
            "equity": [1_000.0],
            "position": [0.31],
            "entry_price": [20_000.0],
            "collateral": [700.0],
            "margin_mode": ["isolated"],
        },
        MARKETS,
    )
    assert repr(float(res["close_amount"][0])) == "0.31"
    assert repr(float(res["amount"][0])) == "0.41"
    assert repr(float(res["target_position"][0])) == "-0.1"
