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
    with pytest.raises(InvalidInput, match="amount 1e-06 rounds to zero at 5 decimals"):
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


# ------------------------------------------------------------------ against the sandbox

sandbox_mod = pytest.importorskip("levalign.sandbox.hyperliquid")

FOLLOWER_KEY = "0x" + "31" * 32
AGENT_KEY = "0x" + "32" * 32


def cloid(n: int) -> str:
    return f"0x{n:032x}"


@pytest.fixture
def follower() -> str:
    from eth_account import Account

    return str(Account.from_key(FOLLOWER_KEY).address)


@pytest.fixture
def sandbox(follower):
    config = sandbox_mod.SandboxConfig(fund={follower: 1000}, mids={"BTC": "20000"})
    with sandbox_mod.HyperliquidSandbox(config) as sb:
        yield sb


@pytest.fixture
def venue(sandbox, follower) -> HyperliquidVenue:
    """The follower's account, traded by an API wallet (agent) as the copier does."""
    from eth_account import Account

    sandbox.approve_agent(follower, Account.from_key(AGENT_KEY).address)
    return HyperliquidVenue(
        SecretKey(AGENT_KEY), base_url=sandbox.base_url, account_address=follower
    )


def buy(n: int, amount: float = 0.01, price: float = 20000.0, slippage: float = 0.01):
    return VenueOrder(cloid(n), "BTC/USDC:USDC", "buy", amount, price, slippage)


def test_ioc_open_fills_with_its_cloid_and_lookup_agrees(venue, sandbox, caplog):
    with caplog.at_level(logging.DEBUG):
        state = venue.submit(buy(1))
    assert caplog.records  # the SDK logs the signed payload at DEBUG: never the key
    assert all(AGENT_KEY[2:] not in r.getMessage() for r in caplog.records)
    assert state.status == "filled"
    assert state.filled == 0.01
    assert venue.lookup(cloid(1)).status == "filled"
    logged = sandbox.orders(cloid=cloid(1))
    assert len(logged) == 1
    # the cap: 20000 · 1.01 = 20200, on BTC's grid (szDecimals 5: 0 decimals) -> "20200"
    assert logged[0]["px"] == "20200"
    assert logged[0]["order_type"] == {"limit": {"tif": "Ioc"}}
    assert venue.account().positions == {"BTC/USDC:USDC": 0.01}


def test_a_lost_response_is_unknown_then_resolved_by_cloid_without_a_second_order(venue, sandbox):
    sandbox.inject("lose_response", path="/exchange")
    with pytest.raises(OrderStateUnknown, match="state is unknown until looked up") as info:
        venue.submit(buy(2))
    assert info.value.details["state"] == "unknown"
    assert venue.lookup(cloid(2)).status == "filled"
    assert len(sandbox.orders(cloid=cloid(2))) == 1


@pytest.mark.parametrize(("kind", "cause"), [("http_429", "429"), ("http_5xx", "HTTP 500")])
def test_429_and_5xx_are_unknown_and_the_order_was_never_placed(venue, sandbox, kind, cause):
    sandbox.inject(kind, path="/exchange")
    with pytest.raises(OrderStateUnknown, match=cause):
        venue.submit(buy(3))
    assert venue.lookup(cloid(3)).status == "not_found"
    assert sandbox.orders(cloid=cloid(3)) == []


def test_rejections_carry_the_exchange_reason(venue):
    # 0.0001 BTC at 20000 is $2: below the $10 minimum
    small = venue.submit(buy(4, amount=0.0001))
    assert small.status == "rejected"
    assert small.reason is not None
    assert small.reason.startswith("Order must have minimum value of $10.")
    # the lead filled at 19000, the market is at 20000: a 1% cap (19190) cannot fill
    moved = venue.submit(buy(5, price=19000.0))
    assert moved.status == "rejected"
    assert moved.reason is not None
    assert moved.reason.startswith("Order could not immediately match")


def test_reduce_only_close_flattens_the_position(venue):
    assert venue.submit(buy(6, amount=0.02)).status == "filled"
    close = VenueOrder(cloid(7), "BTC/USDC:USDC", "sell", 0.02, 20000.0, 0.05, reduce_only=True)
    assert venue.submit(close).status == "filled"
    assert venue.account().positions == {}
    again = VenueOrder(cloid(8), "BTC/USDC:USDC", "sell", 0.02, 20000.0, 0.05, reduce_only=True)
    assert venue.submit(again).status == "rejected"


def test_an_unreachable_base_url_names_the_field(follower):
    venue = HyperliquidVenue(SecretKey(FOLLOWER_KEY), base_url="http://127.0.0.1:9", timeout=2)
    with pytest.raises(ConfigurationError, match="check base_url") as info:
        venue.submit(buy(9))
    assert info.value.field == "base_url"
