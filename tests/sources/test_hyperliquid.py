from __future__ import annotations

import asyncio
import random
import time
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest

from levalign.errors import ConfigurationError, InvalidInput
from levalign.sources.base import (
    Backoff,
    CursorStore,
    FileCursorStore,
    LeadState,
    MemoryCursorStore,
    SourceEvent,
    SourceGap,
)
from levalign.sources.hyperliquid import (
    Fill,
    HyperliquidSource,
    SourceCursor,
    SourceSettings,
    group_fills,
    order_fills,
    ws_url,
)

LEAD = "0x" + "ab" * 20


def fill(tid, time, oid, side, sz, start, coin="BTC", px="100"):
    return Fill.from_wire(
        {
            "coin": coin,
            "px": px,
            "sz": sz,
            "side": side,
            "time": time,
            "startPosition": start,
            "dir": "Open Long",
            "closedPnl": "0.0",
            "hash": "0x00",
            "oid": oid,
            "crossed": True,
            "fee": "0.01",
            "tid": tid,
            "feeToken": "USDC",
        }
    )


# ------------------------------------------------------------------ pure parts


def test_ws_url_maps_like_the_sdk():
    assert ws_url("https://api.hyperliquid.xyz") == "wss://api.hyperliquid.xyz/ws"
    assert ws_url("http://127.0.0.1:8080/") == "ws://127.0.0.1:8080/ws"
    with pytest.raises(InvalidInput, match="base_url must start with http"):
        ws_url("api.hyperliquid.xyz")


def test_fill_signed_size_and_end_position_are_exact_decimals():
    # startPosition 26.86, buy 93.53 -> 120.39 exactly (the docs' AVAX example)
    f = fill(1, 10, 5, "B", "93.53", "26.86")
    assert f.signed_size == Decimal("93.53")
    assert f.end_position == Decimal("120.39")
    assert fill(2, 10, 5, "A", "0.1", "0.3").end_position == Decimal("0.2")


def test_fill_rejects_a_bad_side():
    raw = {"coin": "BTC", "px": "1", "sz": "1", "side": "X", "time": 1, "startPosition": "0"}
    with pytest.raises(InvalidInput, match="fill side must be 'A' or 'B'"):
        Fill.from_wire({**raw, "oid": 1, "tid": 1})


def test_cursor_covers_fills_before_start_and_its_own_fills_only():
    cursor = SourceCursor(100, frozenset({(100, 7), (103, 9)}))
    assert cursor.covers(fill(1, 99, 1, "B", "1", "0"))
    assert cursor.covers(fill(9, 103, 1, "B", "1", "0"))
    assert not cursor.covers(fill(8, 100, 1, "B", "1", "0"))  # same ms, other trade
    assert not cursor.covers(fill(2, 101, 1, "B", "1", "0"))  # inside the window, unseen


def test_cursor_start_trails_the_newest_fill_by_the_window():
    # window 5 ms: after t=108, start = 108 - 5 = 103, so (100, 7) leaves the set and
    # (103, 9) stays; a fill at 90 (before start) changes nothing
    cursor = SourceCursor(100, frozenset({(100, 7), (103, 9)}))
    later = cursor.advanced(fill(4, 108, 1, "B", "1", "0"), window_ms=5)
    assert later == SourceCursor(103, frozenset({(103, 9), (108, 4)}))
    assert later.advanced(fill(5, 90, 1, "B", "1", "0"), window_ms=5) == later
    # window 0: only the newest millisecond is held
    assert cursor.advanced(fill(4, 108, 1, "B", "1", "0")) == SourceCursor(
        108, frozenset({(108, 4)})
    )


def test_cursor_text_round_trip_and_error():
    cursor = SourceCursor(1681222254700, frozenset({(1681222254710, 118906512037719)}))
    text = '{"start":1681222254700,"fills":[[1681222254710,118906512037719]]}'
    assert cursor.to_text() == text
    assert SourceCursor.from_text(text) == cursor
    with pytest.raises(InvalidInput, match="unreadable Hyperliquid source cursor"):
        SourceCursor.from_text("{}")


