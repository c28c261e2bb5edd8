from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from levalign.engine.client_ids import cloid
from levalign.engine.dispatcher import (
    Dispatcher,
    RateLimiter,
    RateLimits,
    TokenBucket,
    exchange_weight,
)
from levalign.engine.outbox import PRIORITY_OPEN, PRIORITY_REDUCE, LeadEventRecord, OrderIntent
from levalign.engine.store import Candidate, Store
from levalign.errors import Rejected, Retryable
from levalign.venues.base import OrderVenue
from tests.engine._venue import MemoryVenue
from tests.engine.conftest import followers


class Clock:
    """A simulated clock in epoch ms (the dispatcher reads it; tests move it)."""

    def __init__(self) -> None:
        self.t = 1_000_000

    def __call__(self) -> int:
        return self.t


def _intents(k: int, n: int) -> list[OrderIntent]:
    # event k: follower 0 reduces, the others open
    return [
        OrderIntent(
            follower_id=f"f{i}",
            leg="reduce" if i == 0 else "open",
            symbol="ETH/USDC:USDC",
            side="sell" if i == 0 else "buy",
            amount=f"0.{k + 1}",
            reduce_only=i == 0,
            priority=PRIORITY_REDUCE if i == 0 else PRIORITY_OPEN,
        )
        for i in range(n)
    ]


def _event(lead: int, k: int) -> LeadEventRecord:
    return LeadEventRecord(f"ev{k}", lead, "fill", {"k": k}, created_ms=k)


def test_memory_venue_is_an_order_venue():
    assert isinstance(MemoryVenue(), OrderVenue)


def test_exchange_weight_matches_the_documented_examples():
    # Hyperliquid: "unbatched actions have weight 1 and a batched order request of length 79
    # has weight 2"; 80 orders: 1 + floor(80/40) = 3
    assert [exchange_weight(n) for n in (1, 39, 40, 79, 80)] == [1, 1, 2, 2, 3]


def test_token_bucket_refills_at_its_rate():
    b = TokenBucket(1200, 20.0, now=0.0)  # 1200 per minute = 20 per second
    assert b.take(1200, 0.0)
    assert not b.take(1, 0.0)
    assert b.wait(10, 0.0) == pytest.approx(0.5)  # 10 tokens at 20/s
    assert b.take(10, 0.5)
    assert not b.take(1, 0.5)


def test_rate_limiter_throttles_an_address_past_its_allowance():
    now = [0.0]
    limiter = RateLimiter(RateLimits(address_initial_actions=2), clock=lambda: now[0])
    c = Candidate("0x" + "0" * 32, "0xabc", 1, False)
    assert [limiter.accept(c) for _ in range(4)] == [True, True, True, False]
    # the third went on the throttled pace (one per 10 s); after 10 s one more goes
    now[0] = 10.0
    assert limiter.accept(c)
    limiter.credit_volume("0xabc", 5.0)  # 5 USDC traded: 5 more actions
    assert sum(limiter.accept(c) for _ in range(6)) == 5


def test_rate_limiter_ip_budget_is_shared_across_addresses():
    limiter = RateLimiter(RateLimits(ip_weight_per_minute=3), clock=lambda: 0.0)
    got = [limiter.accept(Candidate("0x" + "0" * 32, f"0x{i}", 1, False)) for i in range(5)]
    assert got == [True, True, True, False, False]


@pytest.fixture
def lead(store: Store) -> int:
    lead_id = store.add_lead("hyperliquid", "0xlead")
    store.add_followers(lead_id, followers(3))
    return lead_id


def test_dispatch_sends_closes_first_and_reports_the_backlog(store: Store, lead: int):
    clock = Clock()
    venue = MemoryVenue(now_ms=clock.t)
    store.record_event(_event(lead, 0), _intents(0, 3))
    limiter = RateLimiter(RateLimits(ip_weight_per_minute=1), clock=lambda: 0.0)
    d = Dispatcher(store, venue, worker="d", limiter=limiter, clock_ms=clock)
    report = d.dispatch_once()
    assert report.claimed == 1
    assert list(venue.submissions) == [cloid("ev0", "f0", "reduce")]
    backlog = d.backlog()
    assert (backlog.pending_reducing, backlog.pending_opening) == (0, 2)


def test_rejections_and_lost_responses(store: Store, lead: int):
    clock = Clock()
    venue = MemoryVenue(now_ms=clock.t)
    store.record_event(_event(lead, 0), _intents(0, 3))
    c0, c1, c2 = (cloid("ev0", f"f{i}", "reduce" if i == 0 else "open") for i in range(3))
    venue.reject[c1] = "Order must have minimum value of $10."
    venue.lose_response.add(c2)
    d = Dispatcher(store, venue, worker="d", clock_ms=clock)
    report = d.dispatch_once()
    assert (report.filled, report.rejected, report.unknown) == (1, 1, 1)
    rejected = store.order(c1)
    assert rejected is not None
    assert rejected["reason"] == "Order must have minimum value of $10."
    assert d.resolve_unknown() == 1  # found at the venue: filled, not resent
    assert venue.submissions[c2] == 1
    filled = store.order(c2)
    assert filled is not None
    assert filled["state"] == "filled"
    assert c0 in venue.accepted


class RejectingVenue(MemoryVenue):
    def submit(self, order):
        raise Rejected("Insufficient margin to place order.", field="amount")


