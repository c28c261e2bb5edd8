from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from levalign.errors import InvalidInput
from levalign.normalize import Reason
from levalign.risk.options import (
    VEGA_LIMIT,
    OptionCohort,
    normalize_options,
    option_exposure,
    reason_names,
    reference_normalize_options,
)

# ---------------------------------------------------------------- exposure, published values

# Hull, Options, Futures, and Other Derivatives, 9th ed., ch. 19 "The Greek Letters", the
# chapter's running illustration (§19.1): S0 = 49, K = 50, r = 5%, sigma = 20%, T = 20 weeks
# (0.3846 years). Published call greeks: delta 0.522 (§19.4), gamma 0.066 (§19.6), vega 12.1
# per 1.00 of vol (§19.8). The put on the same terms has delta N(d1) - 1 = -0.478 and the
# same gamma and vega (§19.4, §19.6, §19.8). One contract is 100 shares.
HULL = {"spot": 49.0, "strike": 50.0, "expiry": 0.3846, "sigma": 0.2, "rate": 0.05}


def hull(kind, contracts, **kw):
    return {"symbol": f"XYZ-{kind}", "kind": kind, "contracts": contracts, **HULL, **kw}


def test_hull_portfolio_long_calls_short_puts():
    # long 10 calls + short 5 puts, 100 shares each, equity 10,000:
    #   calls: 10*100*0.522*49 = 25,578   puts: -5*100*(-0.478)*49 = 11,711
    #   delta notional 37,289 -> delta leverage 3.7289 signed and gross (both positive)
    #   gamma: 0.066*(1,000 - 500)*49^2/100 = 792.33 USD of delta notional per 1% rise
    #   vega: 12.1*(1,000 - 500) = 6,050 per 1.00 vol -> 0.605 per unit of equity
    # tolerances carry the rounding of the published greeks: delta +-0.0005 over 1,500
    # shares at 49 is +-37 USD (+-0.0037 of leverage); gamma +-0.0005 -> +-6.0; vega +-0.05
    # over 500 shares -> +-25 (+-0.0025 per unit of equity)
    positions = [
        hull("call", 10, contract_size=100),
        hull("put", -5, contractSize=100),
    ]

    report = option_exposure(positions, 10_000.0)

    assert report.delta_notional == pytest.approx(37_289.0, abs=37.0)
    assert report.delta_leverage == pytest.approx(3.7289, abs=0.0037)
    assert report.gross_delta_leverage == pytest.approx(3.7289, abs=0.0037)
    assert report.gamma_exposure == pytest.approx(792.33, abs=6.0)
    assert report.vega == pytest.approx(6_050.0, abs=25.0)
    assert report.vega_per_equity == pytest.approx(0.605, abs=0.0025)
    call, put = report.positions
    assert (call.side, call.contracts, put.side, put.contracts) == ("long", 10, "short", 5)
    assert call.delta_leverage == pytest.approx(25_578 / 10_000, abs=0.0025)
    assert put.delta_leverage == pytest.approx(11_711 / 10_000, abs=0.0012)
    assert put.vega == pytest.approx(-6_050.0, abs=25.0)


def test_signed_and_gross_delta_leverage_differ_when_deltas_offset():
    # long 10 calls + long 5 puts on Hull's terms (100 shares each), equity 10,000:
    #   signed: (1,000*0.522 - 500*0.478)*49 = 13,867 -> 1.3867
    #   gross:  (1,000*0.522 + 500*0.478)*49 = 37,289 -> 3.7289
    #   vega adds up: 1,500*12.1 = 18,150 -> 1.815; gross vega the same
    report = option_exposure(
        [hull("call", 10, contract_size=100), hull("put", 5, contract_size=100)], 10_000.0
    )

    assert report.delta_leverage == pytest.approx(1.3867, abs=0.0037)
    assert report.gross_delta_leverage == pytest.approx(3.7289, abs=0.0037)
    assert report.vega_per_equity == pytest.approx(1.815, abs=0.0075)
    assert report.gross_vega_per_equity == pytest.approx(report.vega_per_equity)