def test_group_fills_merges_consecutive_fills_of_one_order_and_time():
    # order 5 crosses three makers at t=10 (one event); order 6 at t=10 (another); order 5's
    # later fill at t=11 (a third event: another block)
    fills = [
        fill(1, 10, 5, "B", "1", "0"),
        fill(2, 10, 5, "B", "2", "1"),
        fill(3, 10, 5, "B", "3", "3"),
        fill(4, 10, 6, "A", "1", "6"),
        fill(5, 11, 5, "B", "1", "5"),
    ]
    groups = group_fills(fills)
    assert [[f.tid for f in g] for g in groups] == [[1, 2, 3], [4], [5]]


def test_group_fills_keeps_interleaved_orders_apart():
    # A1 B1 A2 in one millisecond: three runs, so each event's before/after stays exact
    fills = [
        fill(1, 10, 5, "B", "1", "0"),
        fill(2, 10, 6, "B", "1", "1"),
        fill(3, 10, 5, "B", "1", "2"),
    ]
    assert [[f.tid for f in g] for g in group_fills(fills)] == [[1], [2], [3]]


def test_order_fills_sorts_by_time_and_chains_within_a_millisecond():
    # t=9 goes first and takes BTC from 1 to 0; t=10 arrives shuffled and chains from 0:
    # 0 -> 1 (tid 2), 1 -> 3 (tid 3), 3 -> 4 (tid 1); ETH's fill keeps its arrival slot
    fills = [
        fill(1, 10, 5, "B", "1", "3"),
        fill(9, 10, 7, "B", "1", "0", coin="ETH"),
        fill(2, 10, 5, "B", "1", "0"),
        fill(3, 10, 5, "B", "2", "1"),
        fill(4, 9, 4, "A", "1", "1"),
    ]
    ordered = order_fills(fills, {"BTC": Decimal(1)})
    assert [f.tid for f in ordered] == [4, 2, 9, 3, 1]


def test_order_fills_finds_the_chain_root_when_the_position_is_unknown():
    # after a restart nothing is tracked: 0 -> 3 -> 2 -> 1 is found from the fill that starts
    # where no other one ends (0), whatever the arrival order
    fills = [
        fill(3, 10, 5, "A", "1", "2"),
        fill(1, 10, 5, "B", "3", "0"),
        fill(2, 10, 5, "A", "1", "3"),
    ]
    assert [f.tid for f in order_fills(fills, {})] == [1, 2, 3]


def test_group_fills_keeps_apart_fills_already_processed():
    fills = [fill(1, 10, 5, "B", "1", "0"), fill(2, 10, 5, "B", "1", "1")]
    assert [[f.tid for f in g] for g in group_fills(fills, {1})] == [[1], [2]]


def test_source_rejects_a_bad_lead_address():
    with pytest.raises(InvalidInput, match="lead address must be 0x followed by 40 hex"):
        HyperliquidSource("0x1234", "http://127.0.0.1:1")


def test_source_maps_coins_to_levalign_symbols():
    source = HyperliquidSource(LEAD, "http://127.0.0.1:1")
    assert source.symbol("BTC") == "BTC/USDC:USDC"  # the hyperliquid preset's id
    assert source.symbol("WIF") == "WIF/USDC:USDC"  # not in the preset: Hyperliquid's rule


def test_first_start_millisecond_splits_history_from_events_by_position_chain():
    # the state at t=10 says BTC 1: the fill 0 -> 1 at t=10 is in it (history); the fill
    # 1 -> 2 at t=10 continues it (an event), and so does t=11's 2 -> 1.5
    source = HyperliquidSource(LEAD, "http://127.0.0.1:1")
    source._book.positions = {"BTC": Decimal(1)}
    source._boundary = 10
    source.cursor = SourceCursor(10)
    held, new, later = (
        fill(1, 10, 5, "B", "1", "0"),
        fill(2, 10, 6, "B", "1", "1"),
        fill(3, 11, 7, "A", "0.5", "2"),
    )
    assert source._past_boundary([held, new, later]) == [new, later]
    assert source.cursor == SourceCursor(10, frozenset({(10, 1)}))


