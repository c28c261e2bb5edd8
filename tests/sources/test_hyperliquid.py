from __future__ import annotations

from decimal import Decimal

import pytest

from levalign.errors import InvalidInput
from levalign.sources.hyperliquid import (
    Fill,
    HyperliquidSource,
    SourceCursor,
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


def test_cursor_covers_earlier_times_and_its_own_tids_only():
    cursor = SourceCursor(100, frozenset({7, 9}))
    assert cursor.covers(fill(1, 99, 1, "B", "1", "0"))
    assert cursor.covers(fill(7, 100, 1, "B", "1", "0"))
    assert not cursor.covers(fill(8, 100, 1, "B", "1", "0"))  # same ms, other trade
    assert not cursor.covers(fill(1, 101, 1, "B", "1", "0"))


def test_cursor_advances_by_time_then_by_tid_set():
    cursor = SourceCursor(100, frozenset({7}))
    same_ms = cursor.advanced(fill(8, 100, 1, "B", "1", "0"))
    later = same_ms.advanced(fill(3, 105, 1, "B", "1", "0"))
    assert same_ms == SourceCursor(100, frozenset({7, 8}))
    assert later == SourceCursor(105, frozenset({3}))
    assert later.advanced(fill(4, 90, 1, "B", "1", "0")) == later  # never goes back


def test_cursor_text_round_trip_and_error():
    cursor = SourceCursor(1681222254710, frozenset({118906512037719, 5}))
    assert cursor.to_text() == '{"time":1681222254710,"tids":[5,118906512037719]}'
    assert SourceCursor.from_text(cursor.to_text()) == cursor
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


def test_source_rejects_a_bad_lead_address():
    with pytest.raises(InvalidInput, match="lead address must be 0x followed by 40 hex"):
        HyperliquidSource("0x1234", "http://127.0.0.1:1")


def test_source_maps_coins_to_levalign_symbols():
    source = HyperliquidSource(LEAD, "http://127.0.0.1:1")
    assert source.symbol("BTC") == "BTC/USDC:USDC"  # the hyperliquid preset's id
    assert source.symbol("WIF") == "WIF/USDC:USDC"  # not in the preset: Hyperliquid's rule