def test_volatility_is_solved_from_the_mark_price():
    # Hull's published call price 2.40 (§19.1) at sigma 20%: with vega 12.1, the 0.005
    # rounding of the price moves the implied vol by at most 0.005/12.1 = 0.0004
    pos = hull("call", 1, sigma=None, markPrice=2.40)
    del pos["sigma"]

    (row,) = option_exposure([pos], 1_000.0).positions

    assert row.sigma == pytest.approx(0.20, abs=0.0005)
    assert row.delta == pytest.approx(0.522, abs=0.001)


def test_black76_delta_notional_is_on_the_forward():
    # Hull, 9th ed., ch. 18 "Futures Options", Black's model: put on crude-oil futures, F = 20,
    # K = 20, r = 9%, T = 4 months, sigma = 25%: d1 = 0.07216, N(-d1) = 0.4712. Black-76
    # put delta with respect to F: -e^{-0.03} N(-d1) = -0.97045 * 0.4712 = -0.45728.
    # One long put on 1,000 barrels, equity 10,000: N = -0.45728 * 1,000 * 20 = -9,145.6
    pos = {
        "symbol": "CL-P",
        "forward": 20.0,
        "strike": 20.0,
        "expiry": 4 / 12,
        "kind": "put",
        "sigma": 0.25,
        "rate": 0.09,
        "model": "black76",
        "contracts": 1,
        "contract_size": 1_000,
    }

    report = option_exposure([pos], 10_000.0)

    assert report.delta_notional == pytest.approx(-9_145.6, abs=2.0)
    assert report.delta_leverage == pytest.approx(-0.91456, abs=2e-4)


# ---------------------------------------------------------------- inverse options, by hand

# Deribit-style BTC call, coin-settled: S = K = 60,000, T = 30/365, sigma = 60%, r = 0.
#   sigma sqrt(T) = 0.6 * 0.2866911 = 0.1720147; d1 = sigma sqrt(T)/2 = 0.0860073 = -d2
#   N(d1) = 0.5 + phi(0) (x - x^3/6 + x^5/40) = 0.5 + 0.3989423 * 0.0859014 = 0.5342697
#   USD price c = S (N(d1) - N(d2)) = S (2 N(d1) - 1) -> coin price c/S = 0.0685394 BTC
#   coin delta = BS delta - coin price = 0.5342697 - 0.0685394 = 0.4657303
#   USD vega = S phi(d1) sqrt(T) = 60,000 * 0.3974696 * 0.2866911 = 6,837.06 per 1.00 vol
# Ten contracts of 1 BTC, equity 3 BTC = 180,000 USD:
#   delta notional = 10 * 0.4657303 * 60,000 = 279,438.2 USD -> delta leverage 1.552434
#   (= 4.657303 BTC of coin delta / 3 BTC); vega 68,370.6 -> 0.379837 per unit of equity
BTC = {
    "symbol": "BTC/USD:BTC-240628-60000-C",
    "underlyingPrice": 60_000.0,
    "strike": 60_000.0,
    "expiry": 30 / 365,
    "optionType": "call",
    "sigma": 0.6,
    "model": "inverse",
}
A_BTC = 0.4657303 * 60_000  # USD delta notional of one contract
V_BTC = 6_837.06  # USD vega of one contract


def test_inverse_option_delta_is_coin_delta_and_notional_is_usd():
    (row,) = option_exposure([{**BTC, "contracts": 10}], 3 * 60_000.0).positions

    assert row.price == pytest.approx(0.0685394, abs=2e-7)
    assert row.delta == pytest.approx(0.5342697 - 0.0685394, abs=2e-7)
    assert row.delta_notional == pytest.approx(279_438.2, rel=1e-6)
    assert row.delta_leverage == pytest.approx(1.552434, rel=1e-6)
    assert row.vega == pytest.approx(68_370.6, rel=1e-5)
    assert row.vega_per_equity == pytest.approx(0.379837, rel=1e-5)


