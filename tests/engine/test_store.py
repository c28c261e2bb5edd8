from __future__ import annotations

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, text

from levalign.engine.client_ids import cloid
from levalign.engine.outbox import (
    PRIORITY_OPEN,
    PRIORITY_REDUCE,
    Cursor,
    FillRecord,
    LeadEventRecord,
    OrderIntent,
)
from levalign.engine.store import Base, Store
from levalign.errors import InvalidInput, Retryable
from levalign.venues.base import Ack, Lookup
from tests.engine.conftest import PG_URL, followers


def _event(lead_id: int, i: int, symbol: str = "BTC/USDC:USDC") -> LeadEventRecord:
    return LeadEventRecord(
        id=f"hl:lead:{i}",
        lead_id=lead_id,
        kind="fill",
        payload={"i": i},
        created_ms=i,
        symbol=symbol,
    )


LEAD_CLOSES = {
    "event_id": "e",
    "symbol": "BTC/USDC:USDC",
    "price": 100_000.0,
    "lead_equity": 10_000.0,
    "lead_position_before": 1.0,
    "lead_position_after": 0.0,
}


def _intent(fid: str, leg: str = "open", *, reduce: bool = False) -> OrderIntent:
    return OrderIntent(
        follower_id=fid,
        leg=leg,
        symbol="BTC/USDC:USDC",
        side="sell" if reduce else "buy",
        amount="0.01",
        reduce_only=reduce,
        priority=PRIORITY_REDUCE if reduce else PRIORITY_OPEN,
        collateral=None if reduce else 50.0,
    )


@pytest.fixture
def lead(store: Store) -> int:
    lead_id = store.add_lead("hyperliquid", "0xlead")
    store.add_followers(lead_id, followers(4))
    return lead_id


