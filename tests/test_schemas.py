"""Request models: unknown keys refused with the closest name; fields named as written."""

from __future__ import annotations

import pytest

from levalign.errors import InvalidInput
from levalign.schemas import (
    Account,
    AlignSpec,
    FollowerProfile,
    LeadEvent,
    NormalizeRequest,
    Position,
    parse,
)

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