def test_inverse_option_priced_from_its_coin_mark():
    # the mark of the example in coin (Deribit quotes BTC options in BTC) gives back sigma
    pos = {**BTC, "contracts": 1, "mark_price": 0.0685394}
    del pos["sigma"]

    (row,) = option_exposure([pos], 60_000.0).positions

    assert row.sigma == pytest.approx(0.6, abs=1e-5)


def test_iso_expiry_is_valued_at_the_valuation_time():
    # 30 days between valuation and expiry, ACT/365: t = 30/365
    pos = {**BTC, "contracts": 1, "expiryDatetime": "2024-06-28T08:00:00Z"}
    del pos["expiry"]

    iso = option_exposure([pos], 1.0, valuation_time="2024-05-29T08:00:00+00:00")
    ms = option_exposure([{**pos, "valuation_time": 1_716_969_600_000}], 1.0)

    assert iso.positions[0].t == pytest.approx(30 / 365, rel=1e-12)
    assert ms.positions[0].t == pytest.approx(30 / 365, rel=1e-12)
    assert iso.positions[0].delta == pytest.approx(0.4657303, abs=2e-7)


# ---------------------------------------------------------------- bad input


def _position(**changes):
    pos = {**BTC, "contracts": 1, **changes}
    return {k: v for k, v in pos.items() if v is not None}


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"underlyingPrice": -1.0}, "positions[0].underlyingPrice", "positive"),
        ({"underlyingPrice": None, "spot": math.nan}, "positions[0].spot", "positive"),
        ({"strike": 0.0}, "positions[0].strike", "positive"),
        ({"sigma": math.nan}, "positions[0].sigma", "positive"),
        ({"sigma": None}, "positions[0].sigma", "give the volatility"),
        ({"expiry": -0.01}, "positions[0].expiry", "in the past"),
        ({"expiry": 1_719_561_600_000}, "positions[0].expiry", "not a time to expiry"),
        (
            {"expiry": "2024-06-28T08:00:00Z", "valuation_time": "2024-06-28T09:00:00Z"},
            "positions[0].expiry",
            "has expired",
        ),
        ({"expiry": "2024-06-28T08:00:00Z"}, "positions[0].valuation_time", "valuation_time"),
        ({"optionType": "straddle"}, "positions[0].optionType", "'call' or 'put'"),
        ({"model": "heston"}, "positions[0].model", "black76"),
        ({"sigma": None, "mark_price": 2.0}, "positions[0].mark_price", "outside"),
    ],
)
def test_bad_position_names_the_field(changes, field, message):
    with pytest.raises(InvalidInput, match=message) as info:
        option_exposure([_position(**changes)], 60_000.0)
    assert info.value.field == field


@pytest.mark.parametrize("equity", [0.0, -5.0, math.nan, math.inf])
def test_bad_equity_names_the_field(equity):
    with pytest.raises(InvalidInput, match="equity must be a positive number") as info:
        option_exposure([_position()], equity)
    assert info.value.field == "equity"


# ---------------------------------------------------------------- copying a lead, by hand

STEP = 0.1  # Deribit BTC options: amount step 0.1, minimum 0.1 contract
LEAD_EQUITY = 180_000.0


def lead_event(before=0.0, after=10.0, **option):
    return {
        "event_id": "e1",
        "option": {k: v for k, v in {**BTC, **option}.items() if v is not None},
        "lead_equity": LEAD_EQUITY,
        "lead_position_before": before,
        "lead_position_after": after,
    }


def copy(rows, ev=None, step=STEP, min_amount=STEP):
    res = normalize_options(ev or lead_event(), rows, amount_step=step, min_amount=min_amount)
    ref = reference_normalize_options(
        ev or lead_event(), rows, amount_step=step, min_amount=min_amount
    )
    assert res.orders() == ref.orders()
    return res, res.orders()


