"""The Venue protocol, exercised on the paper venue (the one venue that runs here)."""

from __future__ import annotations

import dataclasses

import pytest

from levalign.errors import InvalidInput
from levalign.markets import load_markets
from levalign.venues.base import Balance, OrderIntent, OrderReport, Venue
from levalign.venues.paper import PaperVenue, SlippageModel

SYMBOL = "BTC/USDT:USDT"
SPEC = dataclasses.replace(
    load_markets("binance")[SYMBOL], amount_step=0.001, min_amount=0.001, min_cost=100.0
)


def venue() -> PaperVenue:
    # two cross-margin followers of 10,000 USDT, no fee, no slippage
    return PaperVenue.from_cohort(
        {"id": ["a", "b"], "equity": [10_000.0, 10_000.0], "margin_mode": ["cross", "cross"]},
        SPEC,
        taker_fee=0.0,
        slippage=SlippageModel(fixed_bps=0.0),
    )


def buy(client_id: str, account: str = "a", amount: float = 0.1, **kw: object) -> OrderIntent:
    return OrderIntent(client_id, account, SYMBOL, "buy", amount, **kw)  # type: ignore[arg-type]


def test_paper_venue_is_a_venue():
    assert isinstance(venue(), Venue)


def test_fill_at_the_intent_price():
    v = venue()
    (report,) = v.submit([buy("0x01", price=20_000.0)])
    # 0.1 BTC at 20,000, no fee or slippage: filled in full at the price
    assert report == OrderReport(
        "0x01", "a", SYMBOL, "closed", filled=0.1, average=20_000.0, id="0x01"
    )
    (position,) = v.positions("a")
    assert (position.side, position.contracts, position.entry_price) == ("long", 0.1, 20_000.0)
    assert v.positions("b") == []
    # no fee, mark = entry: equity is the 10,000 deposited
    assert v.balance("a").total == 10_000.0
    assert v.balance("b") == Balance("USDT", 10_000.0, 0.0, 10_000.0)


def test_a_client_id_places_one_order_only():
    v = venue()
    first = v.submit([buy("0x02", price=20_000.0)])
    again = v.submit([buy("0x02", price=21_000.0)])
    assert again == first
    assert v.positions("a")[0].contracts == 0.1
    assert v.order("a", "0x02") == first[0]
    assert v.order("a", "0x03") is None
    # the id is per account: the same id on another account is another order
    assert v.submit([buy("0x02", account="b", price=20_000.0)])[0].account == "b"


def test_market_order_fills_at_the_last_mark():
    v = venue()
    before = v.submit([buy("0x04")])  # no fill and no mark yet: nothing to price it at
    assert before[0].status == "rejected"
    assert before[0].reason is not None
    assert "mark" in before[0].reason
    v.submit([buy("0x05", price=20_000.0)])
    (report,) = v.submit([buy("0x06", amount=0.2)])
    assert (report.status, report.filled, report.average) == ("closed", 0.2, 20_000.0)


def test_refusals_are_reports():
    v = venue()
    sell = OrderIntent("0x07", "a", SYMBOL, "sell", 0.1, reduce_only=True, price=20_000.0)
    (report,) = v.submit([sell])
    assert report.status == "rejected"
    assert report.reason == "reduce-only order with nothing to reduce"
    other = OrderIntent("0x08", "a", "ETH/USDT:USDT", "buy", 1.0, price=1_000.0)
    assert v.submit([other])[0].status == "rejected"


def test_unknown_account_and_bad_intents():
    with pytest.raises(InvalidInput, match="account 'z' is not a follower"):
        venue().submit([buy("0x09", account="z", price=20_000.0)])
    with pytest.raises(InvalidInput, match="amount must be a positive number"):
        buy("0x0a", amount=0.0)
    with pytest.raises(InvalidInput, match="side must be 'buy' or 'sell'"):
        OrderIntent("0x0b", "a", SYMBOL, "long", 0.1)  # type: ignore[arg-type]