def test_an_unreachable_base_url_is_a_configuration_error_naming_it():
    settings = SourceSettings(backoff=Backoff(base=0.001, cap=0.002, rng=random.Random(0)))
    source = HyperliquidSource(LEAD, "http://127.0.0.1:9", settings=settings)

    async def main():
        async for _ in source.events():
            pass

    with pytest.raises(
        ConfigurationError, match=r"cannot reach Hyperliquid at ws://127\.0\.0\.1:9/ws"
    ):
        asyncio.run(main())
    assert source.metrics.reconnects == 4


# ------------------------------------------------------------------ against the sandbox


sandbox_mod = pytest.importorskip("levalign.sandbox.hyperliquid")
Info = pytest.importorskip("hyperliquid.info").Info
HyperliquidSandbox = sandbox_mod.HyperliquidSandbox
SandboxConfig = sandbox_mod.SandboxConfig

WAIT = 30.0  # a safety net against a hang, never a figure under test


@pytest.fixture
def sandbox():
    lead = resources.files("levalign.data") / "leads" / "btc_scalper.csv.gz"
    with HyperliquidSandbox(SandboxConfig(lead=str(lead))) as sb:
        yield sb


def lead_fills(sb) -> list[dict[str, Any]]:
    """Ground truth: every fill of the lead, oldest first, from the sandbox's REST history."""
    fills: list[dict[str, Any]] = Info(sb.base_url, skip_ws=True).user_fills_by_time(
        sb.lead_address, 0
    )
    return fills


class Run:
    """A source iterated in a background task, its items collected."""

    def __init__(self, source: HyperliquidSource, store: CursorStore | None = None) -> None:
        self.source = source
        self.store = store
        self.items: list[Any] = []
        self.task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        async for item in self.source.events():
            self.items.append(item)
            if isinstance(item, SourceEvent) and self.store is not None:
                self.store.save(item.cursor)

    @property
    def events(self) -> list[SourceEvent]:
        return [i for i in self.items if isinstance(i, SourceEvent)]

    @property
    def gaps(self) -> list[SourceGap]:
        return [i for i in self.items if isinstance(i, SourceGap)]

    async def until(self, predicate) -> None:
        deadline = time.monotonic() + WAIT
        while not predicate(self):
            if self.task.done():
                self.task.result()
                raise AssertionError("the source stopped")
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met; items: {self.items!r}")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        await self.source.close()
        await asyncio.wait_for(self.task, WAIT)


def make_source(sb, store=None) -> HyperliquidSource:
    return HyperliquidSource(
        sb.lead_address,
        sb.base_url,
        cursor_store=store,
        settings=SourceSettings(backoff=Backoff(base=0.01, cap=0.05, rng=random.Random(1))),
    )


async def step(sb, fills: int) -> None:
    await asyncio.to_thread(sb.step, fills=fills)


async def run_for(sb, store: CursorStore, fills: int) -> Run:
    """A source that takes the initial state, then ``fills`` lead fills, then stops."""
    run = Run(make_source(sb, store), store)
    await run.until(lambda r: r.items)
    await step(sb, fills)
    await run.until(lambda r: len(r.events) >= fills)
    await run.stop()
    return run


def expect_exactly_once_in_order(events: list[SourceEvent], fills: list[dict[str, Any]]) -> None:
    """One event per lead fill (each scripted fill is its own order), same order, exact."""
    assert [e.trade_ids for e in events] == [(f["tid"],) for f in fills]
    for e, f in zip(events, fills, strict=True):
        start = Decimal(f["startPosition"])
        signed = Decimal(f["sz"]) if f["side"] == "B" else -Decimal(f["sz"])
        assert e.event.lead_position_before == float(start)
        assert e.event.lead_position_after == float(start + signed)
        assert e.event.symbol == "BTC/USDC:USDC"