def test_open_copies_the_lead_delta_leverage():
    # lead buys 10 calls with 180,000: follower with 18,000 buys 10 * 18,000/180,000 = 1
    # contract: delta leverage 0.4657303 * 60,000 / 18,000 = 1.552434, the lead's
    res, (o,) = copy([{"id": "a", "equity": 18_000.0}])

    assert (res.event_kind, o["side"], o["amount"], o["reasons"]) == ("open", "buy", 1.0, [])
    assert o["delta_leverage"] == pytest.approx(1.552434, rel=1e-6)
    assert o["delta_leverage"] == pytest.approx(res.lead_delta_leverage, rel=1e-12)
    assert o["vega_per_equity"] == pytest.approx(V_BTC / 18_000, rel=1e-5)


def test_event_timestamp_values_an_option_with_a_dated_expiry():
    # expiry 30 days after the event's timestamp (ccxt milliseconds): the same t = 30/365,
    # hence the same delta as the example, and the follower with 18,000 still buys 1 contract
    ev = {**lead_event(expiry=None, expiryDatetime="2024-06-28T08:00:00Z")}
    ev["timestamp"] = 1_716_969_600_000  # 2024-05-29T08:00:00Z

    res, (o,) = copy([{"id": "a", "equity": 18_000.0}], ev)

    assert res.delta == pytest.approx(0.4657303, abs=2e-7)
    assert o["amount"] == 1.0


def test_delta_caps_bind_in_order_and_round_toward_zero():
    # account cap: E = 10,000, max_leverage 0.5: 5,000 / 27,943.82 = 0.1789 contract -> 0.1
    #   (wanted 10 * 10,000/180,000 = 0.5556); delta leverage 0.1 * 27,943.82/10,000 = 0.27944
    # other positions: E = 20,000, max_leverage 2, other 30,000 of delta notional:
    #   (40,000 - 30,000) / 27,943.82 = 0.3579 -> 0.3 (wanted 1.1111);
    #   delta leverage (0.3 * 27,943.82 + 30,000)/20,000 = 1.919157
    # position cap: E = 20,000, max_position_leverage 1: 20,000/27,943.82 = 0.7157 -> 0.7
    rows = [
        {"id": 1, "equity": 10_000.0, "max_leverage": 0.5},
        {"id": 2, "equity": 20_000.0, "max_leverage": 2.0, "other_delta_notional": 30_000.0},
        {"id": 3, "equity": 20_000.0, "max_position_leverage": 1.0},
    ]

    _, (o1, o2, o3) = copy(rows)

    assert o1["amount"] == 0.1
    assert o1["reasons"] == ["account_leverage", "lot_rounding"]
    assert o1["delta_leverage"] == pytest.approx(0.1 * A_BTC / 10_000, rel=1e-6)
    assert o2["amount"] == 0.3
    assert o2["delta_leverage"] == pytest.approx((0.3 * A_BTC + 30_000) / 20_000, rel=1e-6)
    assert o3["amount"] == 0.7
    assert o3["reasons"] == ["position_leverage", "lot_rounding"]


def test_vega_cap_sets_its_own_flag():
    # E = 50,000, max_vega 0.1: room 5,000 / 6,837.06 = 0.7313 contract -> 0.7
    # (wanted 10 * 50,000/180,000 = 2.78); vega per equity 0.7 * 6,837.06/50,000 = 0.095719
    _, (o,) = copy([{"id": 1, "equity": 50_000.0, "max_vega": 0.1}])

    assert o["amount"] == 0.7
    assert o["reasons"] == ["lot_rounding", "vega_limit"]
    assert o["vega_per_equity"] == pytest.approx(0.7 * V_BTC / 50_000, rel=1e-5)


def test_short_lead_is_copied_short_and_capped_on_absolute_delta():
    # the lead writes 10 calls: the follower with 9,000 sells 0.5; its own delta leverage
    # is -0.5 * 27,943.82 / 9,000 = -1.55243; a gross cap of 1.0 allows
    # 9,000 / 27,943.82 = 0.322 -> 0.3 contract
    rows = [{"id": 1, "equity": 9_000.0}, {"id": 2, "equity": 9_000.0, "max_leverage": 1.0}]

    _, (o1, o2) = copy(rows, lead_event(0.0, -10.0))

    assert (o1["side"], o1["amount"], o1["target_position"]) == ("sell", 0.5, -0.5)
    assert o1["position_delta_leverage"] == pytest.approx(-0.5 * A_BTC / 9_000, rel=1e-6)
    assert (o2["side"], o2["amount"], o2["target_position"]) == ("sell", 0.3, -0.3)


