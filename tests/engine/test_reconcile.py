from __future__ import annotations

import time
from decimal import Decimal

import pytest

from levalign.engine.client_ids import cloid
from levalign.engine.dispatcher import Dispatcher
from levalign.engine.outbox import FillRecord, FollowerBook, OrderIntent
from levalign.engine.reconcile import Drift, Orphan, event_id, plan, reconcile
from levalign.engine.store import Store
from levalign.errors import InvalidInput

BTC = "BTC/USDC:USDC"
ETH = "ETH/USDC:USDC"
STEPS = {BTC: 0.001, ETH: 0.01}


def book(fid: str, status: str = "active", in_flight: frozenset[str] = frozenset(), **pos: str):
    positions = {(BTC if k == "btc" else ETH): Decimal(v) for k, v in pos.items()}
    return FollowerBook(fid, f"0x{fid}", status, positions, in_flight)


def run(books, actual, *, band=0.01, unfollow="close"):
    return plan("r1", books, actual, band=band, unfollow=unfollow, steps=STEPS)


def test_drift_inside_the_band_gives_nothing_and_is_reported():
    # |0.1005 - 0.1| = 0.0005 <= max(0.01 · 0.1, 0.001 / 2) = 0.001
    r = run([book("f1", btc="0.1")], {"f1": {BTC: 0.1005}})
    assert r.intents == []
    assert r.report.within_band == [Drift("f1", BTC, 0.1, 0.1005)]
    assert r.report.corrected == []
    assert r.report.orphans == []


def test_equal_positions_report_nothing():
    r = run([book("f1", btc="0.1")], {"f1": {BTC: 0.1}})
    assert (r.intents, r.report.within_band) == ([], [])


def test_more_on_the_venue_is_reduced_by_the_exact_lot_difference():
    # 0.13 - 0.1 = 0.03 > 0.001: sell 0.03 reduce-only
    r = run([book("f1", btc="0.1")], {"f1": {BTC: 0.13}})
    assert r.intents == [
        OrderIntent("f1", "reduce:" + BTC, BTC, "sell", "0.03", reduce_only=True, priority=0)
    ]
    assert r.report.corrected == [Drift("f1", BTC, 0.1, 0.13)]


def test_less_on_the_venue_is_opened_by_the_difference_short_side_too():
    # short: stored -0.1, venue -0.08: sell 0.02 more (an open)
    r = run([book("f1", btc="-0.1")], {"f1": {BTC: -0.08}})
    assert r.intents == [
        OrderIntent("f1", "open:" + BTC, BTC, "sell", "0.02", reduce_only=False, priority=1)
    ]


def test_a_stored_position_missing_on_the_venue_is_opened():
    r = run([book("f1", eth="1.5")], {"f1": {}})
    assert [(o.side, o.amount, o.reduce_only) for o in r.intents] == [("buy", "1.5", False)]


def test_opposite_sides_close_then_open():
    # stored +0.1, venue -0.05: buy 0.05 reduce-only, then buy 0.1
    r = run([book("f1", btc="0.1")], {"f1": {BTC: -0.05}})
    assert [(o.leg, o.side, o.amount, o.reduce_only) for o in r.intents] == [
        ("close:" + BTC, "buy", "0.05", True),
        ("open:" + BTC, "buy", "0.1", False),
    ]


@pytest.mark.parametrize("status", ["unfollowed", "stopped"])
def test_orphans_of_an_unfollowed_follower_close_or_are_kept(status):
    books = [book("f1", status=status, btc="0.2")]
    closed = run(books, {"f1": {BTC: -0.5}}, unfollow="close")
    assert [(o.side, o.amount, o.reduce_only) for o in closed.intents] == [("buy", "0.5", True)]
    assert closed.report.orphans == [Orphan("f1", BTC, -0.5, f"follower {status}", "close")]
    kept = run(books, {"f1": {BTC: -0.5}}, unfollow="keep")
    assert kept.intents == []
    assert kept.report.orphans == [Orphan("f1", BTC, -0.5, f"follower {status}", "keep")]


def test_a_position_the_store_does_not_know_is_an_orphan():
    r = run([book("f1", btc="0.1")], {"f1": {BTC: 0.1, ETH: 2.0}}, unfollow="close")
    assert r.report.orphans == [Orphan("f1", ETH, 2.0, "unknown to the store", "close")]
    assert [(o.symbol, o.side, o.amount, o.reduce_only) for o in r.intents] == [
        (ETH, "sell", "2", True)
    ]


def test_symbols_with_orders_in_flight_are_left_alone():
    r = run([book("f1", in_flight=frozenset({BTC}), btc="0.1")], {"f1": {BTC: 0.5}})
    assert r.intents == []
    assert r.report.in_flight == [("f1", BTC)]


def test_a_follower_whose_account_was_not_read_is_skipped():
    assert run([book("f1", btc="0.1")], {}).intents == []


def test_client_ids_derive_from_run_follower_and_symbol():
    r = run([book("f1", btc="0.1"), book("f2", btc="0.1")], {"f1": {BTC: 0.2}, "f2": {BTC: 0.2}})
    ids = [o.client_id(event_id("r1")) for o in r.intents]
    assert ids == [
        cloid("reconcile:r1", "f1", "reduce:" + BTC),
        cloid("reconcile:r1", "f2", "reduce:" + BTC),
    ]
    again = run(
        [book("f1", btc="0.1"), book("f2", btc="0.1")], {"f1": {BTC: 0.2}, "f2": {BTC: 0.2}}
    )
    assert [o.client_id(event_id("r1")) for o in again.intents] == ids


