"""The sandbox's server: Hyperliquid's ``/info``, ``/exchange`` and ``/ws`` on one port.

The sandbox's own control plane is under ``/_sandbox/``.

Every request runs on one asyncio event loop; the engine is only ever touched from it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import json
import math
import signal
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import WSMsgType, web

from levalign.errors import ConfigurationError, InvalidInput
from levalign.sandbox.hyperliquid._engine import Clock, Engine, fmt
from levalign.sandbox.hyperliquid._script import LeadScript, Step
from levalign.sandbox.hyperliquid._signing import (
    APPROVE_AGENT_TYPES,
    recover_l1_signer,
    recover_user_signer,
)

__all__ = ["DEFAULT_LEAD", "FAULT_KINDS", "HyperliquidSandbox", "SandboxConfig", "serve"]

T = TypeVar("T")

DEFAULT_LEAD = "0x1ead000000000000000000000000000000000001"
NONCE_PAST_MS = 2 * 86_400_000
NONCE_FUTURE_MS = 86_400_000
NONCES_KEPT = 100
CONNECTED = "Websocket connection established."
#: /info request weights (Hyperliquid docs, "Rate limits and user limits"); others weigh 20
INFO_WEIGHTS = {
    "l2Book": 2,
    "allMids": 2,
    "clearinghouseState": 2,
    "orderStatus": 2,
    "spotClearinghouseState": 2,
    "exchangeStatus": 2,
    "userRole": 60,
}

#: placeholder mids of the coins that have no bundled candles (set real ones with /_sandbox/mids)
PLACEHOLDER_MIDS = {
    "BTC": "23142",
    "ETH": "1650",
    "SOL": "22.5",
    "XRP": "0.38",
    "DOGE": "0.082",
    "AVAX": "17.5",
    "ARB": "1.35",
    "OP": "2.5",
    "SUI": "1.0",
}

FAULT_KINDS = {
    "http_429": "the next `count` matching requests get HTTP 429 and are not processed",
    "http_5xx": "the next `count` matching requests get HTTP `status` (500) and are not processed",
    "http_delay": "the next `count` matching responses are held back `delay_ms`",
    "lose_response": "the next `count` matching /exchange requests are processed, then the "
    "connection is closed without a response",
    "ws_drop": "the next `count` matching websocket messages are not sent: the connection "
    "closes instead",
    "ws_duplicate": "the next `count` matching websocket messages are sent twice",
    "ws_delay": "the next `count` matching websocket messages are sent `delay_ms` late "
    "(after later ones)",
}


@dataclass
class SandboxConfig:
    """What the sandbox serves.

    Attributes
    ----------
    host, port
        Where to listen (port 0: any free port).
    lead
        A lead-history file to play (docs/lead_history.md); None: no scripted lead.
    lead_address
        The lead account's address.
    speed
        Script time per real time (60: a minute of the lead's history per second); 0: only
        on request (``/_sandbox/step``); ``math.inf``: as fast as possible.
    fund
        Addresses and the USDC each is funded with at start.
    mids
        Start mids by coin (over the bundled candles and placeholders).
    mainnet
        Verify signatures as mainnet (source ``"a"``, ``"Mainnet"``); the SDK signs as testnet
        for any URL but mainnet's, so the default is False.
    taker_fee, maker_fee, slippage_bps
        See :class:`levalign.sandbox.hyperliquid._engine.Engine`.
    check_nonce_window
        Refuse nonces more than 2 days before or 1 day after the sandbox clock.
    lead_fill_parts
        Each lead row fills as one order in this many fills (of equal size).
    rest_weight_per_minute
        Enforce Hyperliquid's REST rate limit (docs, "Rate limits and user limits": 1200 a
        minute on the exchange) with its request weights: HTTP 429 past it; None: no limit.
    ws_idle_timeout_s
        Close a websocket connection from which nothing (not even a ping) came for this long,
        as the exchange does after 60 s; None: never.
    """

    host: str = "127.0.0.1"
    port: int = 0
    lead: str | Path | None = None
    lead_address: str = DEFAULT_LEAD
    speed: float = 0.0
    fund: Mapping[str, Decimal | float | str] = field(default_factory=dict)
    mids: Mapping[str, Decimal | float | str] = field(default_factory=dict)
    mainnet: bool = False
    taker_fee: Decimal = Decimal("0.00045")
    maker_fee: Decimal = Decimal("0.00015")
    slippage_bps: Decimal = Decimal(0)
    check_nonce_window: bool = True
    lead_fill_parts: int = 1
    ws_idle_timeout_s: float | None = None
    rest_weight_per_minute: int | None = None


@dataclass
class _Fault:
    id: int
    kind: str
    count: int
    status: int = 500
    delay_ms: int = 0
    path: str | None = None
    action: str | None = None
    channel: str | None = None
    user: str | None = None
    fired: int = 0

    def view(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class _Connection:
    """One websocket client: its subscriptions and an ordered send queue."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.subscriptions: list[dict[str, Any]] = []
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()

    async def writer(self) -> None:
        while True:
            text = await self.queue.get()
            if text is None or self.ws.closed:
                return
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_str(text)

    def wants(self, channel: str, user: str, coin: str | None = None) -> bool:
        for sub in self.subscriptions:
            if sub.get("type") != channel:
                continue
            if channel == "allMids":
                return True
            if coin is not None and str(sub.get("coin")) == coin:
                return True
            if str(sub.get("user", "")).lower() == user:
                return True
        return False