def test_reduce_is_a_fraction_and_close_is_exact():
    # lead 10 -> 4 cuts 60%: a follower holding 1.5 sells 0.9; one holding 0.37 (not whole
    # steps) sells round(0.222/0.1) = 2 steps = 0.2. Lead 10 -> 0: both close exactly.
    rows = [{"id": 1, "equity": 1.0, "position": 1.5}, {"id": 2, "equity": 1.0, "position": 0.37}]

    res, (r1, r2) = copy(rows, lead_event(10.0, 4.0))
    _, (c1, c2) = copy(rows, lead_event(10.0, 0.0))

    assert res.event_kind == "reduce"
    assert (r1["side"], r1["amount"], r1["reduce_only"]) == ("sell", 0.9, True)
    assert r1["target_position"] == pytest.approx(0.6)
    assert r2["amount"] == 0.2
    assert (c1["amount"], c1["target_position"], c1["reduce_only"]) == (1.5, 0.0, True)
    assert (c2["amount"], c2["target_position"]) == (0.37, 0.0)


def test_flip_closes_then_opens():
    # lead +10 -> -5: a follower long 1 contract with 18,000 sells 1 (close) + 0.5 (new short)
    _, (o,) = copy([{"id": 1, "equity": 18_000.0, "position": 1.0}], lead_event(10.0, -5.0))

    assert (o["side"], o["amount"], o["close_amount"]) == ("sell", 1.5, 1.0)
    assert o["target_position"] == -0.5
    assert o["reasons"] == ["flipped"]


def test_min_size_policies():
    # E = 1,000: wanted 10 * 1,000/180,000 = 0.0556 contract, below the 0.1 step and minimum.
    # round_up buys 0.1 if the caps allow it: its delta leverage 0.1 * 27,943.82/1,000 =
    # 2.794, so a 2.0 cap refuses the round-up and the order is skipped
    rows = [
        {"id": "skip", "equity": 1_000.0},
        {"id": "acc", "equity": 1_000.0, "min_size_policy": "accumulate", "residual": 0.05},
        {"id": "up", "equity": 1_000.0, "min_size_policy": "round_up"},
        {"id": "up-capped", "equity": 1_000.0, "min_size_policy": "round_up", "max_leverage": 2},
    ]

    _, (skip, acc, up, capped) = copy(rows)

    wanted = 10 * 1_000 / LEAD_EQUITY
    assert skip["amount"] == 0.0
    assert skip["reasons"] == ["lot_rounding", "below_min_amount", "skipped"]
    assert skip["residual"] == pytest.approx(wanted)
    # accumulate: 0.0556 + the carried 0.05 = 0.1056 -> buys 0.1, carries 0.0056
    assert acc["amount"] == 0.1
    assert acc["residual"] == pytest.approx(wanted + 0.05 - 0.1)
    assert up["amount"] == 0.1
    assert "rounded_up" in up["reasons"]
    assert capped["amount"] == 0.0
    assert capped["reasons"] == ["lot_rounding", "below_min_amount", "skipped"]