def test_snapshot_then_stream(sandbox):
    async def main():
        await step(sandbox, 3)  # history: the initial state, never an event
        run = Run(make_source(sandbox))
        await run.until(lambda r: r.items)
        info = Info(sandbox.base_url, skip_ws=True)
        user_state = await asyncio.to_thread(info.user_state, sandbox.lead_address)
        await step(sandbox, 5)
        await run.until(lambda r: len(r.events) >= 5)
        await run.stop()
        return run, user_state

    run, user_state = asyncio.run(main())
    fills = lead_fills(sandbox)
    state = run.items[0]
    assert isinstance(state, LeadState)
    assert state.initial
    # the initial state is the position after the third fill (hand: startPosition + signed sz)
    third = fills[2]
    signed = Decimal(third["sz"]) * (1 if third["side"] == "B" else -1)
    assert state.positions == {"BTC/USDC:USDC": float(Decimal(third["startPosition"]) + signed)}
    # the price of the existing position: positionValue / |szi| (the sandbox values at the mid)
    position = user_state["assetPositions"][0]["position"]
    value = Decimal(position["positionValue"]) / abs(Decimal(position["szi"]))
    assert state.prices == {"BTC/USDC:USDC": float(value)}
    assert state.equity == float(user_state["marginSummary"]["accountValue"])
    expect_exactly_once_in_order(run.events, fills[3:])
    assert run.gaps == []
    assert all(e.origin == "stream" for e in run.events)
    # lead_equity: the state's account value less the fees of the fills since (hand rule)
    fees = Decimal(0)
    for e, f in zip(run.events, fills[3:], strict=True):
        fees += Decimal(f["fee"])
        assert e.event.lead_equity == float(Decimal(str(state.equity)) - fees)


def test_a_silent_connection_is_restarted_and_nothing_is_lost(sandbox):
    # heartbeats every 5 s but silence tolerated for 0.2 s only: every quiet spell is a dead
    # connection, so the source keeps reconnecting, backfilling each time
    settings = SourceSettings(
        ping_interval=5.0,
        stale_timeout=0.2,
        backoff=Backoff(base=0.01, cap=0.05, rng=random.Random(3)),
    )

    async def main():
        run = Run(HyperliquidSource(sandbox.lead_address, sandbox.base_url, settings=settings))
        await run.until(lambda r: r.items)
        for k in range(1, 5):
            await step(sandbox, 1)
            await run.until(lambda r, k=k: len(r.events) >= k)
            await run.until(lambda r, k=k: r.source.metrics.reconnects >= k)
        await run.stop()
        return run

    run = asyncio.run(main())
    expect_exactly_once_in_order(run.events, lead_fills(sandbox))
    assert run.gaps == []


def test_websocket_drop_mid_stream_reconnects_and_backfills(sandbox):
    async def main():
        run = Run(make_source(sandbox))
        await run.until(lambda r: r.items)
        await step(sandbox, 2)
        await run.until(lambda r: len(r.events) >= 2)
        # the next fills message is not sent: the connection closes instead
        await asyncio.to_thread(sandbox.inject, "ws_drop", channel="userFills")
        await step(sandbox, 3)
        await asyncio.to_thread(sandbox.drop_websockets)
        await step(sandbox, 2)
        await run.until(lambda r: len(r.events) >= 7)
        await step(sandbox, 1)
        await run.until(lambda r: len(r.events) >= 8)
        await run.stop()
        return run

    run = asyncio.run(main())
    expect_exactly_once_in_order(run.events, lead_fills(sandbox))
    assert run.source.metrics.reconnects >= 1
    assert run.source.metrics.backfills >= 1
    assert any(e.origin == "backfill" for e in run.events)
    assert run.gaps == []


def test_duplicated_and_delayed_messages_are_each_taken_once_in_order(sandbox):
    async def main():
        run = Run(make_source(sandbox))
        await run.until(lambda r: r.items)
        await asyncio.to_thread(sandbox.inject, "ws_duplicate", count=3, channel="userFills")
        for _ in range(3):
            await step(sandbox, 1)
        await run.until(lambda r: len(r.events) >= 3)
        # a message held back behind the next two: the chain of positions shows the hole
        await asyncio.to_thread(
            sandbox.inject, "ws_delay", delay_ms=300, channel="userFills", count=1
        )
        for _ in range(3):
            await step(sandbox, 1)
        await run.until(lambda r: len(r.events) >= 6)
        await asyncio.sleep(0.5)  # let the delayed message arrive: it must add nothing
        await step(sandbox, 1)
        await run.until(lambda r: len(r.events) >= 7)
        await run.stop()
        return run

    run = asyncio.run(main())
    expect_exactly_once_in_order(run.events, lead_fills(sandbox))
    assert run.source.metrics.duplicates >= 3
    # the delayed fill was found by a backfill when the next fill did not chain
    assert run.source.metrics.backfills == 1
    assert run.source.metrics.late_fills == 0
    assert run.gaps == []


