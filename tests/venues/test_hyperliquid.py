from __future__ import annotations

import logging
import pickle
from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from levalign.errors import ConfigurationError, InvalidInput
from levalign.venues.hyperliquid import (
    HyperliquidVenue,
    OrderState,
    OrderStateUnknown,
    RateLimiter,
    SecretKey,
    VenueOrder,
    exchange_weight,
    format_price,
    format_size,
    info_weight,
    limit_price,
    parse_order_response,
    parse_order_status,
)

KEY = "0x" + "4f" * 32
CLOID = "0x" + "0123456789abcdef" * 2


# ------------------------------------------------------------------ price and size grid


@pytest.mark.parametrize(
    ("price", "sz_decimals", "rounding", "expected"),
    [
        # the docs' examples: 1234.5 valid, 1234.56 not (5 significant figures)
        ("1234.56", 0, "down", "1234.5"),
        # 0.001234 valid, 0.0012345 not (6 decimals at most)
        ("0.0012345", 0, "down", "0.001234"),
        # szDecimals 1: 0.01234 valid, 0.012345 not (6 - 1 = 5 decimals)
        ("0.012345", 1, "down", "0.01234"),
        # integer prices are always allowed: 123456 has 6 figures
        ("123456.7", 5, "down", "123456"),
        ("123456.7", 5, "up", "123457"),
        # BTC (szDecimals 5): e = 4, so 0 decimals: 97123.45 -> 97123
        ("97123.45", 5, "nearest", "97123"),
        # ETH (szDecimals 4): e = 3, min(1, 2) = 1 decimal
        ("3456.789", 4, "nearest", "3456.8"),
        # a sub-dollar coin with szDecimals 0: e = -1, min(5, 6) = 5 decimals
        ("0.5123456", 0, "up", "0.51235"),
    ],
)
def test_format_price_follows_the_documented_grid(price, sz_decimals, rounding, expected):
    assert format_price(price, sz_decimals, rounding) == Decimal(expected)


@given(
    price=st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("1e7"), places=9),
    sz_decimals=st.integers(min_value=0, max_value=5),
)
def test_format_price_down_is_the_largest_valid_price_not_above(price, sz_decimals):
    assume(price >= Decimal(1).scaleb(sz_decimals - 6))  # at least one grid step
    out = format_price(price, sz_decimals, "down")
    decimals = max(0, -out.normalize().as_tuple().exponent)  # type: ignore[operator]
    figures = len(out.normalize().as_tuple().digits) - max(0, out.normalize().as_tuple().exponent)  # type: ignore[operator]
    assert out <= price
    assert decimals <= 6 - sz_decimals
    assert out == out.to_integral_value() or figures <= 5
    step = Decimal(1).scaleb(-max(0, min(4 - price.adjusted(), 6 - sz_decimals)))
    assert price < out + step


def test_limit_price_caps_buys_below_and_floors_sells_above():
    # 97123.4 · 1.005 = 97609.017 -> down to 97609; 97123.4 · 0.995 = 96637.783 -> up to 96638
    assert limit_price(97123.4, True, 0.005, 5) == Decimal(97609)
    assert limit_price(97123.4, False, 0.005, 5) == Decimal(96638)
    with pytest.raises(InvalidInput, match=r"slippage must be in \[0, 1\)"):
        limit_price(100.0, True, 1.5, 2)


def test_format_size_rounds_toward_zero_to_sz_decimals():
    assert format_size(0.123456789, 5) == Decimal("0.12345")
    assert format_size(0.1 + 0.2, 1) == Decimal("0.3")  # 0.30000000000000004 is 0.3
    assert format_size(2, 0) == Decimal(2)
    with pytest.raises(InvalidInput, match="below the lot size 1e-5"):
        format_size(0.000001, 5)


# ------------------------------------------------------------------ answers