def test_one_bad_row_does_not_sink_the_others():
    rows = [
        {"id": 1, "equity": math.nan},
        {"id": 2, "equity": 18_000.0, "scale": -1.0},
        {"id": 3, "equity": 18_000.0, "min_size_policy": "martingale"},
        {"id": 4, "equity": 18_000.0, "other_vega": -1.0},
        {"id": 5, "equity": 18_000.0, "max_vega": 0.0},
        {"id": 6, "equity": 18_000.0},
    ]

    res, orders = copy(rows)

    assert [o["reasons"] for o in orders[:5]] == [["invalid_row"]] * 5
    assert all(o["amount"] == 0.0 and o["side"] is None for o in orders[:5])
    assert (orders[5]["amount"], orders[5]["reasons"]) == (1.0, [])
    assert res["reasons"][0] == Reason.INVALID_ROW


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (lead_event(strike=-1.0), "event.option.strike"),
        (lead_event(underlyingPrice=math.nan), "event.option.underlyingPrice"),
        (lead_event(sigma=0.0), "event.option.sigma"),
        (lead_event(expiry=0.0), "event.option.expiry"),
        (lead_event(optionType="binary"), "event.option.optionType"),
        (lead_event(model="sabr"), "event.option.model"),
        ({**lead_event(), "lead_equity": 0.0}, "event.lead_equity"),
        ({**lead_event(), "lead_position_after": math.nan}, "event.lead_position_after"),
    ],
)
def test_bad_event_names_the_field(event, field):
    with pytest.raises(InvalidInput) as info:
        normalize_options(event, [{"id": 1, "equity": 1.0}], amount_step=STEP)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("step", "least", "field"),
    [(0.0, 0.0, "amount_step"), (0.1, -1.0, "min_amount"), (1 / 3, 0.0, "amount_step")],
)
def test_bad_lot_rules_name_the_field(step, least, field):
    with pytest.raises(InvalidInput, match=field) as info:
        normalize_options(
            lead_event(), [{"id": 1, "equity": 1.0}], amount_step=step, min_amount=least
        )
    assert info.value.field == field


def test_cohort_tables_and_rows_agree_and_unknown_columns_are_refused():
    columns = {"id": [1, 2], "equity": [18_000.0, 9_000.0], "max_vega": [None, 0.1]}
    rows = [{"id": 1, "equity": 18_000.0}, {"id": 2, "equity": 9_000.0, "max_vega": 0.1}]

    by_rows = normalize_options(lead_event(), rows, amount_step=STEP).orders()
    by_dict = normalize_options(lead_event(), columns, amount_step=STEP).orders()
    by_arrow = normalize_options(lead_event(), pa.table(columns), amount_step=STEP).orders()

    assert by_rows == by_dict == by_arrow
    assert by_rows[1]["reasons"] == ["lot_rounding", "vega_limit"]
    with pytest.raises(InvalidInput, match="unknown follower column") as info:
        OptionCohort.from_table({"id": [1], "equity": [1.0], "leverage": [3.0]})
    assert info.value.field == "followers.leverage"


def test_vega_limit_bit_is_reasons_own():
    # options and futures share one flag space: the bit is Reason.VEGA_LIMIT, used by no other
    assert Reason.VEGA_LIMIT == VEGA_LIMIT
    assert [r for r in Reason if r.value & VEGA_LIMIT] == [Reason.VEGA_LIMIT]
    assert reason_names(int(Reason.SKIPPED) | VEGA_LIMIT) == ["skipped", "vega_limit"]


# ---------------------------------------------------------------- properties


def _contract(
    spot: float, moneyness: float, expiry: float, kind: str, sigma: float, model: str, size: float
) -> dict[str, object]:
    return {
        "symbol": "OPT",
        "spot": spot,
        "strike": spot * moneyness,
        "expiry": expiry,
        "kind": kind,
        "sigma": sigma,
        "model": model,
        "contract_size": size,
    }


contracts = st.builds(
    _contract,
    spot=st.floats(50.0, 200.0),
    moneyness=st.floats(0.7, 1.3),
    expiry=st.floats(0.02, 1.0),
    kind=st.sampled_from(["call", "put"]),
    sigma=st.floats(0.2, 1.5),
    model=st.sampled_from(["black_scholes", "black76", "inverse"]),
    size=st.sampled_from([1.0, 0.1, 100.0]),
)

