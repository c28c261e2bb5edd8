from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from levalign.engine.outbox import (
    PRIORITY_OPEN,
    PRIORITY_REDUCE,
    TRANSITIONS,
    OrderState,
    decimal_amount,
    intents_from_result,
)
from levalign.errors import InvalidInput


def _reference(value: float, step: float) -> str:
    """Decimal arithmetic: whole lots times the step's decimal form, else the float's repr."""
    lots = round(value / step)
    if abs(lots * step - value) <= 1e-9 * max(value, step):
        out = Decimal(repr(step)) * lots
    else:
        out = Decimal(repr(value))
    text = format(out.normalize(), "f")
    return "0" if Decimal(text) == 0 else text


@pytest.mark.parametrize(
    ("value", "step", "expected"),
    [
        (0.1 + 0.2, 0.1, "0.3"),  # 0.30000000000000004 is 3 lots of 0.1
        (0.30000000000000004, 0.001, "0.3"),
        (12345.0, 1.0, "12345"),
        (0.0, 0.001, "0"),
        (0.0123456, 0.001, "0.0123456"),  # a close of an off-grid position: as it is
        (1e-7, 0.001, "0.0000001"),
        (2.5, 0.5, "2.5"),
        (0.75, 0.25, "0.75"),
    ],
)
def test_decimal_amount_known_values(value, step, expected):
    assert decimal_amount(value, step) == expected


@given(
    st.integers(0, 10**9),
    st.sampled_from([1.0, 0.5, 0.1, 0.01, 0.001, 0.0001, 1e-5, 1e-8, 0.25, 10.0]),
)
def test_decimal_amount_on_grid_matches_decimal_arithmetic(lots, step):
    value = lots * step
    assert decimal_amount(value, step) == _reference(value, step)


@given(st.floats(0, 1e6, allow_nan=False), st.sampled_from([1.0, 0.1, 0.001, 1e-5]))
def test_decimal_amount_matches_decimal_arithmetic(value, step):
    assert Decimal(decimal_amount(value, step)) == Decimal(_reference(value, step))


def test_decimal_amount_refuses_bad_values():
    with pytest.raises(InvalidInput, match="finite and non-negative"):
        decimal_amount(-1.0, 0.1)
    with pytest.raises(InvalidInput, match="amount step must be positive"):
        decimal_amount(1.0, 0.0)


def test_terminal_states_have_no_way_out():
    for state in (OrderState.FILLED, OrderState.REJECTED, OrderState.CANCELED):
        assert TRANSITIONS[state] == frozenset()
    # unknown leaves only through a lookup's answer; nothing goes back to sent but a claim
    assert OrderState.SENT not in TRANSITIONS[OrderState.UNKNOWN]
    assert [s for s, tos in TRANSITIONS.items() if OrderState.SENT in tos] == [OrderState.PENDING]


def test_a_lead_flip_gives_a_close_then_an_open(hyperliquid):
    from levalign import normalize

    followers = [
        {"id": "long", "equity": 10_000.0, "position": 0.02, "entry_price": 100_000.0},
        {"id": "flat", "equity": 10_000.0},
    ]
    event = {
        "event_id": "e",
        "symbol": "BTC/USDC:USDC",
        "price": 100_000.0,
        "lead_equity": 100_000.0,
        "lead_position_before": 1.0,
        "lead_position_after": -1.0,
    }
    result = normalize(event, followers, hyperliquid)
    intents = intents_from_result(result, 0.00001, price_limit="99000")
    by = {(i.follower_id, i.leg): i for i in intents}
    close = by[("long", "close")]
    # the follower holds 0.02: the close sells exactly that, reduce-only, before any open
    assert (close.side, close.amount, close.reduce_only) == ("sell", "0.02", True)
    assert close.priority == PRIORITY_REDUCE
    assert close.price_limit is None  # closes always go
    opened = by[("long", "open")]
    # then the short the lead took, in proportion: 1 BTC of 100,000 equity -> 0.1 of 10,000
    assert (opened.side, opened.amount, opened.reduce_only) == ("sell", "0.1", False)
    assert (opened.priority, opened.price_limit) == (PRIORITY_OPEN, "99000")
    # a flat follower only opens
    assert [i.leg for i in intents if i.follower_id == "flat"] == ["open"]