def test_restart_resumes_from_the_persisted_cursor(sandbox, tmp_path):
    store = FileCursorStore(tmp_path / "cursor.json")

    async def second():
        run = Run(make_source(sandbox, store), store)
        await run.until(lambda r: len(r.events) >= 4)
        await step(sandbox, 1)
        await run.until(lambda r: len(r.events) >= 5)
        await run.stop()
        return run

    one = asyncio.run(run_for(sandbox, store, 3))
    sandbox.step(fills=4)  # while the copier is down
    two = asyncio.run(second())
    fills = lead_fills(sandbox)
    expect_exactly_once_in_order(one.events + two.events, fills)
    assert [e.origin for e in two.events] == ["backfill"] * 4 + ["stream"]
    assert not two.items[0].initial
    # the cursor holds the fills of the last 10 s (all of them here) and starts 10 s before
    # the newest, or at the first start's state time if that is later
    cursor = SourceCursor.from_text(store.load() or "")
    assert cursor.newest == fills[-1]["time"]
    assert cursor.start >= fills[-1]["time"] - 10_000
    assert {(f["time"], f["tid"]) for f in fills if f["time"] >= cursor.start} == cursor.fills


def test_restart_from_the_newest_fill_only_repeats_events_with_their_ids(sandbox):
    # a store that keeps (time, tid) of the newest fill: the window comes again, nothing is
    # lost, and what repeats has the event ids already recorded
    async def second(cursor: str, last_tid: int):
        run = Run(make_source(sandbox, MemoryCursorStore(cursor)))
        await run.until(lambda r: any(last_tid in e.trade_ids for e in r.events))
        await run.stop()
        return run

    one = asyncio.run(run_for(sandbox, MemoryCursorStore(), 3))
    sandbox.step(fills=2)
    last = one.events[-1]
    lossy = SourceCursor.resume(int(last.event.timestamp or 0), last.trade_ids[-1])
    two = asyncio.run(second(lossy.to_text(), lead_fills(sandbox)[-1]["tid"]))
    recorded = {e.event.event_id for e in one.events}
    fresh = [e for e in two.events if e.event.event_id not in recorded]
    expect_exactly_once_in_order(one.events + fresh, lead_fills(sandbox))
    assert two.gaps == []


def test_backfill_pages_through_more_than_one_page(tmp_path):
    # 2,100 fills while the copier is down: more than one userFillsByTime page (2,000)
    rows = [
        f"2023-03-01T{4 + k // 3600:02d}:{k // 60 % 60:02d}:{k % 60:02d}.000Z,"
        f"BTC/USDT:USDT,23500,{0.001 * (1 + k % 2)},10000"
        for k in range(2101)
    ]
    lead = tmp_path / "lead.csv"
    lead.write_text("timestamp,symbol,price,position_after,equity\n" + "\n".join(rows) + "\n")
    store = MemoryCursorStore()
    with HyperliquidSandbox(SandboxConfig(lead=str(lead))) as sb:

        async def second():
            run = Run(make_source(sb, store), store)
            await run.until(lambda r: len(r.events) >= 2100)
            await run.stop()
            return run

        one = asyncio.run(run_for(sb, store, 1))
        sb.step(fills=2100)
        two = asyncio.run(second())
        fills = lead_fills_all(sb)
    expect_exactly_once_in_order(one.events + two.events, fills)
    assert two.source.metrics.backfill_pages == 2
    assert two.gaps == []


def lead_fills_all(sb) -> list[dict[str, Any]]:
    """Every fill of the lead, paging userFillsByTime as the source does (2,000 a page)."""
    info = Info(sb.base_url, skip_ws=True)
    found: dict[int, dict[str, Any]] = {}
    start = 0
    while True:
        page = info.user_fills_by_time(sb.lead_address, start)
        for f in page:
            found.setdefault(f["tid"], f)
        if len(page) < 2000:
            return sorted(found.values(), key=lambda f: (f["time"], f["tid"]))
        start = page[-1]["time"]