def test_bad_rules_are_refused_by_name():
    with pytest.raises(InvalidInput, match="reconciliation band must be a finite fraction"):
        run([], {}, band=-0.1)
    with pytest.raises(InvalidInput, match="unfollow policy must be close or keep"):
        run([], {}, unfollow="sell")
    with pytest.raises(InvalidInput, match="no lot size for 'XRP/USDC:USDC'"):
        plan("r", [book("f1")], {"f1": {"XRP/USDC:USDC": 1.0}}, band=0, unfollow="keep", steps={})


# ------------------------------------------------------------- store + sandbox

sandbox_mod = pytest.importorskip("levalign.sandbox.hyperliquid")

FOLLOWER_KEY = "0x" + "41" * 32
AGENT_KEY = "0x" + "42" * 32
AGENT_REF = "env:LEVALIGN_RECONCILE_AGENT_KEY"


@pytest.fixture
def live(store: Store, monkeypatch):
    from eth_account import Account

    from levalign.venues.hyperliquid import HyperliquidVenue

    address = str(Account.from_key(FOLLOWER_KEY).address)
    config = sandbox_mod.SandboxConfig(fund={address: 1000}, mids={"BTC": "20000"})
    with sandbox_mod.HyperliquidSandbox(config) as sb:
        sb.approve_agent(address, Account.from_key(AGENT_KEY).address)
        monkeypatch.setenv("LEVALIGN_RECONCILE_AGENT_KEY", AGENT_KEY)
        lead = store.add_lead("hyperliquid", "0xlead")
        store.add_followers(
            lead,
            [{"id": "f1", "address": address, "credentials_ref": AGENT_REF, "equity": 1000.0}],
        )
        yield sb, HyperliquidVenue(sb.base_url), lead, address


def _buy(store: Store, venue, lead: int, name: str, amount: str) -> None:
    order = OrderIntent("f1", "open", BTC, "buy", amount, False, 1, price_limit="20200")
    from levalign.engine.outbox import LeadEventRecord

    store.record_event(LeadEventRecord(name, lead, "fill", {}, 0), [order])
    Dispatcher(store, venue, worker="setup").dispatch_once()


def test_reconcile_corrects_the_venue_once_through_the_outbox(store, live):
    sandbox, venue, lead, address = live
    # the venue holds 0.003 BTC; the store says 0.002 (one fill of 0.002 recorded)
    _buy(store, venue, lead, "setup", "0.003")
    store.record_fills([FillRecord("f1", "t1", BTC, "buy", "0.002", "20000", 0)])
    assert venue.account(address).positions == {BTC: 0.003}

    # 0.003 - 0.002 = 0.001 > max(0.01 · 0.002, 0.00001 / 2): sell 0.001 reduce-only
    first = reconcile(store, venue, lead, "r1", band=0.01, unfollow="close", now_ms=1)
    assert first.recorded
    assert [(o.side, o.amount, o.reduce_only) for o in first.intents] == [("sell", "0.001", True)]
    again = reconcile(store, venue, lead, "r1", band=0.01, unfollow="close", now_ms=2)
    assert not again.recorded  # the same run: the same client id, no second order
    # another run while r1's order is pending leaves the symbol alone
    other = reconcile(store, venue, lead, "r2", band=0.01, unfollow="close", now_ms=3)
    assert other.intents == []
    assert other.report.in_flight == [("f1", BTC)]

    Dispatcher(store, venue, worker="d").dispatch_once()
    client_id = cloid("reconcile:r1", "f1", "reduce:" + BTC)
    logged = sandbox.orders(cloid=client_id)
    assert len(logged) == 1
    deadline = time.monotonic() + 30
    while venue.account(address).positions != {BTC: 0.002} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert venue.account(address).positions == {BTC: 0.002}
    row = store.order(client_id)
    assert row is not None
    assert row["state"] == "filled"

    clean = reconcile(store, venue, lead, "r3", band=0.01, unfollow="close", now_ms=4)
    assert clean.intents == []
    assert clean.report.corrected == []
    assert clean.report.orphans == []


def test_an_unfollowed_followers_position_is_closed_or_kept(store, live):
    _sandbox, venue, lead, address = live
    _buy(store, venue, lead, "setup", "0.002")
    store.set_status("f1", "unfollowed", "asked to")
    kept = reconcile(store, venue, lead, "k1", band=0.01, unfollow="keep", now_ms=1)
    assert kept.intents == []
    assert not kept.recorded
    assert kept.report.orphans == [Orphan("f1", BTC, 0.002, "follower unfollowed", "keep")]
    closed = reconcile(store, venue, lead, "c1", band=0.01, unfollow="close", now_ms=2)
    assert [(o.side, o.amount, o.reduce_only) for o in closed.intents] == [("sell", "0.002", True)]
    Dispatcher(store, venue, worker="d").dispatch_once()
    assert venue.account(address).positions == {}