def _bad(message: str) -> web.Response:
    return web.Response(status=422, text=message)


def _err(message: str) -> dict[str, Any]:
    return {"status": "err", "response": message}


class _Server:
    """The sandbox's state and request handlers (all on the event loop)."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.clock = Clock()
        self.engine = Engine(
            clock=self.clock,
            taker_fee=config.taker_fee,
            maker_fee=config.maker_fee,
            slippage_bps=config.slippage_bps,
        )
        self.lead_address = config.lead_address.lower()
        self.engine.exempt.add(self.lead_address)  # the lead file dictates its state
        self.script = (
            LeadScript.from_file(config.lead, _markets())
            if config.lead is not None
            else LeadScript([])
        )
        start = {**PLACEHOLDER_MIDS}
        first = {s.coin: s.price for s in reversed(self.script.steps)}
        start.update({coin: fmt(px) for coin, px in first.items()})
        start.update({k: str(v) for k, v in config.mids.items()})
        for coin, px in start.items():
            if coin in self.engine.by_coin:
                self.engine.set_mid(coin, Decimal(px))
        lead_rows = [s for s in self.script.steps if s.is_fill]
        if lead_rows:
            self.engine.fund(self.lead_address, lead_rows[0].equity or Decimal(0))
        for user, usdc in config.fund.items():
            self.engine.fund(user, Decimal(str(usdc)))
        self.engine.outbox.clear()
        self.connections: set[_Connection] = set()
        self.faults: list[_Fault] = []
        self._fault_ids = 0
        self.nonces: dict[str, list[int]] = defaultdict(list)
        self.order_log: list[dict[str, Any]] = []
        self._received_at = 0.0
        self._spent: collections.deque[tuple[float, int]] = collections.deque()
        self.script_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ app

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/info", self.info)
        app.router.add_post("/exchange", self.exchange)
        app.router.add_get("/ws", self.websocket)
        app.router.add_post("/_sandbox/fund", self.ctl_fund)
        app.router.add_post("/_sandbox/agent", self.ctl_agent)
        app.router.add_post("/_sandbox/mids", self.ctl_mids)
        app.router.add_post("/_sandbox/step", self.ctl_step)
        app.router.add_post("/_sandbox/clock", self.ctl_clock)
        app.router.add_post("/_sandbox/faults", self.ctl_add_fault)
        app.router.add_get("/_sandbox/faults", self.ctl_faults)
        app.router.add_delete("/_sandbox/faults", self.ctl_clear_faults)
        app.router.add_post("/_sandbox/ws/drop", self.ctl_drop)
        app.router.add_get("/_sandbox/orders", self.ctl_orders)
        app.router.add_get("/_sandbox/status", self.ctl_status)
        app.on_startup.append(self._start_script)
        app.on_shutdown.append(self._shutdown)
        return app

    async def _start_script(self, _: web.Application) -> None:
        if self.config.speed > 0 and self.script.steps:
            self.script_task = asyncio.get_running_loop().create_task(self._play())

    async def _shutdown(self, _: web.Application) -> None:
        if self.script_task is not None:
            self.script_task.cancel()
        for conn in list(self.connections):
            conn.queue.put_nowait(None)
            await conn.ws.close()

    async def _play(self) -> None:
        while not self.script.done:
            self.step(1)
            wait = self.script.delay_ms() / 1000 / self.config.speed
            await asyncio.sleep(0 if math.isinf(self.config.speed) else wait)

    # ------------------------------------------------------------------ faults

    def add_fault(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Arm a fault (see :data:`FAULT_KINDS`); returns it with its id."""
        kind = str(spec.get("kind"))
        if kind not in FAULT_KINDS:
            raise InvalidInput(
                f"unknown fault kind {kind!r}; kinds: {', '.join(FAULT_KINDS)}",
                field="kind",
                value=kind,
            )
        self._fault_ids += 1
        fault = _Fault(
            id=self._fault_ids,
            kind=kind,
            count=int(spec.get("count", 1)),
            status=int(spec.get("status", 500)),
            delay_ms=int(spec.get("delay_ms", 0)),
            path=spec.get("path"),
            action=spec.get("action"),
            channel=spec.get("channel"),
            user=str(spec["user"]).lower() if spec.get("user") else None,
        )
        self.faults.append(fault)
        return fault.view()

    def _take_fault(
        self,
        kinds: tuple[str, ...],
        *,
        path: str | None = None,
        action: str | None = None,
        channel: str | None = None,
        user: str | None = None,
    ) -> _Fault | None:
        for fault in self.faults:
            if fault.kind not in kinds or fault.fired >= fault.count:
                continue
            if fault.path is not None and fault.path != path:
                continue
            if fault.action is not None and fault.action != action:
                continue
            if fault.channel is not None and fault.channel != channel:
                continue
            if fault.user is not None and fault.user != user:
                continue
            fault.fired += 1
            return fault
        return None

    async def _http_fault(
        self, path: str, action: str | None, user: str | None
    ) -> web.Response | None:
        fault = self._take_fault(("http_429", "http_5xx"), path=path, action=action, user=user)
        if fault is None:
            return None
        if fault.kind == "http_429":
            return web.json_response(None, status=429)
        return web.Response(status=fault.status, text="sandbox: injected server error")

    def _over_limit(self, weight: int) -> bool:
        """Charge ``weight`` to the last minute's budget; True (nothing charged) when over."""
        limit = self.config.rest_weight_per_minute
        if limit is None:
            return False
        now = time.monotonic()
        while self._spent and self._spent[0][0] <= now - 60:
            self._spent.popleft()
        if sum(w for _, w in self._spent) + weight > limit:
            return True
        self._spent.append((now, weight))
        return False

    async def _respond(
        self, request: web.Request, payload: Any, *, action: str | None, user: str | None
    ) -> web.StreamResponse:
        self.publish()  # websocket subscribers hear of the request's effects at once
        delay = self._take_fault(("http_delay",), path=request.path, action=action, user=user)
        if delay is not None:
            await asyncio.sleep(delay.delay_ms / 1000)
        if request.path == "/exchange" and self._take_fault(
            ("lose_response",), path=request.path, action=action, user=user
        ):
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=204)
        return web.json_response(payload)

    # ------------------------------------------------------------------ /info

    async def info(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
            kind = str(body["type"])
        except (ValueError, KeyError, TypeError):
            return _bad("Failed to deserialize the JSON body into the target type")
        user = str(body.get("user", "")).lower() or None
        injected = await self._http_fault("/info", kind, user)
        if injected is not None:
            return injected
        handler = self._info_handlers().get(kind)
        if handler is None:
            return _bad(f"Failed to deserialize the JSON body into the target type: {kind}")
        if self._over_limit(INFO_WEIGHTS.get(kind, 20)):
            return web.json_response(None, status=429)
        try:
            result = handler(body)
        except (KeyError, TypeError, ValueError):
            return _bad("Failed to deserialize the JSON body into the target type")
        if kind in ("userFills", "userFillsByTime") and isinstance(result, list):
            self._over_limit(len(result) // 20)  # charged after the fact, as items are counted
        return await self._respond(request, result, action=kind, user=user)

    def _info_handlers(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        e = self.engine
        return {
            "meta": lambda _: e.meta(),
            "spotMeta": lambda _: _SPOT_META,
            "metaAndAssetCtxs": lambda _: [e.meta(), e.asset_ctxs()],
            "perpDexs": lambda _: [None],
            "allMids": lambda _: e.all_mids(),
            "l2Book": lambda b: e.l2_book(str(b["coin"])),
            "clearinghouseState": lambda b: e.clearinghouse_state(str(b["user"])),
            "spotClearinghouseState": lambda _: {"balances": []},
            "userFills": lambda b: e.user_fills(str(b["user"])),
            "userFillsByTime": lambda b: e.user_fills(
                str(b["user"]),
                int(b["startTime"]),
                int(b["endTime"]) if b.get("endTime") is not None else None,
            ),
            "orderStatus": lambda b: e.order_status(str(b["user"]), b["oid"]),
            "openOrders": lambda b: e.open_orders(str(b["user"])),
            "frontendOpenOrders": lambda b: e.open_orders(str(b["user"]), frontend=True),
        }

    # ------------------------------------------------------------------ /exchange

    async def exchange(self, request: web.Request) -> web.StreamResponse:
        received_at = time.time()
        try:
            body = await request.json()
            action = body["action"]
            kind = str(action["type"])
            nonce = int(body["nonce"])
            signature = body["signature"]
        except (ValueError, KeyError, TypeError):
            return _bad("Failed to deserialize the JSON body into the target type")
        injected = await self._http_fault("/exchange", kind, None)
        if injected is not None:
            return injected
        batch = action.get("orders") or action.get("cancels") or []
        if self._over_limit(1 + len(batch) // 40):
            return web.json_response(None, status=429)
        self._received_at = received_at  # read by _log_order within this synchronous call
        result, user = self._exchange(body, action, kind, nonce, signature)
        return await self._respond(request, result, action=kind, user=user)

    def _exchange(
        self, body: dict[str, Any], action: dict[str, Any], kind: str, nonce: int, signature: Any
    ) -> tuple[dict[str, Any], str | None]:
        mainnet = self.config.mainnet
        try:
            if kind == "approveAgent":
                signer = recover_user_signer(
                    action,
                    signature,
                    types=APPROVE_AGENT_TYPES,
                    primary_type="HyperliquidTransaction:ApproveAgent",
                    mainnet=mainnet,
                )
            else:
                signer = recover_l1_signer(
                    action,
                    signature,
                    nonce=nonce,
                    vault_address=body.get("vaultAddress"),
                    expires_after=body.get("expiresAfter"),
                    mainnet=mainnet,
                )
        except (ValueError, KeyError, TypeError):
            return _err("Invalid signature."), None
        user = self.engine.owner_of(signer)
        if kind == "approveAgent":
            user = signer if signer in self.engine.accounts else None
        if user is None:
            self._log_orders(action, kind, nonce, signer, None, None)
            return _err(f"User or API Wallet {signer} does not exist."), None
        if body.get("vaultAddress"):
            return _err("Vault trading is not supported by the sandbox."), user
        expires = body.get("expiresAfter")
        if expires is not None and int(expires) < self.clock.now_ms():
            return _err(f"Action expired at {expires}."), user
        nonce_error = self._use_nonce(signer, nonce)
        if nonce_error is not None:
            self._log_orders(action, kind, nonce, signer, user, None)
            return _err(nonce_error), user
        return self._act(user, signer, action, kind, nonce), user

    def _use_nonce(self, signer: str, nonce: int) -> str | None:
        now = self.clock.now_ms()
        if self.config.check_nonce_window and not (
            now - NONCE_PAST_MS < nonce < now + NONCE_FUTURE_MS
        ):
            return f"Invalid nonce: nonce {nonce} is outside the window (T - 2d, T + 1d)"
        kept = self.nonces[signer]
        if nonce in kept:
            return f"Invalid nonce: duplicate nonce {nonce}"
        if len(kept) >= NONCES_KEPT and nonce < kept[0]:
            return f"Invalid nonce: nonce {nonce} is lower than the 100 highest nonces used"
        heapq.heappush(kept, nonce)
        if len(kept) > NONCES_KEPT:
            heapq.heappop(kept)
        return None

    def _act(
        self, user: str, signer: str, action: dict[str, Any], kind: str, nonce: int
    ) -> dict[str, Any]:
        e = self.engine
        try:
            if kind == "order":
                statuses = []
                for wire in action["orders"]:
                    status, record = e.place(user, wire)
                    statuses.append(status)
                    self._log_order(wire, nonce, signer, user, status, record)
                return _ok("order", {"statuses": statuses})
            if kind in ("cancel", "cancelByCloid"):
                statuses_c: list[Any] = []
                for c in action["cancels"]:
                    if kind == "cancel":
                        statuses_c.append(e.cancel(user, int(c["a"]), int(c["o"]), None))
                    else:
                        statuses_c.append(e.cancel(user, int(c["asset"]), None, str(c["cloid"])))
                return _ok(kind, {"statuses": statuses_c})
            error: str | None
            if kind == "updateLeverage":
                error = e.update_leverage(
                    user, int(action["asset"]), bool(action["isCross"]), int(action["leverage"])
                )
            elif kind == "updateIsolatedMargin":
                error = e.update_isolated_margin(user, int(action["asset"]), int(action["ntli"]))
            elif kind == "approveAgent":
                e.approve_agent(user, str(action["agentAddress"]))
                error = None
            else:
                return _err(f"Unsupported action type {kind!r} in the sandbox.")
        except (KeyError, TypeError, ValueError, InvalidOperation):
            return _err(f"Failed to deserialize the {kind} action.")
        return _err(error) if error else {"status": "ok", "response": {"type": "default"}}

    def _log_orders(
        self,
        action: dict[str, Any],
        kind: str,
        nonce: int,
        signer: str,
        user: str | None,
        status: dict[str, Any] | None,
    ) -> None:
        if kind != "order" or not isinstance(action.get("orders"), list):
            return
        for wire in action["orders"]:
            self._log_order(wire, nonce, signer, user, status, None)

    def _log_order(
        self,
        wire: Any,
        nonce: int,
        signer: str,
        user: str | None,
        status: dict[str, Any] | None,
        record: Any,
    ) -> None:
        wire = wire if isinstance(wire, dict) else {}
        outcome = "refused" if status is None else next(iter(status))
        error = "signature or nonce refused" if status is None else status.get("error")
        self.order_log.append(
            {
                "seq": len(self.order_log) + 1,
                "time": self.clock.now_ms(),
                "received_at": self._received_at,
                "user": user,
                "signer": signer,
                "nonce": nonce,
                "cloid": str(wire["c"]).lower() if wire.get("c") else None,
                "oid": record.oid if record is not None else None,
                "asset": wire.get("a"),
                "is_buy": wire.get("b"),
                "px": wire.get("p"),
                "sz": wire.get("s"),
                "reduce_only": wire.get("r"),
                "order_type": wire.get("t"),
                "outcome": outcome,
                "error": error,
            }
        )

    # ------------------------------------------------------------------ websocket

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        conn = _Connection(ws)
        self.connections.add(conn)
        writer = asyncio.get_running_loop().create_task(conn.writer())
        conn.queue.put_nowait(CONNECTED)
        try:
            while True:
                try:
                    msg = await ws.receive(timeout=self.config.ws_idle_timeout_s)
                except TimeoutError:
                    await ws.close()
                    break
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    break
                if msg.type == WSMsgType.TEXT:
                    self._on_ws_message(conn, msg.data)
        finally:
            self.connections.discard(conn)
            conn.queue.put_nowait(None)
            await writer
        return ws

    def _on_ws_message(self, conn: _Connection, text: str) -> None:
        try:
            msg = json.loads(text)
            method = msg.get("method")
        except (ValueError, AttributeError):
            conn.queue.put_nowait(json.dumps({"channel": "error", "data": text}))
            return
        if method == "ping":
            conn.queue.put_nowait(json.dumps({"channel": "pong"}))
            return
        sub = msg.get("subscription")
        if method not in ("subscribe", "unsubscribe") or not isinstance(sub, dict):
            conn.queue.put_nowait(
                json.dumps({"channel": "error", "data": f"Invalid subscription {text}"})
            )
            return
        ack = {"channel": "subscriptionResponse", "data": {"method": method, "subscription": sub}}
        if method == "unsubscribe":
            conn.subscriptions = [s for s in conn.subscriptions if s != sub]
            conn.queue.put_nowait(json.dumps(ack))
            return
        conn.subscriptions.append(sub)
        conn.queue.put_nowait(json.dumps(ack))
        user = str(sub.get("user", "")).lower()
        if sub.get("type") == "userFills":
            fills = list(reversed(self.engine.user_fills(user)))
            data = {"isSnapshot": True, "user": user, "fills": fills}
            conn.queue.put_nowait(json.dumps({"channel": "userFills", "data": data}))
        elif sub.get("type") == "allMids":
            data_m = {"mids": self.engine.all_mids()}
            conn.queue.put_nowait(json.dumps({"channel": "allMids", "data": data_m}))

    def publish(self) -> None:
        """Send the engine's pending updates to the websocket subscribers."""
        outbox, self.engine.outbox = self.engine.outbox, []
        if not outbox:
            return
        fills: dict[str, list[Any]] = defaultdict(list)
        orders: dict[str, list[Any]] = defaultdict(list)
        for channel, user, payload in outbox:
            if channel == "userFills":
                fills[user].append(payload)
            elif channel == "orderUpdates":
                orders[user].extend(payload)
        mids = any(channel == "allMids" for channel, _, _ in outbox)
        for conn in list(self.connections):
            for user, batch in orders.items():
                if conn.wants("orderUpdates", user):
                    self._send(conn, "orderUpdates", user, batch)
            for user, batch in fills.items():
                if conn.wants("userFills", user):
                    self._send(conn, "userFills", user, {"user": user, "fills": batch})
            if mids and conn.wants("allMids", ""):
                self._send(conn, "allMids", "", {"mids": self.engine.all_mids()})

    def _send(self, conn: _Connection, channel: str, user: str, data: Any) -> None:
        text = json.dumps({"channel": channel, "data": data})
        fault = self._take_fault(
            ("ws_drop", "ws_duplicate", "ws_delay"), channel=channel, user=user or None
        )
        if fault is None:
            conn.queue.put_nowait(text)
        elif fault.kind == "ws_drop":
            self._drop(conn)
        elif fault.kind == "ws_duplicate":
            conn.queue.put_nowait(text)
            conn.queue.put_nowait(text)
        else:
            loop = asyncio.get_running_loop()
            loop.call_later(fault.delay_ms / 1000, conn.queue.put_nowait, text)

    def _drop(self, conn: _Connection) -> None:
        self.connections.discard(conn)
        conn.queue.put_nowait(None)
        if conn.ws._req is not None and conn.ws._req.transport is not None:
            conn.ws._req.transport.abort()

    def drop_websockets(self) -> int:
        """Close every websocket connection abruptly; returns how many there were."""
        conns = list(self.connections)
        for conn in conns:
            self._drop(conn)
        return len(conns)

    # ------------------------------------------------------------------ script and control

    def step(self, steps: int = 0, fills: int = 0) -> dict[str, Any]:
        """Play ``steps`` timeline steps, or until ``fills`` more lead fills have played."""
        target = self.script.fills_played + fills
        taken = 0
        while not self.script.done and (taken < steps or self.script.fills_played < target):
            step = self.script.next_step()
            if step is not None:
                self._apply(step)
            taken += 1
        self.publish()
        return {**self.status(), "published_at": time.time()}

    def _apply(self, step: Step) -> None:
        if step.position_after is None:
            self.engine.set_mid(step.coin, step.price)
            return
        self.engine.lead_fill(
            self.lead_address,
            step.coin,
            self.engine.by_coin[step.coin].round_price(step.price),
            step.position_after,
            equity=step.equity,
            fee=step.fee,
            leverage=step.leverage,
            parts=self.config.lead_fill_parts,
        )

    def status(self) -> dict[str, Any]:
        """Script position, lead address, clock, counts."""
        return {
            "lead": self.lead_address,
            "script": self.script.status(),
            "time": self.clock.now_ms(),
            "accounts": len(self.engine.accounts),
            "orders_logged": len(self.order_log),
            "websockets": len(self.connections),
        }

    def fund(self, user: str, usdc: Decimal) -> dict[str, Any]:
        """Credit USDC to an account (created if new)."""
        acct = self.engine.fund(user, usdc)
        return {"user": acct.address, "balance": fmt(acct.cash)}

    def set_mids(self, mids: Mapping[str, Any]) -> dict[str, str]:
        """Set mids (and fill the resting orders they reach)."""
        for coin, px in mids.items():
            if coin not in self.engine.by_coin:
                raise InvalidInput(f"unknown coin {coin!r}", field="mids", value=coin)
            self.engine.set_mid(coin, Decimal(str(px)))
        self.publish()
        return self.engine.all_mids()

    def orders(
        self, user: str | None = None, cloid: str | None = None, after: int = 0
    ) -> list[dict[str, Any]]:
        """The order log, optionally for one user or cloid, from sequence number ``after + 1``."""
        return [
            entry
            for entry in self.order_log[max(0, after) :]
            if (user is None or entry["user"] == user.lower())
            and (cloid is None or entry["cloid"] == cloid.lower())
        ]

    async def _control(
        self, request: web.Request, fn: Callable[[dict[str, Any]], Any]
    ) -> web.Response:
        try:
            body = await request.json() if request.can_read_body else {}
            return web.json_response(fn(body))
        except (InvalidInput, ValueError, KeyError, TypeError, InvalidOperation) as exc:
            return web.json_response({"error": str(exc)}, status=400)

    async def ctl_fund(self, request: web.Request) -> web.Response:
        def fn(b: dict[str, Any]) -> Any:
            accounts = b.get("accounts") or {b["user"]: b["usdc"]}
            return [self.fund(u, Decimal(str(v))) for u, v in accounts.items()]

        return await self._control(request, fn)

    async def ctl_agent(self, request: web.Request) -> web.Response:
        def fn(b: dict[str, Any]) -> Any:
            self.engine.approve_agent(str(b["user"]), str(b["agent"]))
            return {"user": str(b["user"]).lower(), "agent": str(b["agent"]).lower()}

        return await self._control(request, fn)

    async def ctl_mids(self, request: web.Request) -> web.Response:
        return await self._control(request, lambda b: self.set_mids(b["mids"]))

    async def ctl_step(self, request: web.Request) -> web.Response:
        return await self._control(
            request, lambda b: self.step(int(b.get("steps", 0)), int(b.get("fills", 0)))
        )

    async def ctl_clock(self, request: web.Request) -> web.Response:
        return await self._control(
            request, lambda b: {"time": self.clock.advance(int(b["advance_ms"]))}
        )

    async def ctl_add_fault(self, request: web.Request) -> web.Response:
        return await self._control(request, self.add_fault)

    async def ctl_faults(self, _: web.Request) -> web.Response:
        return web.json_response([f.view() for f in self.faults])

    async def ctl_clear_faults(self, _: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response([])

    async def ctl_drop(self, _: web.Request) -> web.Response:
        return web.json_response({"dropped": self.drop_websockets()})

    async def ctl_orders(self, request: web.Request) -> web.Response:
        q = request.query
        return await self._control(
            request, lambda _: self.orders(q.get("user"), q.get("cloid"), int(q.get("after", 0)))
        )

    async def ctl_status(self, _: web.Request) -> web.Response:
        return web.json_response(self.status())


def _ok(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"status": "ok", "response": {"type": kind, "data": data}}


_SPOT_META: dict[str, Any] = {
    "universe": [],
    "tokens": [
        {
            "name": "USDC",
            "szDecimals": 8,
            "weiDecimals": 8,
            "index": 0,
            "tokenId": "0x6d1e7cde53ba9467b783cb7c530ce054",
            "isCanonical": True,
            "evmContract": None,
            "fullName": None,
        }
    ],
}


def _markets() -> Any:
    from levalign.markets import load_markets

    return load_markets("hyperliquid")


class HyperliquidSandbox:
    """A sandbox on a background thread, for tests and notebooks.

    ``with HyperliquidSandbox(SandboxConfig(...)) as sb:`` starts the server on a free port of
    127.0.0.1 (``sb.base_url``) and stops it on exit. The methods below change the sandbox
    from the calling thread, running on the server's event loop.

    Parameters
    ----------
    config
        What to serve (default: no lead, nothing funded, manual stepping).
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self._server = _Server(self.config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: give it to the SDK as ``base_url``."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def lead_address(self) -> str:
        """The scripted lead's address."""
        return self._server.lead_address

    def __enter__(self) -> HyperliquidSandbox:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start serving; call once.

        Raises
        ------
        ConfigurationError
            The port is taken.
        """
        sock = _bind(self.config.host, self.config.port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(self._server.app(), handle_signals=False)
        self._run(self._start(self._runner, sock))

    async def _start(self, runner: web.AppRunner, sock: socket.socket) -> None:
        await runner.setup()
        await web.SockSite(runner, sock).start()

    def stop(self) -> None:
        """Stop serving, close every connection and the loop's thread."""
        if self._runner is not None:
            self._run(self._runner.cleanup())
            self._runner = None
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
            self._loop = self._thread = None

    def _run(self, coro: Awaitable[T]) -> T:
        async def wrap() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrap(), self._running_loop()).result()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise ConfigurationError(
                "the sandbox is not running: use it as a context manager or call start()"
            )
        return self._loop

    def _call(self, fn: Callable[[], T]) -> T:
        async def wrap() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrap(), self._running_loop()).result()

    def fund(self, user: str, usdc: Decimal | float | str) -> dict[str, Any]:
        """Credit USDC to ``user`` (creating the account)."""
        return self._call(lambda: self._server.fund(user, Decimal(str(usdc))))

    def approve_agent(self, user: str, agent: str) -> None:
        """Let ``agent`` sign for ``user`` without an ``approveAgent`` action."""
        self._call(lambda: self._server.engine.approve_agent(user, agent))

    def set_mids(self, mids: Mapping[str, Decimal | float | str]) -> dict[str, str]:
        """Set mids by coin; resting orders they reach fill."""
        return self._call(lambda: self._server.set_mids(mids))

    def step(self, steps: int = 0, *, fills: int = 0) -> dict[str, Any]:
        """Play ``steps`` script steps, or until ``fills`` more lead fills have played."""
        return self._call(lambda: self._server.step(steps, fills))

    def advance_clock(self, ms: int) -> int:
        """Move the sandbox clock forward."""
        return self._call(lambda: self._server.clock.advance(ms))

    def inject(
        self,
        kind: str,
        *,
        count: int = 1,
        status: int = 500,
        delay_ms: int = 0,
        path: str | None = None,
        action: str | None = None,
        channel: str | None = None,
        user: str | None = None,
    ) -> dict[str, Any]:
        """Arm a fault (kinds and meaning: :data:`FAULT_KINDS`)."""
        spec = {
            "kind": kind,
            "count": count,
            "status": status,
            "delay_ms": delay_ms,
            "path": path,
            "action": action,
            "channel": channel,
            "user": user,
        }
        return self._call(lambda: self._server.add_fault(spec))

    def faults(self) -> list[dict[str, Any]]:
        """Armed faults with how often each has fired."""
        return self._call(lambda: [f.view() for f in self._server.faults])

    def drop_websockets(self) -> int:
        """Close every websocket connection now."""
        return self._call(self._server.drop_websockets)

    def orders(
        self, user: str | None = None, cloid: str | None = None, after: int = 0
    ) -> list[dict[str, Any]]:
        """The order log: every order wire received, in order, with its outcome."""
        return self._call(lambda: self._server.orders(user, cloid, after))

    def status(self) -> dict[str, Any]:
        """Script position, lead address, clock, counts."""
        return self._call(self._server.status)


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port",
            field="port",
            value=port,
        ) from exc
    sock.listen(128)
    return sock


def serve(config: SandboxConfig, *, ready: Callable[[str, str], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM (the CLI command); ``ready(base_url, lead)`` once listening."""

    async def main() -> None:
        server = _Server(config)
        runner = web.AppRunner(server.app(), handle_signals=False)
        await runner.setup()
        sock = _bind(config.host, config.port)
        await web.SockSite(runner, sock).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)  # the main thread of a Unix process
        if ready is not None:
            ready(f"http://{config.host}:{sock.getsockname()[1]}", server.lead_address)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