def test_backfill_retries_429_and_5xx(sandbox):
    store = MemoryCursorStore()

    async def second():
        run = Run(make_source(sandbox, store), store)
        await run.until(lambda r: len(r.events) >= 3)
        await run.stop()
        return run

    asyncio.run(run_for(sandbox, store, 2))
    sandbox.step(fills=3)
    sandbox.inject("http_429", count=2, path="/info", action="userFillsByTime")
    sandbox.inject("http_5xx", count=1, status=502, path="/info", action="userFillsByTime")
    two = asyncio.run(second())
    fills = lead_fills(sandbox)
    expect_exactly_once_in_order(two.events, fills[2:])
    assert two.source.metrics.rest_retries == 3
    assert all(f["fired"] == f["count"] for f in sandbox.faults())


def test_history_that_no_longer_reaches_the_cursor_is_a_gap(sandbox):
    # a cursor at a trade id the venue does not hold: continuity cannot be proven
    store = MemoryCursorStore(SourceCursor(1, frozenset({(1, 999_999)})).to_text())
    sandbox.step(fills=2)

    async def main():
        run = Run(make_source(sandbox, store), store)
        await run.until(lambda r: len(r.events) >= 2)
        await run.stop()
        return run

    run = asyncio.run(main())
    assert [g.reason for g in run.gaps] == ["history_truncated"]
    assert run.source.metrics.gaps == 1
    expect_exactly_once_in_order(run.events, lead_fills(sandbox))


TWO_COINS = """timestamp,symbol,price,position_after,equity
2023-03-01T04:37:59.999Z,BTC/USDT:USDT,23500,0.5,10000
2023-03-01T04:38:59.999Z,XRP/USDT:USDT,0.38,1000,10000
2023-03-01T04:39:59.999Z,BTC/USDT:USDT,23510,1.0,10000
2023-03-01T04:40:59.999Z,XRP/USDT:USDT,0.381,2000,10000
"""


@pytest.fixture
def two_coin_sandbox(tmp_path):
    lead = tmp_path / "lead.csv"
    lead.write_text(TWO_COINS)
    with HyperliquidSandbox(SandboxConfig(lead=str(lead))) as sb:
        yield sb


def test_a_fill_delayed_behind_another_coin_survives_a_crash(two_coin_sandbox, tmp_path):
    sb = two_coin_sandbox
    store = FileCursorStore(tmp_path / "cursor.json")

    async def first():
        run = Run(make_source(sb, store), store)
        await run.until(lambda r: r.items)
        await step(sb, 1)  # BTC 0 -> 0.5
        await run.until(lambda r: len(r.events) >= 1)
        # XRP's fill is held back far beyond this run; BTC's next fill arrives first
        await asyncio.to_thread(sb.inject, "ws_delay", delay_ms=60_000, channel="userFills")
        await step(sb, 1)  # XRP 0 -> 1000, delayed
        await step(sb, 1)  # BTC 0.5 -> 1.0
        await run.until(lambda r: len(r.events) >= 2)
        await run.stop()  # the copier dies before the delayed message comes
        return run

    async def second():
        run = Run(make_source(sb, store), store)
        await run.until(lambda r: len(r.events) >= 1)
        await step(sb, 1)  # XRP 1000 -> 2000
        await run.until(lambda r: len(r.events) >= 2)
        await run.stop()
        return run

    one = asyncio.run(first())
    two = asyncio.run(second())
    fills = lead_fills(sb)
    by_tid = {f["tid"]: f for f in fills}
    seen = [t for e in one.events + two.events for t in e.trade_ids]
    assert sorted(seen) == sorted(by_tid)  # every fill exactly once
    # the delayed XRP fill is found by the restart's backfill, before XRP's next fill
    assert [e.trade_ids[0] for e in two.events] == [fills[1]["tid"], fills[3]["tid"]]
    assert two.events[0].origin == "backfill"
    for e in one.events + two.events:
        f = by_tid[e.trade_ids[0]]
        assert e.event.lead_position_before == float(f["startPosition"])
    assert one.gaps == two.gaps == []