def _count(store: Store, sql: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def test_migrations_match_models(store: Store):
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_upgrade_twice_is_a_no_op(store: Store):
    store.upgrade()
    assert _count(store, "SELECT count(*) FROM orders") == 0


def test_sqlite_connections_use_wal_and_full_sync(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'x.db'}")
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2  # 2 = FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 10_000
    s.close()


def test_bad_url_names_the_field():
    with pytest.raises(InvalidInput, match="supports sqlite and postgresql") as info:
        Store("mysql://u@h/db")
    assert info.value.field == "store.url"


def test_record_event_is_one_idempotent_transaction(store: Store, lead: int):
    ev = _event(lead, 1)
    intents = [_intent("f0", "close", reduce=True), _intent("f1"), _intent("f2")]
    assert store.record_event(ev, intents, Cursor(1000, 7), residuals={"f3": 0.004})
    assert not store.record_event(ev, intents, Cursor(1000, 7))  # the same event: no-op
    assert _count(store, "SELECT count(*) FROM orders") == 3
    assert _count(store, "SELECT count(*) FROM lead_events") == 1
    assert store.cursor(lead) == Cursor(1000, 7)
    row = store.order(cloid("hl:lead:1", "f1", "open"))
    assert row is not None
    assert (row["state"], row["amount"], row["collateral"]) == ("pending", "0.01", 50.0)
    f3 = store.follower("f3")
    assert f3 is not None
    assert f3["positions"]["BTC/USDC:USDC"]["residual"] == 0.004


def test_cursor_never_moves_back(store: Store, lead: int):
    store.record_event(_event(lead, 1), [], Cursor(2000, 5))
    store.record_event(_event(lead, 2), [], Cursor(1999, 9))  # older time
    assert store.cursor(lead) == Cursor(2000, 5)
    store.advance_cursor(lead, Cursor(2000, 6))  # same time, later tid
    assert store.cursor(lead) == Cursor(2000, 6)


def test_duplicate_leg_is_refused(store: Store, lead: int):
    with pytest.raises(InvalidInput, match="two orders with one"):
        store.record_event(_event(lead, 1), [_intent("f1"), _intent("f1")])
    assert not store.event_recorded("hl:lead:1")


def test_claim_sends_risk_reducing_orders_first(store: Store, lead: int):
    store.record_event(_event(lead, 1), [_intent("f1"), _intent("f2")])
    store.record_event(_event(lead, 2), [_intent("f3", "close", reduce=True)])
    first = store.claim(1, worker="a", expires_in_ms=10_000, now=100)
    # the close of the later event outranks the earlier event's opens
    assert [o.client_id for o in first] == [cloid("hl:lead:2", "f3", "close")]
    assert first[0].reduce_only
    assert first[0].expires_at_ms == 10_100
    assert first[0].credentials_ref == "env:FOLLOWER_3_KEY"
    rest = store.claim(10, worker="b", expires_in_ms=10_000, now=101)
    assert {o.client_id for o in rest} == {
        cloid("hl:lead:1", "f1", "open"),
        cloid("hl:lead:1", "f2", "open"),
    }
    assert store.claim(10, worker="c", expires_in_ms=10_000) == []
    b = store.backlog(now=200)
    assert (b.sent, b.pending_opening, b.pending_reducing) == (3, 0, 0)


def test_claim_accept_leaves_refused_orders_pending(store: Store, lead: int):
    store.record_event(_event(lead, 1), [_intent("f1"), _intent("f2")])
    got = store.claim(10, worker="a", expires_in_ms=1000, accept=lambda c: c.account.endswith("2"))
    assert [o.account for o in got] == [f"0x{2:040x}"]
    assert store.backlog().pending_opening == 1


def test_state_machine_allows_only_listed_transitions(store: Store, lead: int):
    store.record_event(_event(lead, 1), [_intent("f1")])
    cid = cloid("hl:lead:1", "f1", "open")
    with pytest.raises(InvalidInput, match="is pending; it cannot become filled"):
        store.record_ack(Ack(cid, "filled"))
    store.claim(1, worker="a", expires_in_ms=1000)
    assert store.record_ack(Ack(cid, "resting", exchange_id="77"))
    assert not store.record_ack(Ack(cid, "resting", exchange_id="77"))  # repeated report
    with pytest.raises(InvalidInput, match="is acknowledged; it cannot become rejected"):
        store.record_ack(Ack(cid, "rejected", reason="late"))
    assert store.record_update(cid, "filled")
    row = store.order(cid)
    assert row is not None
    assert (row["state"], row["exchange_id"]) == ("filled", "77")
    with pytest.raises(InvalidInput, match="no order with client id"):
        store.mark_unknown("0x" + "0" * 32, "timeout")


def test_unknown_is_resolved_by_lookup_only_after_expiry(store: Store, lead: int):
    store.record_event(_event(lead, 1), [_intent("f1"), _intent("f2")])
    a, b = store.claim(2, worker="w", expires_in_ms=1000, now=10_000)
    store.mark_unknown(a.client_id, "timeout", now=10_100)
    # sent at 10_000 with a 500 ms lease: at 10_600 b's sender is presumed dead
    assert store.expire_leases(500, now=10_600) == 1
    assert {o.client_id for o in store.unknown_orders()} == {a.client_id, b.client_id}
    # not found before the order's expiry (11_000): a delayed request may still land
    assert not store.resolve(Lookup(a.client_id, "not_found"), now=10_900)
    assert store.resolve(Lookup(a.client_id, "not_found"), now=11_001)
    assert store.resolve(Lookup(b.client_id, "filled", exchange_id="9"), now=11_001)
    row_a, row_b = store.order(a.client_id), store.order(b.client_id)
    assert row_a is not None
    assert row_b is not None
    assert (row_a["state"], row_b["state"]) == ("pending", "filled")
    again = store.claim(5, worker="w2", expires_in_ms=1000, now=12_000)
    assert [o.client_id for o in again] == [a.client_id]  # the same client id, sent again
    row_a = store.order(a.client_id)
    assert row_a is not None
    assert row_a["attempts"] == 2


def test_fills_update_state_once_per_trade_id(store: Store, lead: int):
    store.record_event(_event(lead, 1), [_intent("f1")])
    cid = cloid("hl:lead:1", "f1", "open")
    sym = "BTC/USDC:USDC"
    fills = [
        FillRecord("f1", "t1", sym, "buy", "0.006", "100000", 1, fee=0.5, client_id=cid),
        FillRecord("f1", "t2", sym, "buy", "0.004", "101000", 2, fee=0.25, client_id=cid),
    ]
    assert store.record_fills(fills) == 2
    assert store.record_fills(fills) == 0  # the same trade ids again: nothing changes
    f1 = store.follower("f1")
    assert f1 is not None
    pos = f1["positions"][sym]
    # entry = (0.006*100000 + 0.004*101000) / 0.01 = (600 + 404) / 0.01 = 100400
    assert pos["position"] == "0.01"
    assert pos["entry_price"] == pytest.approx(100_400.0, rel=1e-12)
    # collateral: the order posts 50 for 0.01: 50*0.6 + 50*0.4 = 50
    assert pos["collateral"] == pytest.approx(50.0, rel=1e-12)
    assert f1["equity"] == pytest.approx(1000.0 - 0.75, rel=1e-12)
    # sell 0.004 of 0.01: a reduction keeps the entry and releases 40% of the collateral
    store.record_fills([FillRecord("f1", "t3", sym, "sell", "0.004", "102000", 3, closed_pnl=6.4)])
    f1 = store.follower("f1")
    assert f1 is not None
    pos = f1["positions"][sym]
    assert pos["position"] == "0.006"
    assert pos["entry_price"] == pytest.approx(100_400.0, rel=1e-12)
    assert pos["collateral"] == pytest.approx(30.0, rel=1e-12)
    assert f1["equity"] == pytest.approx(1000.0 - 0.75 + 6.4, rel=1e-12)
    # sell 0.01: closes 0.006 and flips to -0.004 at the fill price
    store.record_fills([FillRecord("f1", "t4", sym, "sell", "0.01", "99000", 4)])
    f1 = store.follower("f1")
    assert f1 is not None
    pos = f1["positions"][sym]
    assert (pos["position"], pos["entry_price"], pos["collateral"]) == ("-0.004", 99000.0, 0.0)


def test_cohort_table_sizes_the_next_event_on_store_state(store: Store, lead: int, hyperliquid):
    from levalign import normalize

    sym = "BTC/USDC:USDC"
    store.record_fills([FillRecord("f1", "t1", sym, "buy", "0.01", "100000", 1)])
    store.set_status("f3", "paused", "asked by the follower")
    cols = store.cohort_table(lead, sym)
    assert list(cols["id"]) == ["f0", "f1", "f2"]  # f3 is paused
    assert list(cols["position"]) == [0.0, 0.01, 0.0]
    # the lead closes: only f1, which holds 0.01 in the store, sells, and exactly 0.01
    event = LEAD_CLOSES
    result = normalize(event, cols, hyperliquid)
    assert list(result["side"]) == [0, -1, 0]
    assert result["amount"][1] == 0.01


def test_followers_refuse_a_key_in_place_of_a_reference(store: Store, lead: int):
    bad = {**followers(1)[0], "id": "x", "credentials_ref": "0x" + "ab" * 32}
    with pytest.raises(InvalidInput, match="never the key itself") as info:
        store.add_followers(lead, [bad])
    assert "ab" * 32 not in info.value.message
    with pytest.raises(InvalidInput, match="unknown field"):
        store.add_followers(lead, [{**followers(1)[0], "id": "y", "levrage": 3}])


def test_concurrent_claims_take_disjoint_orders(store: Store, lead: int):
    store.add_followers(lead, [{**r, "id": f"g{i}"} for i, r in enumerate(followers(40))])
    store.record_event(_event(lead, 1), [_intent(f"g{i}") for i in range(40)])
    results: list[list[str]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            while batch := store.claim(3, worker=f"w{k}", expires_in_ms=1000):
                results[k].extend(o.client_id for o in batch)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    claimed = [c for r in results for c in r]
    assert len(claimed) == len(set(claimed)) == 40


def _kill_on(store: Store, admin: Engine, marker: str) -> list[int]:
    """Terminate the store's own backend when it is about to run a statement containing
    ``marker`` (a real killed connection, at a chosen point of the transaction)."""
    killed: list[int] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def _kill(conn, cursor, statement, params, context, executemany):
        if marker in statement and not killed:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            with admin.begin() as a:
                a.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            killed.append(pid)

    return killed


@pytest.mark.parametrize("marker", ["INSERT INTO lead_events", "INSERT INTO source_cursors"])
def test_postgres_connection_killed_mid_write_is_retryable_and_loses_nothing(
    pg_schema: str, marker: str
):
    from tests.engine.conftest import pg_schema_url

    store = Store(pg_schema_url(pg_schema))
    store.upgrade()
    lead = store.add_lead("hyperliquid", "0xlead")
    store.add_followers(lead, followers(3))
    admin = create_engine(PG_URL)
    killed = _kill_on(store, admin, marker)
    ev = _event(lead, 1)
    intents = [_intent("f0"), _intent("f1"), _intent("f2")]
    with pytest.raises(Retryable, match="retrying the same call is safe") as info:
        store.record_event(ev, intents, Cursor(5, 5))
    assert killed
    assert info.value.field == "store.url"
    # nothing of the event committed
    assert not store.event_recorded(ev.id)
    assert _count(store, "SELECT count(*) FROM orders") == 0
    assert store.cursor(lead) is None
    # the retry after reconnecting commits all of it, once
    assert store.record_event(ev, intents, Cursor(5, 5))
    assert not store.record_event(ev, intents, Cursor(5, 5))
    assert _count(store, "SELECT count(*) FROM orders") == 3
    assert store.cursor(lead) == Cursor(5, 5)
    store.close()
    admin.dispose()


def test_cli_db_upgrade_creates_the_schema_and_reports_errors_by_exit_code(store_url: str):
    from typer.testing import CliRunner

    from levalign.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["db", "upgrade", "--url", store_url])
    assert result.exit_code == 0, result.output
    assert '"schema": "up to date"' in result.stdout
    with Store(store_url) as s:
        assert _count(s, "SELECT count(*) FROM alembic_version") == 1
    bad = runner.invoke(app, ["db", "upgrade", "--url", "mysql://u@h/db"])
    assert bad.exit_code == 2  # InvalidInput
    assert "supports sqlite and postgresql" in bad.stderr


def test_kill_9_mid_write_leaves_whole_events_only(store: Store, store_url: str):
    import signal
    import subprocess
    import sys

    from tests.engine._writer import ORDERS_PER_EVENT

    lead = store.add_lead("hyperliquid", "0xlead")
    store.add_followers(lead, followers(ORDERS_PER_EVENT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.engine._writer", store_url],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for _ in range(5):  # let it commit a few events, then kill it wherever it is
            proc.stdout.readline()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    events = _count(store, "SELECT count(*) FROM lead_events")
    assert events >= 5
    # every stored event has all its orders, and the cursor is the last stored event's
    assert _count(store, "SELECT count(*) FROM orders") == events * ORDERS_PER_EVENT
    assert store.cursor(lead) == Cursor(events - 1, events - 1)
    f0 = store.follower("f0")
    assert f0 is not None
    assert f0["positions"]["BTC"]["residual"] == float(events - 1)
    # the writer restarted picks up where the store is, with no duplicate
    assert not store.record_event(
        LeadEventRecord("ev0", lead, "fill", {"k": 0}, created_ms=0, symbol="BTC"), []
    )


def test_sqlite_reads_do_not_wait_for_a_writer(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'r.db'}")
    s.upgrade()
    lead = s.add_lead("hyperliquid", "0xlead")
    s.add_followers(lead, followers(2))
    with s.engine.begin() as writer:  # holds the write lock (BEGIN IMMEDIATE)
        writer.execute(text("UPDATE followers SET equity = 5 WHERE id = 'f0'"))
        # a reader sees the last commit at once instead of waiting out the busy timeout
        f0 = s.follower("f0")
        assert f0 is not None
        assert f0["equity"] == 1000.0
        assert s.backlog().sent == 0
    f0 = s.follower("f0")
    assert f0 is not None
    assert f0["equity"] == 5.0
    s.close()


def test_follower_states_refresh_a_cohort_in_place(store: Store, lead: int, hyperliquid):
    from levalign.normalize import Cohort, normalize

    sym = "BTC/USDC:USDC"
    cohort = Cohort.from_table(store.cohort_table(lead, sym))
    store.record_fills([FillRecord("f2", "t1", sym, "buy", "0.02", "100000", 1, fee=1.0)])
    states = store.follower_states(["f2"], sym)
    assert list(states["id"]) == ["f2"]
    cohort.update(
        states["id"],
        position=states["position"],
        entry_price=states["entry_price"],
        equity=states["equity"],
        collateral=states["collateral"],
        residual=states["residual"],
    )
    # the lead closes: f2 sells exactly the 0.02 the store holds; equity 1000 - fee 1
    event = LEAD_CLOSES
    result = normalize(event, cohort, hyperliquid)
    row = list(result["id"]).index("f2")
    assert (result["side"][row], result["amount"][row]) == (-1, 0.02)
    assert states["equity"][0] == 999.0
