"""The request models: one source of follower defaults (a round trip through the schema sizes
the same), unknown keys refused with the closest name, fields named as the user wrote them."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from levalign._codes import DERISK_ACTIONS, MARGIN_MODES, MODES, POLICIES
from levalign._layout import COLUMNS
from levalign.errors import InvalidInput
from levalign.markets import Markets, load_markets
from levalign.normalize import RESULT_COLUMNS, Reason, derisk, normalize
from levalign.schemas import (
    Account,
    AlignSpec,
    FollowerProfile,
    LeadEvent,
    NormalizeRequest,
    Position,
    parse,
)

SYMBOL = "BTC/USDT:USDT"
SPEC = dataclasses.replace(
    load_markets("binance")[SYMBOL], amount_step=0.001, min_amount=0.001, min_cost=100.0
)
MARKETS = Markets("binance", {SYMBOL: SPEC})


def test_every_cohort_column_is_a_profile_field_with_the_registrys_default():
    fields = FollowerProfile.model_fields
    assert set(fields) == {"id", *(c.name for c in COLUMNS)}
    for column in COLUMNS:
        field = fields[column.name]
        if column.default is None:
            assert field.is_required(), column.name
        elif isinstance(column.default, float) and not math.isfinite(column.default):
            # NaN and infinity are None in the schema (JSON has neither)
            assert field.default is None, column.name
        else:
            assert field.default == column.default, column.name


def test_an_empty_profile_is_sized_like_the_lead_not_at_a_zero_buffer():
    # {"id": "1", "equity": 1000} copying a 1x lead open (5 BTC at 20,000 on 100,000 of lead
    # equity, cross: no price liquidates it). Proportional: 1,000 / 100,000 * 5 = 0.05 BTC,
    # isolated, with the lead's buffer: the largest, 0.99 (liquidation at 200). Collateral
    # 0.05 * 20,000 * 0.99 = 990 plus the maintenance margin at 200, 0.05 * 200 * 0.004 = 0.04:
    # 990.04, given as is or after model_validate -> model_dump (where min_liq_distance once
    # defaulted to 0.0 and the follower posted 8 of margin at 125x, liquidation 0.4% away)
    ev = _event(0.0, 5.0)
    plain = normalize(ev, [{"id": "1", "equity": 1000.0}], MARKETS)
    dumped = FollowerProfile.model_validate({"id": "1", "equity": 1000.0}).model_dump()
    again = normalize(ev, [dumped], MARKETS)
    assert plain["amount"][0] == 0.05
    assert plain["collateral"][0] == pytest.approx(990.04, rel=1e-12)
    assert plain["liquidation_distance"][0] == pytest.approx(0.99, rel=1e-12)
    _same_orders(plain, again)


def test_a_follower_who_sets_nothing_is_capped_at_20x():
    # the lead opens 150 BTC at 20,000 on 100,000: 30x. The follower's default account cap
    # holds it to 20 x 1,000 / 20,000 = 1 BTC (not 1.5)
    res = normalize(_event(0.0, 150.0), [{"id": "1", "equity": 1000.0}], MARKETS)
    assert res["amount"][0] == 1.0
    assert res["reasons"][0] & Reason.ACCOUNT_LEVERAGE


def _event(before: float, after: float, **kw: Any) -> LeadEvent:
    return LeadEvent.model_validate(
        {
            "event_id": "e",
            "symbol": SYMBOL,
            "price": 20_000.0,
            "lead_equity": 100_000.0,
            "lead_position_before": before,
            "lead_position_after": after,
            **kw,
        }
    )


_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "available_balance": st.floats(0.0, 1e6),
    "collateral": st.floats(0.0, 5e3),
    "other_notional": st.floats(0.0, 1e5),
    "other_maintenance_margin": st.floats(0.0, 1e3),
    "mode": st.sampled_from(MODES),
    "scale": st.floats(0.0, 3.0),
    "fixed_notional": st.floats(0.0, 1e5),
    "risk_fraction": st.floats(0.0, 0.1),
    "vol_target": st.floats(0.05, 2.0),
    "sigma": st.floats(0.1, 2.0),
    "stop_sigmas": st.floats(0.5, 4.0),
    "max_leverage": st.one_of(st.floats(1.0, 50.0), st.just(math.inf)),
    "max_position_leverage": st.floats(1.0, 50.0),
    "min_liq_distance": st.floats(0.0, 0.5),
    "max_liq_probability": st.floats(0.001, 0.5),
    "horizon_hours": st.floats(1.0, 200.0),
    "max_notional": st.floats(0.0, 1e6),
    "expected_return": st.floats(-1.0, 1.0),
    "leverage_setting": st.floats(1.0, 50.0),
    "margin_mode": st.sampled_from(MARGIN_MODES),
    "min_size_policy": st.sampled_from(POLICIES),
    "residual": st.floats(0.0, 0.01),
    "allowed": st.booleans(),
    "derisk_distance": st.floats(0.01, 0.5),
    "derisk": st.sampled_from(DERISK_ACTIONS),
}


@st.composite
def partial_profiles(draw: st.DrawFn, i: int) -> dict[str, Any]:
    """A follower row with a random subset of the optional fields set."""
    row: dict[str, Any] = {"id": i, "equity": draw(st.floats(100.0, 1e6))}
    for name in draw(st.sets(st.sampled_from(sorted(_OPTIONAL)))):
        row[name] = draw(_OPTIONAL[name])
    if draw(st.booleans()):
        row["position"] = draw(st.sampled_from([0.5, -0.25, 1.0]))
        row["entry_price"] = draw(st.floats(15_000.0, 25_000.0))
    return row


EVENTS = st.sampled_from(
    [
        _event(0.0, 5.0),
        _event(0.0, -3.0, sigma=0.8),
        _event(5.0, 8.0, sigma=0.6, expected_return=0.3),
        _event(5.0, 2.0),
        _event(5.0, 0.0),
        _event(5.0, -4.0, sigma=0.7),
        _event(5.0, 5.0, lead_collateral_before=10_000.0, lead_collateral_after=12_000.0),
    ]
)


def _same_orders(a: Any, b: Any) -> None:
    for name in RESULT_COLUMNS:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 4).flatmap(lambda n: st.tuples(*(partial_profiles(i) for i in range(n)))),
    ev=EVENTS,
)
@pytest.mark.parametrize("mode", ["python", "json"])
@pytest.mark.parametrize("exclude_unset", [True, False])
def test_a_profile_round_trip_through_the_schema_sizes_the_same_orders(
    rows: tuple[dict[str, Any], ...], ev: LeadEvent, mode: str, exclude_unset: bool
) -> None:
    dumped = [
        FollowerProfile.model_validate(r).model_dump(mode=mode, exclude_unset=exclude_unset)
        for r in rows
    ]
    _same_orders(normalize(ev, list(rows), MARKETS), normalize(ev, dumped, MARKETS))
    _same_orders(
        derisk(SYMBOL, 19_000.0, list(rows), MARKETS), derisk(SYMBOL, 19_000.0, dumped, MARKETS)
    )


# --------------------------------------------------------------------------- input errors

EVENT = {
    "event_id": "e1",
    "symbol": "BTC/USDT:USDT",
    "price": 20_000.0,
    "lead_equity": 10_000.0,
    "lead_position_before": 0.0,
    "lead_position_after": 1.0,
}
POSITION = {
    "symbol": "BTC/USDT:USDT",
    "side": "long",
    "contracts": 1.0,
    "entryPrice": 20_000.0,
    "markPrice": 20_000.0,
}


@pytest.mark.parametrize(
    ("model", "data", "field", "message"),
    [
        (
            Account,
            {"wallet_balance": 1, "positions": [{**POSITION, "levrage": 5}]},
            "account.positions[0].levrage",
            "unknown field 'levrage': did you mean 'leverage'?",
        ),
        (
            NormalizeRequest,
            {"event": EVENT, "followers": [{"id": "a", "equity": 1, "max_levrage": 3}]},
            "request.followers[0].max_levrage",
            "did you mean 'max_leverage'?",
        ),
        (
            NormalizeRequest,
            {"event": {**EVENT, "leadEquty": 1}},
            "request.event.leadEquty",
            "did you mean 'lead_equity'?",
        ),
        (
            NormalizeRequest,
            {"event": EVENT, "exchnage": "binance"},
            "request.exchnage",
            "did you mean 'exchange'?",
        ),
        (
            AlignSpec,
            {"model": {}, "spot": 1, "symbol": "X", "equity": 1, "zzz": 1},
            "spec.zzz",
            "unknown field 'zzz'; valid: ",
        ),
    ],
)
def test_unknown_keys_are_refused_with_the_closest_name(model, data, field, message):
    root = {Account: "account", AlignSpec: "spec"}.get(model, "request")
    with pytest.raises(InvalidInput, match=message) as info:
        parse(model, data, root=root)
    assert info.value.field == field


def test_ccxt_position_keys_are_accepted_and_ignored():
    # what ccxt's fetch_positions() returns beside the fields levalign reads
    extra = {"info": {"raw": 1}, "unrealizedPnl": 3.0, "liquidationPrice": 1.0, "id": None}
    pos = parse(Position, {**POSITION, **extra})
    assert pos.contracts == 1.0


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({**EVENT, "lead_equity": -1}, "event.lead_equity"),  # as written: snake_case
        ({**EVENT, "lead_equity": "x"}, "event.lead_equity"),
        ({"leadEquity": "x", **{k: v for k, v in EVENT.items() if k != "lead_equity"}},
         "event.leadEquity"),  # as written: camelCase
    ],
)  # fmt: skip
def test_the_field_is_named_as_the_user_wrote_it(data, field):
    with pytest.raises(InvalidInput) as info:
        parse(LeadEvent, data, root="event")
    assert info.value.field == field


def test_a_missing_field_is_named_in_snake_case_with_the_fix():
    data = {k: v for k, v in EVENT.items() if k != "lead_equity"}
    with pytest.raises(InvalidInput, match=r"event\.lead_equity: is required: add it") as info:
        parse(LeadEvent, data, root="event")
    assert info.value.field == "event.lead_equity"


def test_a_union_member_is_not_part_of_the_field_name():
    # pydantic reports id: str | int as "id.str" and "id.int"
    with pytest.raises(InvalidInput) as info:
        parse(FollowerProfile, {"id": None, "equity": 1}, root="followers[0]")
    assert info.value.field == "followers[0].id"


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (Position, {**POSITION, "contracts": 1e308}, "position.contracts"),
        (LeadEvent, {**EVENT, "lead_position_after": -1e308}, "position.lead_position_after"),
    ],
)
def test_a_position_without_a_finite_notional_is_invalid_input(model, data, field):
    # 1e308 contracts x 20,000 overflows to infinity: a units mistake, not a risk-limit "no"
    with pytest.raises(InvalidInput, match="no finite notional") as info:
        parse(model, data, root="position")
    assert info.value.field == field