def test_a_venue_raising_rejected_is_recorded_as_rejected(store: Store, lead: int):
    store.record_event(_event(lead, 0), _intents(0, 1))
    d = Dispatcher(store, RejectingVenue(), worker="d")
    assert d.dispatch_once().rejected == 1
    row = store.order(cloid("ev0", "f0", "reduce"))
    assert row is not None
    assert (row["state"], row["reason"]) == ("rejected", "Insufficient margin to place order.")


# ------------------------------------------------------------------ exactly once, any order

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("record"), st.integers(0, 2)),
        st.tuples(st.just("dispatch"), st.integers(0, 1)),
        st.tuples(st.just("claim_then_crash"), st.integers(0, 1)),
        st.tuples(st.just("send_then_crash"), st.integers(0, 1)),
        st.tuples(st.sampled_from(["lose_request", "lose_response"]), st.integers(0, 8)),
        st.tuples(st.just("tick"), st.sampled_from([1, 5_000, 40_000])),
        st.tuples(st.just("resolve"), st.integers(0, 1)),
    ),
    max_size=25,
)
_ALL_IDS = [
    cloid(f"ev{k}", f"f{i}", "reduce" if i == 0 else "open") for k in range(3) for i in range(3)
]


def _reset(store: Store) -> int:
    with store.engine.begin() as conn:
        for table in ("fills", "orders", "positions", "lead_events", "source_cursors"):
            conn.execute(text(f"DELETE FROM {table}"))
    return store.add_lead("hyperliquid", "0xlead")


def _run_ops(store: Store, ops: list[tuple[str, int]]) -> None:
    lead = _reset(store)
    store.add_followers(lead, followers(3))
    clock = Clock()
    venue = MemoryVenue()
    ds = [
        Dispatcher(
            store,
            venue,
            worker=f"d{k}",
            batch=2,
            expires_in_ms=10_000,
            lease_ms=20_000,
            clock_ms=clock,
        )
        for k in range(2)
    ]

    def step(op: str, arg: int) -> None:
        venue.now_ms = clock.t
        if op == "record":
            store.record_event(_event(lead, arg), _intents(arg, 3))
        elif op == "dispatch":
            ds[arg].dispatch_once()
        elif op == "claim_then_crash":  # claimed, the process died before sending
            store.claim(2, worker=f"d{arg}", expires_in_ms=10_000, now=clock.t)
        elif op == "send_then_crash":  # sent, the process died before recording the answer
            for order in store.claim(1, worker=f"d{arg}", expires_in_ms=10_000, now=clock.t):
                with contextlib.suppress(Retryable):  # its answer is lost with the process
                    venue.submit(order)
        elif op == "lose_request":
            venue.lose_request.add(_ALL_IDS[arg])
        elif op == "lose_response":
            venue.lose_response.add(_ALL_IDS[arg])
        elif op == "tick":
            clock.t += arg
        else:
            ds[arg].resolve_unknown()

    for op, arg in ops:
        step(op, arg)
        assert max(venue.submissions.values(), default=0) <= 1
    # then everything settles: every recorded order reaches the venue exactly once
    venue.lose_request.clear()
    venue.lose_response.clear()
    for _ in range(8):
        step("tick", 40_000)
        step("resolve", 0)
        step("dispatch", 0)
        step("dispatch", 0)
    with store.engine.connect() as conn:
        recorded = set(conn.execute(text("SELECT client_id FROM orders")).scalars())
        states = set(conn.execute(text("SELECT DISTINCT state FROM orders")).scalars())
    assert set(venue.submissions) == recorded
    assert set(venue.submissions.values()) <= {1}
    assert states <= {"filled"}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_no_interleaving_sends_a_client_id_twice(backend: str, request: pytest.FixtureRequest):
    if backend == "sqlite":
        tmp = Path(tempfile.mkdtemp())
        url = f"sqlite:///{tmp / 'p.db'}"
    else:
        from tests.engine.conftest import pg_schema_url

        url = pg_schema_url(request.getfixturevalue("pg_schema"))
    store = Store(url)
    store.upgrade()

    # PostgreSQL examples take longer: fewer of them (the SQLite run takes the profile's count)
    @settings(max_examples=20) if backend == "postgresql" else (lambda f: f)
    @given(_OPS)
    def prop(ops: list[tuple[str, int]]) -> None:
        _run_ops(store, ops)

    try:
        prop()
    finally:
        store.close()


def test_a_dispatcher_for_one_lead_sends_only_its_followers_orders(store: Store, lead: int):
    other = store.add_lead("hyperliquid", "0xother")
    store.add_followers(other, [{**r, "id": f"g{i}"} for i, r in enumerate(followers(1))])
    store.record_event(_event(lead, 0), _intents(0, 1))
    mine = OrderIntent("g0", "open", "ETH/USDC:USDC", "buy", "0.1", False, PRIORITY_OPEN)
    store.record_event(LeadEventRecord("other0", other, "fill", {}, created_ms=0), [mine])
    venue = MemoryVenue(now_ms=Clock().t)
    d = Dispatcher(store, venue, worker="d", clock_ms=Clock(), lead_id=other)
    assert d.dispatch_once().claimed == 1
    assert list(venue.submissions) == [cloid("other0", "g0", "open")]
    assert store.backlog().pending_reducing == 1  # the first lead's order waits for its own
    assert d.backlog().pending_reducing == 0  # not in this dispatcher's backlog
    assert store.backlog(lead_id=lead).pending_reducing == 1