followers = st.lists(
    st.fixed_dictionaries(
        {
            "equity": st.floats(100.0, 1e6),
            "scale": st.floats(0.0, 5.0),
            "max_leverage": st.floats(0.05, 10.0),
            "max_position_leverage": st.floats(0.05, 10.0),
            "max_vega": st.floats(0.001, 2.0),
            "used_delta": st.floats(0.0, 1.0),  # share of the delta cap used by other positions
            "used_vega": st.floats(0.0, 1.0),
            "held": st.floats(0.0, 1.0),  # share of the remaining room already held
            "min_size_policy": st.sampled_from(["skip", "round_up", "accumulate"]),
        }
    ),
    min_size=1,
    max_size=6,
)


def per_contract(option):
    """USD delta notional (absolute) and vega of one long contract, from option_exposure."""
    (row,) = option_exposure([{**option, "contracts": 1}], 1.0).positions
    return abs(row.delta_notional), row.vega


def cohort_within_caps(option, draws, step, side):
    a, v = per_contract(option)
    rows = []
    for i, f in enumerate(draws):
        eq = f["equity"]
        other_d = f["used_delta"] * f["max_leverage"] * eq
        other_v = f["used_vega"] * f["max_vega"] * eq
        room = min(
            (f["max_leverage"] * eq - other_d) / a,
            f["max_position_leverage"] * eq / a,
            (f["max_vega"] * eq - other_v) / v,
        )
        held = math.floor(f["held"] * room / step) * step
        rows.append(
            {
                "id": i,
                **{k: f[k] for k in ("equity", "scale", "max_leverage", "max_position_leverage")},
                **{k: f[k] for k in ("max_vega", "min_size_policy")},
                "other_delta_notional": other_d,
                "other_vega": other_v,
                "position": side * held,
            }
        )
    return rows, a, v


@given(
    option=contracts,
    draws=followers,
    before=st.floats(0.0, 20.0),
    opened=st.floats(0.1, 50.0),
    side=st.sampled_from([1.0, -1.0]),
    step=st.sampled_from([0.1, 1.0, 0.01]),
)
def test_caps_hold_and_amounts_are_whole_steps(option, draws, before, opened, side, step):
    rows, a, v = cohort_within_caps(option, draws, step, side)
    ev = {
        "event_id": "p",
        "option": option,
        "lead_equity": 50_000.0,
        "lead_position_before": side * before,
        "lead_position_after": side * (before + opened),
    }

    res = normalize_options(ev, rows, amount_step=step, min_amount=step)

    for i, row in enumerate(rows):
        eq = row["equity"]
        slack = 1e-9 * (1.0 + step * a / eq)  # the lot tolerance of the rounding
        assert res["delta_leverage"][i] <= row["max_leverage"] * (1 + 1e-9) + slack
        assert (
            abs(res["position_delta_leverage"][i])
            <= row["max_position_leverage"] * (1 + 1e-9) + slack
        )
        assert res["vega_per_equity"][i] <= row["max_vega"] * (1 + 1e-9) + 1e-9 * step * v / eq
        lots = res["amount"][i] / step
        assert lots == pytest.approx(round(lots), abs=1e-6)
        if res["amount"][i] > 0:
            assert res["side"][i] == side
            assert res["amount"][i] >= step * (1 - 1e-9)


@given(
    option=contracts,
    positions=st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=8),
    before=st.floats(0.1, 100.0),
    side=st.sampled_from([1.0, -1.0]),
)
def test_lead_close_closes_every_follower_exactly(option, positions, before, side):
    rows = [{"id": i, "equity": 1_000.0, "position": side * p} for i, p in enumerate(positions)]
    ev = {
        "event_id": "c",
        "option": option,
        "lead_equity": 50_000.0,
        "lead_position_before": side * before,
        "lead_position_after": 0.0,
    }

    res = normalize_options(ev, rows, amount_step=0.1, min_amount=0.1)

    assert res.event_kind == "close"
    assert list(res["amount"]) == positions
    assert np.all(res["target_position"] == 0.0)
    assert np.all(res["reduce_only"])
    assert np.all(res["side"] == -side)


