from __future__ import annotations

import logging
import pickle
import time
from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from levalign.errors import ConfigurationError, InvalidInput, Rejected
from levalign.venues.base import Ack, Lookup, OrderRequest, OrderVenue
from levalign.venues.hyperliquid import (
    HyperliquidVenue,
    OrderStateUnknown,
    RateLimiter,
    SecretKey,
    credentials_from_env,
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
    assert parse_order_response(CLOID, resting) == Ack(CLOID, "resting", exchange_id="77738308")
    assert parse_order_response(CLOID, filled) == Ack(
        CLOID, "filled", exchange_id="77747314", filled="0.02", average_price="1891.4"
    )
    assert parse_order_response(CLOID, error) == Ack(
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
    assert parse_order_status(CLOID, {"status": "unknownOid"}) == Lookup(CLOID, "not_found")
    assert parse_order_status(CLOID, _status("open", "1.0", "0.4")) == Lookup(
        CLOID, "resting", exchange_id="9", reason="open"
    )
    assert parse_order_status(CLOID, _status("filled", "1.0", "0.0")).status == "filled"
    rejected = parse_order_status(CLOID, _status("minTradeNtlRejected", "1.0", "1.0"))
    assert (rejected.status, rejected.reason) == ("rejected", "minTradeNtlRejected")
    # an IOC's unfilled rest is canceled
    assert parse_order_status(CLOID, _status("canceled", "1.0", "0.75")).status == "canceled"
    assert parse_order_status(CLOID, _status("marginCanceled", "1.0", "1.0")).status == "canceled"


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


def test_credentials_come_from_the_environment_and_errors_never_show_a_key(monkeypatch):
    monkeypatch.setenv("LEVALIGN_TEST_KEY", KEY)
    assert credentials_from_env("env:LEVALIGN_TEST_KEY").reveal() == KEY
    monkeypatch.delenv("LEVALIGN_TEST_KEY")
    with pytest.raises(ConfigurationError, match=r"LEVALIGN_TEST_KEY .* is not set"):
        credentials_from_env("env:LEVALIGN_TEST_KEY")
    with pytest.raises(ConfigurationError, match="not of the form env:NAME"):
        credentials_from_env("file:/keys")
    monkeypatch.setenv("LEVALIGN_TEST_KEY", "0x" + "zz" * 32)
    with pytest.raises(ConfigurationError, match="64 hex digits") as info:
        credentials_from_env("env:LEVALIGN_TEST_KEY")
    assert "zz" not in str(info.value)


def test_venue_is_an_order_venue():
    venue = HyperliquidVenue("http://127.0.0.1:1")
    assert isinstance(venue, OrderVenue)
    assert repr(venue) == "HyperliquidVenue(base_url='http://127.0.0.1:1', accounts=0)"
    with pytest.raises(ConfigurationError, match="base_url must start with http"):
        HyperliquidVenue("127.0.0.1:1")


# ------------------------------------------------------------------ against the sandbox

sandbox_mod = pytest.importorskip("levalign.sandbox.hyperliquid")

FOLLOWER_KEY = "0x" + "31" * 32
AGENT_KEY = "0x" + "32" * 32
AGENT_REF = "env:LEVALIGN_TEST_AGENT_KEY"


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
def venue(sandbox, follower, monkeypatch) -> HyperliquidVenue:
    """The follower's account, traded by an API wallet (agent) as the copier does."""
    from eth_account import Account

    sandbox.approve_agent(follower, Account.from_key(AGENT_KEY).address)
    monkeypatch.setenv("LEVALIGN_TEST_AGENT_KEY", AGENT_KEY)
    return HyperliquidVenue(sandbox.base_url)


def request(
    follower: str,
    n: int,
    *,
    side: str = "buy",
    amount: str = "0.01",
    price_limit: str | None = "20200",
    reduce_only: bool = False,
    expires_in_ms: int = 60_000,
) -> OrderRequest:
    return OrderRequest(
        client_id=cloid(n),
        venue_client_id=cloid(n),
        account=follower,
        credentials_ref=AGENT_REF,
        symbol="BTC/USDC:USDC",
        side=side,  # type: ignore[arg-type]
        amount=amount,
        price_limit=price_limit,
        reduce_only=reduce_only,
        time_in_force="ioc",
        expires_at_ms=int(time.time() * 1000) + expires_in_ms,
    )


def test_ioc_open_fills_with_its_cloid_and_lookup_agrees(venue, sandbox, follower, caplog):
    # the guard's cap: 20000 · 1.01 = 20200, on BTC's grid (szDecimals 5: 0 decimals)
    assert venue.price_cap("BTC/USDC:USDC", 20000.0, "buy", 0.01) == "20200"
    order = request(follower, 1)
    with caplog.at_level(logging.DEBUG):
        ack = venue.submit(order)
    assert caplog.records  # the SDK logs the signed payload at DEBUG: never the key
    assert all(AGENT_KEY[2:] not in r.getMessage() for r in caplog.records)
    assert (ack.status, ack.filled) == ("filled", "0.01")
    assert venue.lookup(order).status == "filled"
    logged = sandbox.orders(cloid=cloid(1))
    assert len(logged) == 1
    assert logged[0]["px"] == "20200"
    assert logged[0]["order_type"] == {"limit": {"tif": "Ioc"}}
    assert venue.account(follower).positions == {"BTC/USDC:USDC": 0.01}


def test_a_lost_response_is_unknown_then_resolved_by_cloid_without_a_second_order(
    venue, sandbox, follower
):
    sandbox.inject("lose_response", path="/exchange")
    order = request(follower, 2)
    with pytest.raises(OrderStateUnknown, match="state is unknown until looked up") as info:
        venue.submit(order)
    assert info.value.details["state"] == "unknown"
    assert venue.lookup(order).status == "filled"
    assert len(sandbox.orders(cloid=cloid(2))) == 1


@pytest.mark.parametrize(("kind", "cause"), [("http_429", "429"), ("http_5xx", "HTTP 500")])
def test_429_and_5xx_are_unknown_and_the_order_was_never_placed(
    venue, sandbox, follower, kind, cause
):
    venue.sz_decimals("BTC/USDC:USDC")  # metadata first: the fault is for the order
    sandbox.inject(kind, path="/exchange")
    order = request(follower, 3)
    with pytest.raises(OrderStateUnknown, match=cause):
        venue.submit(order)
    assert venue.lookup(order).status == "not_found"
    assert sandbox.orders(cloid=cloid(3)) == []


def test_rejections_carry_the_exchange_reason(venue, follower):
    # 0.0001 BTC at 20000 is $2: below the $10 minimum
    small = venue.submit(request(follower, 4, amount="0.0001"))
    assert small.status == "rejected"
    assert small.reason is not None
    assert small.reason.startswith("Order must have minimum value of $10.")
    # the lead filled at 19000, the market is at 20000: a 1% cap (19190) cannot fill
    moved = venue.submit(request(follower, 5, price_limit="19190"))
    assert moved.status == "rejected"
    assert moved.reason is not None
    assert moved.reason.startswith("Order could not immediately match")


def test_an_expired_order_is_refused_so_not_found_is_final(venue, sandbox, follower):
    order = request(follower, 6, expires_in_ms=-1000)
    ack = venue.submit(order)
    assert ack.status == "rejected"
    assert ack.reason is not None
    assert ack.reason.startswith("Action expired")
    assert venue.lookup(order).status == "not_found"


def test_reduce_only_close_flattens_the_position(venue, follower):
    assert venue.submit(request(follower, 7, amount="0.02")).status == "filled"
    close = request(follower, 8, side="sell", amount="0.02", price_limit=None, reduce_only=True)
    assert venue.submit(close).status == "filled"  # no limit: the mid less 5 %
    assert venue.account(follower).positions == {}
    again = request(follower, 9, side="sell", amount="0.02", reduce_only=True)
    assert venue.submit(again).status == "rejected"


def test_an_order_below_the_lot_is_rejected_before_sending(venue, sandbox, follower):
    with pytest.raises(Rejected, match=r"amount 0\.000001 rounds to zero at 5 decimals"):
        venue.submit(request(follower, 10, amount="0.000001"))
    assert sandbox.orders() == []


def test_an_unreachable_base_url_names_the_field(follower):
    venue = HyperliquidVenue("http://127.0.0.1:9", timeout=2)
    with pytest.raises(ConfigurationError, match="check base_url") as info:
        venue.submit(request(follower, 11))
    assert info.value.field == "base_url"
