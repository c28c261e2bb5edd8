"""Websocket /ws: the SDK's websocket manager and the `websockets` client, and ws faults."""

from __future__ import annotations

import json
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from hyperliquid.exchange import Exchange
from hyperliquid.info import Info
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from levalign.sandbox.hyperliquid import HyperliquidSandbox, SandboxConfig

from .conftest import Inbox

GTC: Any = {"limit": {"tif": "Gtc"}}


def ws_url(sandbox: HyperliquidSandbox) -> str:
    return "ws" + sandbox.base_url.removeprefix("http") + "/ws"


def recv(ws: ClientConnection) -> Any:
    return json.loads(ws.recv(timeout=20))


def subscribe(ws: ClientConnection, subscription: dict[str, Any]) -> None:
    ws.send(json.dumps({"method": "subscribe", "subscription": subscription}))
    ack = recv(ws)
    assert ack == {
        "channel": "subscriptionResponse",
        "data": {"method": "subscribe", "subscription": subscription},
    }


def test_sdk_websocket_manager_gets_snapshot_then_stream(
    sandbox: HyperliquidSandbox, exchange: Exchange, alice: LocalAccount
):
    exchange.order("BTC", True, 0.01, 20000, GTC)  # a fill before subscribing
    info = Info(sandbox.base_url)  # starts the SDK's websocket manager
    inbox = Inbox()
    try:
        info.subscribe({"type": "userFills", "user": alice.address}, inbox.put)
        first = inbox.wait_for(lambda items: len(items) >= 1)[0]
        assert first["channel"] == "userFills"
        assert first["data"]["isSnapshot"] is True
        assert [f["tid"] for f in first["data"]["fills"]] == [1]
        exchange.order("BTC", False, 0.01, 19000, GTC)
        second = inbox.wait_for(lambda items: len(items) >= 2)[1]
        assert "isSnapshot" not in second["data"]
        assert [(f["tid"], f["dir"]) for f in second["data"]["fills"]] == [(2, "Close Long")]
    finally:
        info.disconnect_websocket()


def test_websockets_client_channels_and_ping(
    sandbox: HyperliquidSandbox, exchange: Exchange, alice: LocalAccount
):
    user = alice.address.lower()
    with connect(ws_url(sandbox)) as ws:
        assert ws.recv(timeout=20) == "Websocket connection established."
        ws.send(json.dumps({"method": "ping"}))
        assert recv(ws) == {"channel": "pong"}
        subscribe(ws, {"type": "userFills", "user": alice.address})
        snapshot = recv(ws)
        assert snapshot == {
            "channel": "userFills",
            "data": {"isSnapshot": True, "user": user, "fills": []},
        }
        subscribe(ws, {"type": "orderUpdates", "user": alice.address})
        subscribe(ws, {"type": "allMids"})
        assert recv(ws)["data"]["mids"]["BTC"] == "20000.0"
        exchange.order("BTC", True, 0.01, 19000, GTC, cloid=None)  # rests
        update = recv(ws)
        assert update["channel"] == "orderUpdates"
        assert update["data"][0]["status"] == "open"
        assert update["data"][0]["order"]["limitPx"] == "19000.0"
        sandbox.set_mids({"BTC": "18900"})  # reaches the resting buy
        channels = [recv(ws) for _ in range(3)]
        by_channel = {m["channel"]: m["data"] for m in channels}
        assert by_channel["orderUpdates"][0]["status"] == "filled"
        assert by_channel["userFills"]["fills"][0]["px"] == "19000.0"
        assert by_channel["userFills"]["fills"][0]["crossed"] is False
        assert by_channel["allMids"]["mids"]["BTC"] == "18900.0"


def test_ws_drop_closes_the_connection_instead_of_sending(
    sandbox: HyperliquidSandbox, exchange: Exchange, alice: LocalAccount
):
    with connect(ws_url(sandbox)) as ws:
        ws.recv(timeout=20)
        subscribe(ws, {"type": "userFills", "user": alice.address})
        recv(ws)  # snapshot
        sandbox.inject("ws_drop", channel="userFills")
        exchange.order("BTC", True, 0.01, 20000, GTC)
        with pytest.raises(ConnectionClosed):
            recv(ws)
    # the fill is not lost: a new subscription's snapshot has it
    with connect(ws_url(sandbox)) as ws:
        ws.recv(timeout=20)
        subscribe(ws, {"type": "userFills", "user": alice.address})
        assert [f["tid"] for f in recv(ws)["data"]["fills"]] == [1]


def test_drop_all_websockets_now(sandbox: HyperliquidSandbox):
    with connect(ws_url(sandbox)) as ws:
        ws.recv(timeout=20)
        ws.send(json.dumps({"method": "ping"}))
        recv(ws)
        assert sandbox.drop_websockets() == 1
        with pytest.raises(ConnectionClosed):
            recv(ws)


def test_ws_duplicate_and_delay(
    sandbox: HyperliquidSandbox, exchange: Exchange, alice: LocalAccount
):
    with connect(ws_url(sandbox)) as ws:
        ws.recv(timeout=20)
        subscribe(ws, {"type": "userFills", "user": alice.address})
        recv(ws)
        sandbox.inject("ws_duplicate", channel="userFills")
        exchange.order("BTC", True, 0.01, 20000, GTC)
        first, second = recv(ws), recv(ws)
        assert first == second
        assert first["data"]["fills"][0]["tid"] == 1
        # the next fill message is held back, so the one after it arrives first
        sandbox.inject("ws_delay", channel="userFills", delay_ms=1500)
        exchange.order("BTC", True, 0.01, 20000, GTC)
        exchange.order("BTC", True, 0.01, 20000, GTC)
        tids = [recv(ws)["data"]["fills"][0]["tid"] for _ in range(2)]
        assert tids == [3, 2]


def test_unsubscribe_stops_the_channel(
    sandbox: HyperliquidSandbox, exchange: Exchange, alice: LocalAccount
):
    with connect(ws_url(sandbox)) as ws:
        ws.recv(timeout=20)
        sub = {"type": "userFills", "user": alice.address}
        subscribe(ws, sub)
        recv(ws)  # snapshot
        ws.send(json.dumps({"method": "unsubscribe", "subscription": sub}))
        assert recv(ws)["data"]["method"] == "unsubscribe"
        exchange.order("BTC", True, 0.01, 20000, GTC)
        ws.send(json.dumps({"method": "ping"}))
        assert recv(ws) == {"channel": "pong"}  # no userFills message came before it


def test_idle_connection_is_closed_and_pings_keep_it_open():
    with HyperliquidSandbox(SandboxConfig(ws_idle_timeout_s=2.0)) as sb:
        with connect(ws_url(sb)) as busy:
            busy.recv(timeout=20)
            # each ping resets the idle timer and gets its pong
            for _ in range(3):
                busy.send(json.dumps({"method": "ping"}))
                assert recv(busy) == {"channel": "pong"}
        with connect(ws_url(sb)) as idle:
            idle.recv(timeout=20)
            with pytest.raises(ConnectionClosed):
                idle.recv(timeout=20)  # nothing sent: closed by the server