@given(
    option=contracts,
    lots=st.lists(st.integers(1, 5_000), min_size=1, max_size=6),
    scale=st.floats(0.1, 5.0),
    opened=st.floats(0.1, 50.0),
    side=st.sampled_from([1.0, -1.0]),
)
def test_proportional_copy_is_exact_when_nothing_binds(option, lots, scale, opened, side):
    # equity chosen so that scale * opened * E_F / E_L is exactly m steps
    step, lead_eq = 0.1, 50_000.0
    rows = [
        {"id": i, "equity": m * step * lead_eq / (scale * opened), "scale": scale}
        for i, m in enumerate(lots)
    ]
    ev = {
        "event_id": "x",
        "option": option,
        "lead_equity": lead_eq,
        "lead_position_before": 0.0,
        "lead_position_after": side * opened,
    }

    res = normalize_options(ev, rows, amount_step=step, min_amount=step)

    assert np.all(res["reasons"] == 0)
    np.testing.assert_allclose(res["amount"], np.array(lots) * step, rtol=1e-12)
    np.testing.assert_allclose(
        res["position_delta_leverage"], scale * res.lead_delta_leverage, rtol=1e-9
    )


# ---------------------------------------------------------------- vectorized vs reference


def random_cohort(rng, n):
    def maybe(values, p, fill):
        return np.where(rng.random(n) < p, fill, values)

    equity = maybe(rng.lognormal(9.0, 1.5, n), 0.03, np.nan)
    return {
        "id": np.arange(n),
        "equity": maybe(equity, 0.02, -1.0),
        "position": maybe(np.round(rng.normal(0, 2, n), 2), 0.3, 0.0),
        "scale": maybe(rng.uniform(0, 3, n), 0.02, -0.5),
        "max_leverage": maybe(rng.uniform(0.05, 5, n), 0.3, np.inf),
        "max_position_leverage": maybe(rng.uniform(0.05, 5, n), 0.5, np.inf),
        "max_vega": maybe(rng.uniform(0.005, 1, n), 0.3, np.inf),
        "other_delta_notional": maybe(rng.uniform(0, 20_000, n), 0.5, 0.0),
        "other_vega": maybe(rng.uniform(0, 2_000, n), 0.5, 0.0),
        "residual": maybe(rng.uniform(0, 0.3, n), 0.5, 0.0),
        "min_size_policy": rng.choice(
            ["skip", "round_up", "accumulate", "bogus"], n, p=[0.3, 0.3, 0.37, 0.03]
        ),
    }


@pytest.mark.parametrize(
    ("before", "after"),
    [(0, 10), (4, 10), (10, 4), (10, 0), (10, -5), (-3, -12), (-12, -3), (5, 5), (-4, 6)],
)
@pytest.mark.parametrize("model", ["black_scholes", "black76", "inverse"])
def test_vectorized_equals_reference_on_random_cohorts(rng, before, after, model):
    cohort = random_cohort(rng, 400)
    option = {
        **BTC,
        "model": model,
        "strike": 55_000.0,
        "optionType": "put" if after < 0 else "call",
    }
    ev = {
        "event_id": "r",
        "option": option,
        "lead_equity": 250_000.0,
        "lead_position_before": before,
        "lead_position_after": after,
    }

    fast = normalize_options(ev, cohort, amount_step=0.1, min_amount=0.2)
    slow = reference_normalize_options(ev, cohort, amount_step=0.1, min_amount=0.2)

    for name in ("side", "reasons", "reduce_only"):
        np.testing.assert_array_equal(fast[name], slow[name], err_msg=name)
    for name in fast.columns:
        if name not in ("id", "side", "reasons", "reduce_only"):
            np.testing.assert_allclose(fast[name], slow[name], rtol=1e-12, atol=0, err_msg=name)
    # the random cohort exercises every branch, not just the easy one
    seen = int(np.bitwise_or.reduce(fast["reasons"]))
    assert seen & Reason.INVALID_ROW
    if (before, after) in ((0, 10), (4, 10), (-3, -12)):
        assert seen & Reason.ACCOUNT_LEVERAGE
        assert seen & VEGA_LIMIT
        assert seen & Reason.SKIPPED