def test_parse_order_response_maps_the_documented_answers():
    resting = {
        "status": "ok",
        "response": {"type": "order", "data": {"statuses": [{"resting": {"oid": 77738308}}]}},
    }
    filled = {
        "status": "ok",
        "response": {
            "type": "order",
            "data": {
                "statuses": [{"filled": {"totalSz": "0.02", "avgPx": "1891.4", "oid": 77747314}}]
            },
        },
    }
    error = {
        "status": "ok",
        "response": {
            "type": "order",
            "data": {"statuses": [{"error": "Order must have minimum value of $10."}]},
        },
    }
    assert parse_order_response(CLOID, resting) == OrderState(CLOID, "resting", oid=77738308)
    assert parse_order_response(CLOID, filled) == OrderState(
        CLOID, "filled", filled=0.02, avg_price=1891.4, oid=77747314
    )
    assert parse_order_response(CLOID, error) == OrderState(
        CLOID, "rejected", reason="Order must have minimum value of $10."
    )
    top = {"status": "err", "response": "User or API Wallet 0x1 does not exist."}
    assert parse_order_response(CLOID, top).reason == "User or API Wallet 0x1 does not exist."


def test_parse_order_response_lost_or_duplicate_answers_are_unknown():
    with pytest.raises(OrderStateUnknown, match="state is unknown until looked up"):
        parse_order_response(CLOID, {"status": "ok", "response": {"type": "order"}})
    dup = {"status": "err", "response": "Duplicate cloid for user."}
    with pytest.raises(OrderStateUnknown) as info:
        parse_order_response(CLOID, dup)
    assert info.value.details["state"] == "unknown"
    assert info.value.client_id == CLOID


def _status(status, orig, left):
    order = {"coin": "BTC", "side": "B", "limitPx": "1", "sz": left, "origSz": orig, "oid": 9}
    return {"status": "order", "order": {"order": order, "status": status, "statusTimestamp": 1}}


def test_parse_order_status_maps_statuses():
    assert parse_order_status(CLOID, {"status": "unknownOid"}).status == "not_found"
    assert parse_order_status(CLOID, _status("open", "1.0", "0.4")) == OrderState(
        CLOID, "resting", filled=0.6, oid=9, reason="open"
    )
    assert parse_order_status(CLOID, _status("filled", "1.0", "0.0")).filled == 1.0
    rejected = parse_order_status(CLOID, _status("minTradeNtlRejected", "1.0", "1.0"))
    assert (rejected.status, rejected.reason) == ("rejected", "minTradeNtlRejected")
    # an IOC partly filled: 0.25 of 1.0 done, the rest canceled
    ioc = parse_order_status(CLOID, _status("canceled", "1.0", "0.75"))
    assert (ioc.status, ioc.filled) == ("canceled", 0.25)


def test_order_requires_a_cloid_of_32_lower_case_hex_digits():
    with pytest.raises(InvalidInput, match="client_id must be 0x followed by 32"):
        VenueOrder("0x12", "BTC/USDC:USDC", "buy", 1.0, 100.0, 0.01)


# ------------------------------------------------------------------ rate limits


def test_rate_limiter_waits_for_the_refill():
    # capacity 10 over 10 s: 1 weight per second. 4 + 6 fit; 2 more owe 2 s; after 2 s the
    # debt is paid and 1 more owes 1 s (hand-derived)
    now = [0.0]
    limiter = RateLimiter(capacity=10, period=10, clock=lambda: now[0])
    assert limiter.reserve(4) == 0.0
    assert limiter.reserve(6) == 0.0
    assert limiter.reserve(2) == pytest.approx(2.0)
    now[0] = 2.0
    assert limiter.reserve(1) == pytest.approx(1.0)


def test_documented_weights():
    assert exchange_weight(1) == 1
    assert exchange_weight(79) == 2  # the docs' example
    assert info_weight("orderStatus") == 2
    assert info_weight("userFillsByTime") == 20


# ------------------------------------------------------------------ keys


def test_secret_key_never_shows_itself():
    key = SecretKey(KEY)
    for text in (repr(key), str(key), f"{key}", f"{key!r}", "%s" % (key,)):  # noqa: UP031
        assert KEY[2:] not in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(key)
    assert key.reveal() == KEY


def test_bad_key_error_does_not_echo_the_value():
    bad = "0x" + "zz" * 32
    with pytest.raises(ConfigurationError, match="64 hex digits") as info:
        SecretKey(bad)
    assert "zz" not in str(info.value)
    assert info.value.value is None


def test_venue_repr_and_logs_do_not_contain_the_key(caplog):
    with caplog.at_level(logging.DEBUG):
        venue = HyperliquidVenue(SecretKey(KEY), base_url="http://127.0.0.1:1")
    assert KEY[2:] not in repr(venue)
    assert venue.address.startswith("0x")
    assert all(KEY[2:] not in r.getMessage() for r in caplog.records)
