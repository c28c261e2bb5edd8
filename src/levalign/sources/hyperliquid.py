"""A Hyperliquid lead wallet as a lead source: websocket ``userFills`` plus REST backfill.

The source owns its connection layer (the SDK's ``WebsocketManager`` neither reconnects nor
backfills). On every connection it subscribes to ``userFills`` for the lead at
``{base_url}/ws`` (``https`` becomes ``wss``, ``http`` becomes ``ws``, as the SDK maps them),
takes the subscription's snapshot, reads the lead's state (``clearinghouseState``), backfills
the history since its cursor (``userFillsByTime``), then follows the stream.

Cursor
    ``(start, fills)``: every fill before ``start`` (epoch ms) is processed, and ``fills``
    holds ``(time, tid)`` of the fills processed since. ``start`` trails the newest fill
    processed by ``window_ms`` (10 s): a fill that a delayed message brings after later
    fills of another coin is still recognised as new, after a restart too. ``tid`` is unique
    but not ordered, so fills are told apart by the set, not by comparison. Every event
    carries the cursor just past its fills; the engine commits both together.

First start (no cursor)
    The lead's state at time ``T`` (``clearinghouseState``'s ``time``) holds every fill before
    ``T``: those fills are history (their positions are the initial state, reported and not
    copied), and fills after ``T`` are events. A fill of the millisecond ``T`` itself is an
    event when its ``startPosition`` continues the state's position of its coin (or the
    previous event's), and history otherwise (the state already holds it).

Backfill
    After a restart or a reconnect, ``userFillsByTime`` from the cursor's ``start``
    (inclusive) to now, one page after another: a page holds at most 2,000 fills
    (Hyperliquid's limit); while a page is full, the next starts at the time of its last fill,
    and fills seen twice are dropped by ``tid``. The history reaches back far enough when it
    contains one of the cursor's trade ids (Hyperliquid keeps only the 10,000 most recent
    fills of an account), or, for a cursor that holds none, when it has fewer than 10,000
    fills; if it does not, a ``history_truncated`` gap is reported. A page of 2,000 fills in one
    millisecond cannot be paged past: a ``page_overflow`` gap.

De-duplication and order
    A fill already processed (by the cursor) or seen recently (by ``tid``) is not an event
    again, so duplicated messages, the snapshot's overlap with the backfill, and a delayed
    message are harmless; the processed fills of the cursor's window that a backfill brings
    again only move the tracked positions. Fills are processed in time order; within one
    millisecond of one coin, in the order in which each fill's ``startPosition`` continues
    the previous fill's position (from the tracked position, or else from the fill that
    starts where no other one ends).

Grouping rule (one lead event per lead order and arrival)
    The fills of one batch (one websocket message; or the snapshot, the backfill and the
    messages that arrived meanwhile, taken together after a (re)connect) are put in the order
    above; then each run of consecutive fills with the same ``coin``, ``oid`` and ``time``
    becomes one lead event. An order that crosses several resting orders in one block, or a
    resting order hit by several takers in one block, is one event; the fills of one order in
    different blocks (different times) are separate events; two orders interleaved in one
    block stay separate runs, so that every event's positions are exact.

Event fields
    ``symbol``: levalign's market symbol for the coin (``BTC`` -> ``BTC/USDC:USDC``; the
    ``hyperliquid`` preset's ids, else ``{coin}/USDC:USDC``). ``price``: the size-weighted mean
    fill price. ``lead_position_before``: the first fill's ``startPosition``;
    ``lead_position_after``: that plus the signed sizes (``B`` buys, ``A`` sells), in exact
    decimals. ``lead_equity``: the last ``clearinghouseState`` account value less the fees of
    fills after that report (refreshed at start, after each reconnect and every
    ``state_interval`` seconds). ``event_id``: ``hyperliquid:{lead}:{tid of the first fill}``.
    Spot fills (coins ``@n`` or ``BASE/QUOTE``) are not events; they only advance the cursor.

Continuity
    Each fill's ``startPosition`` must equal the position the earlier fills of its coin add
    up to. When it does not, the source backfills from its cursor first (a delayed message
    is then found); if it still does not, it reports a ``position_mismatch`` gap and follows
    the venue's ``startPosition`` from there.

Heartbeat and reconnects
    ``{"method": "ping"}`` every ``ping_interval`` seconds (Hyperliquid closes a connection
    that has sent nothing for 60 s); no message at all (a pong included) for ``stale_timeout``
    seconds means the connection is dead: it is closed and reopened. Reconnects wait with
    exponential backoff and full jitter (:class:`levalign.sources.base.Backoff`), reset by a
    connection that lived a minute; a source that never connected gives up after
    :data:`FIRST_CONNECT_ATTEMPTS` attempts (``ConfigurationError`` naming ``base_url``). REST
    calls that meet a 429, a 5xx or a network error are retried with the same backoff, up to
    ``rest_retries`` times, before the connection is restarted.

Gaps
    Never silent: logged at ERROR, counted in :attr:`HyperliquidSource.metrics` and yielded as
    :class:`~levalign.sources.base.SourceGap` (``history_truncated``, ``page_overflow``,
    ``position_mismatch``, ``malformed_fill``, ``equity_not_positive``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol

from levalign.errors import ConfigurationError, InvalidInput, Retryable
from levalign.schemas import LeadEvent
from levalign.sources.base import (
    Backoff,
    CursorStore,
    LeadState,
    SourceEvent,
    SourceGap,
    SourceItem,
)

if TYPE_CHECKING:
    import aiohttp

    from levalign.markets import Markets

__all__ = [
    "FIRST_CONNECT_ATTEMPTS",
    "HISTORY_LIMIT",
    "PAGE_LIMIT",
    "Fill",
    "HyperliquidSource",
    "SourceCursor",
    "SourceMetrics",
    "SourceSettings",
    "group_fills",
    "info_url",
    "order_fills",
    "ws_url",
]

log = logging.getLogger(__name__)

PAGE_LIMIT = 2000
"""Most fills one ``userFillsByTime`` response holds (Hyperliquid docs, Info endpoint)."""

HISTORY_LIMIT = 10_000
"""Most recent fills of an account that ``userFillsByTime`` can return (same source)."""

FIRST_CONNECT_ATTEMPTS = 5
"""Failed connections before a source that never connected gives up on its ``base_url``."""

HEALTHY_CONNECTION_S = 60.0
"""A connection that lived this long resets the reconnect backoff."""

_ZERO = Decimal(0)


def ws_url(base_url: str) -> str:
    """The websocket address for a REST ``base_url``: ``https://h`` -> ``wss://h/ws``."""
    base = base_url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise InvalidInput(
            f"base_url must start with http:// or https://, got {base_url!r}",
            field="base_url",
            value=base_url,
        )
    return "ws" + base[len("http") :] + "/ws"


def info_url(base_url: str) -> str:
    """The REST info endpoint for ``base_url``."""
    return base_url.rstrip("/") + "/info"


def _dec(raw: Mapping[str, Any], name: str) -> Decimal:
    try:
        value = Decimal(str(raw[name]))
    except (KeyError, InvalidOperation) as exc:
        raise InvalidInput(
            f"fill field {name!r} is missing or not a number: {raw.get(name)!r}",
            field=f"fill.{name}",
            value=raw.get(name),
        ) from exc
    if not value.is_finite():
        raise InvalidInput(f"fill field {name!r} is not finite", field=f"fill.{name}")
    return value


@dataclass(frozen=True)
class Fill:
    """One Hyperliquid fill of the lead, numbers as exact decimals."""

    coin: str
    px: Decimal
    sz: Decimal
    side: str
    time: int
    start_position: Decimal
    oid: int
    tid: int
    fee: Decimal
    hash: str = ""

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> Fill:
        """Parse a fill as ``userFills`` and ``userFillsByTime`` send it."""
        side = str(raw.get("side", ""))
        if side not in ("A", "B"):
            raise InvalidInput(f"fill side must be 'A' or 'B', got {side!r}", field="fill.side")
        try:
            coin, when = str(raw["coin"]), int(raw["time"])
            oid, tid = int(raw["oid"]), int(raw["tid"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"fill lacks coin, time, oid or tid: {raw!r}", field="fill") from exc
        return cls(
            coin=coin,
            px=_dec(raw, "px"),
            sz=_dec(raw, "sz"),
            side=side,
            time=when,
            start_position=_dec(raw, "startPosition"),
            oid=oid,
            tid=tid,
            fee=_dec(raw, "fee") if "fee" in raw else _ZERO,
            hash=str(raw.get("hash", "")),
        )

    @property
    def signed_size(self) -> Decimal:
        """Size with its sign: positive for a buy (``B``), negative for a sell (``A``)."""
        return self.sz if self.side == "B" else -self.sz

    @property
    def end_position(self) -> Decimal:
        """The position after this fill: ``startPosition`` plus the signed size."""
        return self.start_position + self.signed_size

    @property
    def is_perp(self) -> bool:
        """False for spot coins (``@107``, ``PURR/USDC``)."""
        return not (self.coin.startswith("@") or "/" in self.coin)


@dataclass(frozen=True)
class SourceCursor:
    """Position in the lead's fill history: see the module docstring, "Cursor".

    Attributes
    ----------
    start
        Every fill before this time (epoch ms) is processed.
    fills
        ``(time, tid)`` of the fills processed at or after ``start``.
    """

    start: int
    fills: frozenset[tuple[int, int]] = frozenset()
    tids: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tids", frozenset(tid for _, tid in self.fills))

    @property
    def newest(self) -> int:
        """Time of the newest fill processed (``start`` when none is held)."""
        return max((t for t, _ in self.fills), default=self.start)

    def covers(self, fill: Fill) -> bool:
        """True when ``fill`` was processed already."""
        return fill.time < self.start or fill.tid in self.tids

    def advanced(self, fill: Fill, window_ms: int = 0) -> SourceCursor:
        """The cursor with ``fill`` processed, keeping the fills of the last ``window_ms``.

        ``start`` moves up to ``newest − window_ms``; the fills before it are dropped from
        ``fills``. With a window of 0 only the fills of the newest millisecond are held.
        """
        held = self.fills | {(fill.time, fill.tid)}
        start = max(self.start, max(t for t, _ in held) - window_ms)
        return SourceCursor(start, frozenset(f for f in held if f[0] >= start))

    @classmethod
    def resume(cls, time_ms: int, tid: int, window_ms: int = 10_000) -> SourceCursor:
        """A cursor rebuilt from the newest fill only (a store that keeps ``(time, tid)``).

        It starts ``window_ms`` before that fill and holds only it, so the fills of the window
        come again: every one not yet processed is found, and those already processed come
        back as events with the same ``event_id``, which the store must ignore (it does:
        an event is recorded once). The exact cursor is :meth:`to_text`'s.
        """
        return cls(time_ms - window_ms, frozenset({(time_ms, tid)}))

    def to_text(self) -> str:
        """JSON text, stable (fills sorted)."""
        data = {"start": self.start, "fills": sorted(self.fills)}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str) -> SourceCursor:
        """Parse :meth:`to_text`'s output."""
        try:
            data = json.loads(text)
            held = frozenset((int(t), int(tid)) for t, tid in data["fills"])
            return cls(int(data["start"]), held)
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(
                f"unreadable Hyperliquid source cursor {text!r}: expected "
                '{"start": <ms>, "fills": [[<ms>, <trade id>], ...]}',
                field="cursor",
                value=text,
            ) from exc


def order_fills(fills: Iterable[Fill], positions: Mapping[str, Decimal]) -> list[Fill]:
    """Fills in processing order: by time; within one time and coin, by position chain.

    Within one millisecond, each coin's fills are taken in the order in which a fill's
    ``startPosition`` equals the position after the previous one, starting from
    ``positions[coin]`` when known; fills that continue no chain keep their arrival order.
    """
    by_time: dict[int, list[Fill]] = {}
    for f in fills:
        by_time.setdefault(f.time, []).append(f)
    here = dict(positions)
    out: list[Fill] = []
    for when in sorted(by_time):
        batch = by_time[when]
        coins = list(dict.fromkeys(f.coin for f in batch))
        chained: dict[str, list[Fill]] = {c: _chain(batch, c, here.get(c)) for c in coins}
        taken = dict.fromkeys(coins, 0)
        for f in batch:  # keep the interleaving of coins as they arrived
            out.append(chained[f.coin][taken[f.coin]])
            taken[f.coin] += 1
        for coin, run in chained.items():
            here[coin] = run[-1].end_position
    return out


def _chain(batch: Sequence[Fill], coin: str, start: Decimal | None) -> list[Fill]:
    rest = [f for f in batch if f.coin == coin]
    if len(rest) == 1:
        return rest
    out: list[Fill] = []
    if start is None:  # the chain's root: the fill that starts where no other one ends
        ends = {f.end_position for f in rest}
        here = next((f for f in rest if f.start_position not in ends), rest[0]).start_position
    else:
        here = start
    while rest:
        nxt = next((f for f in rest if f.start_position == here), rest[0])
        rest.remove(nxt)
        out.append(nxt)
        here = nxt.end_position
    return out


def group_fills(fills: Sequence[Fill], apart: Container[int] = frozenset()) -> list[list[Fill]]:
    """Runs of consecutive fills with the same coin, ``oid`` and time: one lead event each.

    Fills whose ``tid`` is in ``apart`` never share a run with fills whose ``tid`` is not.
    """
    groups: list[list[Fill]] = []
    for f in fills:
        if groups:
            last = groups[-1][-1]
            if (last.coin, last.oid, last.time, last.tid in apart) == (
                f.coin,
                f.oid,
                f.time,
                f.tid in apart,
            ):
                groups[-1].append(f)
                continue
        groups.append([f])
    return groups


@dataclass
class SourceMetrics:
    """Counters of a source's life, for logs and monitoring."""

    messages: int = 0
    fills: int = 0
    events: int = 0
    duplicates: int = 0
    connects: int = 0
    reconnects: int = 0
    backfills: int = 0
    backfill_pages: int = 0
    rest_retries: int = 0
    gaps: int = 0
    spot_fills: int = 0
    late_fills: int = 0


class RequestLimiter(Protocol):
    """A rate limit shared by REST clients (``levalign.venues.hyperliquid.RateLimiter``)."""

    def reserve(self, weight: float) -> float:
        """Take ``weight`` from the budget; return the seconds to wait before sending."""
        ...


class _Stale(Exception):  # noqa: N818 - internal signal, never leaves the module
    """No message within the stale timeout: the connection is dead."""


class _Closed(Exception):  # noqa: N818 - internal signal, never leaves the module
    """:meth:`HyperliquidSource.close` was called."""


@dataclass
class _LeadBook:
    """The lead's state as the source tracks it between ``clearinghouseState`` reports."""

    equity: Decimal = _ZERO
    state_time: int = 0
    fees_since: Decimal = _ZERO
    positions: dict[str, Decimal] = field(default_factory=dict)
    last_px: dict[str, Decimal] = field(default_factory=dict)
    leverage: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceSettings:
    """How a source connects, retries and keeps time.

    Attributes
    ----------
    ping_interval
        Seconds between heartbeats.
    stale_timeout
        Seconds without any message after which the connection is restarted.
    state_interval
        Seconds between ``clearinghouseState`` refreshes of the lead's equity.
    request_timeout
        Seconds for one REST request, the websocket handshake, and the wait for the snapshot.
    rest_retries
        REST attempts on 429, 5xx and network errors before the connection restarts.
    window_ms
        How far the cursor's ``start`` trails the newest fill processed (the reorder window).
    backoff
        Reconnect and REST retry delays; give it a seeded ``random.Random`` in tests.
    limiter
        A rate limiter shared by the REST clients of one IP
        (:class:`levalign.venues.hyperliquid.RateLimiter`), or ``None``.
    """

    ping_interval: float = 20.0
    stale_timeout: float = 60.0
    state_interval: float = 30.0
    request_timeout: float = 10.0
    rest_retries: int = 5
    window_ms: int = 10_000
    backoff: Backoff = field(default_factory=Backoff)
    limiter: RequestLimiter | None = None

    def __post_init__(self) -> None:
        for name in ("ping_interval", "stale_timeout", "state_interval", "request_timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise InvalidInput(f"{name} must be positive, got {value}", field=name)
        for name in ("rest_retries", "window_ms"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"{name} must not be negative", field=name)


class HyperliquidSource:
    """The fills of one Hyperliquid account, as lead events, exactly once and in order.

    Parameters
    ----------
    address
        The lead's address (``0x`` and 40 hex digits).
    base_url
        Hyperliquid's API, ``https://api.hyperliquid.xyz`` or a compatible server.
    cursor_store
        Where the committed cursor is read from at start (the engine saves it with each
        event); ``None`` starts fresh.
    markets
        Market specs for coin -> symbol mapping (default: the ``hyperliquid`` preset).
    settings
        Heartbeat, timeouts, retries, reorder window, backoff and rate limiter.

    Examples
    --------
    >>> async def follow(source):  # doctest: +SKIP
    ...     async for item in source.events():
    ...         print(item)
    """

    def __init__(
        self,
        address: str,
        base_url: str,
        *,
        cursor_store: CursorStore | None = None,
        markets: Markets | None = None,
        settings: SourceSettings | None = None,
    ) -> None:
        if not (
            isinstance(address, str)
            and len(address) == 42
            and address.startswith("0x")
            and all(c in "0123456789abcdefABCDEF" for c in address[2:])
        ):
            raise InvalidInput(
                f"lead address must be 0x followed by 40 hex digits, got {address!r}",
                field="lead.address",
                value=address,
            )
        self.address = address.lower()
        self.base_url = base_url.rstrip("/")
        self._ws_url = ws_url(base_url)
        self._info_url = info_url(base_url)
        self._cursor_store = cursor_store
        self._markets = markets
        self.settings = settings or SourceSettings()
        self.metrics = SourceMetrics()
        self.cursor: SourceCursor | None = None
        self._book = _LeadBook()
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._seen_max = 4 * HISTORY_LIMIT
        self._symbols: dict[str, str] = {}
        self._state_positions: dict[str, Decimal] = {}
        self._floor = 0
        self._boundary: int | None = None
        self._pending_gaps: list[SourceGap] = []
        self._closed = asyncio.Event()
        self._queue: asyncio.Queue[tuple[str, Any]] | None = None
        self._started = False

    def __repr__(self) -> str:
        return f"HyperliquidSource(address={self.address!r}, base_url={self.base_url!r})"

    # ------------------------------------------------------------------ public

    async def close(self) -> None:
        """Stop: the iterator ends at its next wait; the open connection is closed."""
        self._closed.set()
        if self._queue is not None:
            self._queue.put_nowait(("closed", None))

    @property
    def positions(self) -> dict[str, float]:
        """The lead's positions as the source last knew them, by levalign symbol."""
        return {self.symbol(c): float(q) for c, q in self._book.positions.items() if q != 0}

    def symbol(self, coin: str) -> str:
        """The levalign market symbol for a Hyperliquid perpetual coin (``BTC/USDC:USDC``)."""
        found = self._symbols.get(coin)
        if found is None:
            found = f"{coin}/USDC:USDC"
            if self._markets is None:
                from levalign.markets import load_markets

                self._markets = load_markets("hyperliquid")
            with contextlib.suppress(InvalidInput):
                found = self._markets.resolve(coin)
            self._symbols[coin] = found
        return found

    async def events(self) -> AsyncIterator[SourceItem]:
        """Yield the initial :class:`LeadState`, then events and gaps, until :meth:`close`.

        Once connected, connection failures never end the iterator: the source reconnects
        with backoff and backfills.

        Raises
        ------
        ConfigurationError
            If the first :data:`FIRST_CONNECT_ATTEMPTS` connections all fail (``base_url``
            names no reachable server), or a REST request is refused with a 4xx other than
            429 (such as an unknown address format).
        """
        import aiohttp

        if self._started:
            raise InvalidInput("events() can be iterated once per source", field="events")
        self._started = True
        if self.cursor is None and self._cursor_store is not None:
            text = self._cursor_store.load()
            self.cursor = SourceCursor.from_text(text) if text else None
        self.symbol("BTC")  # the market table, loaded now rather than on the first event
        attempt = 0
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while not self._closed.is_set():
                opened = time.monotonic()
                try:
                    async for item in self._connection(http):
                        yield item
                        if self._closed.is_set():
                            return
                except _Closed:
                    return
                except (OSError, TimeoutError, _Stale, Retryable) as exc:
                    self._note_drop(exc)
                except Exception as exc:  # websockets' ConnectionClosed and handshake errors
                    if not _is_ws_error(exc):
                        raise
                    self._note_drop(exc)
                if self._closed.is_set():
                    return
                if self.metrics.connects == 0 and attempt + 1 >= FIRST_CONNECT_ATTEMPTS:
                    raise ConfigurationError(
                        f"cannot reach Hyperliquid at {self._ws_url} after "
                        f"{FIRST_CONNECT_ATTEMPTS} attempts: check base_url and the network",
                        field="base_url",
                        value=self.base_url,
                    )
                # a connection that lived a minute resets the backoff (Hyperliquid allows 30
                # new connections per minute); one that dropped sooner backs off further
                lived = time.monotonic() - opened
                attempt = 0 if lived >= HEALTHY_CONNECTION_S else attempt + 1
                self.metrics.reconnects += 1
                delay = self.settings.backoff.delay(attempt)
                log.info("source %s: reconnecting in %.2f s", self.address, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), timeout=delay)

    # ------------------------------------------------------------------ connection

    def _note_drop(self, exc: BaseException) -> None:
        log.warning("source %s: connection lost (%s: %s)", self.address, type(exc).__name__, exc)

    async def _connection(self, http: aiohttp.ClientSession) -> AsyncIterator[SourceItem]:
        from websockets.asyncio.client import connect

        async with connect(
            self._ws_url,
            ping_interval=None,
            open_timeout=self.settings.request_timeout,
            max_size=2**24,
        ) as ws:
            self.metrics.connects += 1
            queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
            self._queue = queue
            if self._closed.is_set():
                return
            subscription = {"type": "userFills", "user": self.address}
            await ws.send(json.dumps({"method": "subscribe", "subscription": subscription}))
            reader = asyncio.create_task(self._read(ws, queue))
            pinger = asyncio.create_task(self._ping(ws))
            try:
                async for item in self._session(http, queue):
                    yield item
            finally:
                reader.cancel()
                pinger.cancel()
                for task in (reader, pinger):
                    with contextlib.suppress(BaseException):
                        await task

    async def _read(self, ws: Any, queue: asyncio.Queue[tuple[str, Any]]) -> None:
        try:
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=self.settings.stale_timeout)
                except TimeoutError:
                    raise _Stale(f"no message for {self.settings.stale_timeout} s") from None
                self.metrics.messages += 1
                try:
                    msg = json.loads(raw)
                except ValueError:
                    log.debug("source %s: non-JSON message %r", self.address, raw[:80])
                    continue
                if not isinstance(msg, dict) or msg.get("channel") != "userFills":
                    continue  # pong, subscriptionResponse, other channels
                data = msg.get("data") or {}
                if str(data.get("user", self.address)).lower() != self.address:
                    continue
                kind = "snapshot" if data.get("isSnapshot") else "stream"
                await queue.put((kind, list(data.get("fills") or [])))
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                await queue.put(("error", exc))
            raise

    async def _ping(self, ws: Any) -> None:
        while True:
            await asyncio.sleep(self.settings.ping_interval)
            await ws.send(json.dumps({"method": "ping"}))

    async def _next(self, queue: asyncio.Queue[tuple[str, Any]], wait: float) -> tuple[str, Any]:
        kind, payload = await asyncio.wait_for(queue.get(), timeout=wait)
        if kind == "error":
            raise payload
        if kind == "closed":
            raise _Closed
        return kind, payload

    async def _session(
        self, http: aiohttp.ClientSession, queue: asyncio.Queue[tuple[str, Any]]
    ) -> AsyncIterator[SourceItem]:
        # 1. the snapshot (history, used for de-duplication) and what streamed meanwhile
        pending = await self._await_snapshot(queue)
        # 2. the lead's state, then the history since the cursor
        state = await self._fetch_state(http)
        yield state
        backfilled, gaps = await self._resume(http, state)
        for gap in gaps:
            yield self._gap(gap)
        # 3. the backfill, the snapshot and the messages that came meanwhile: one batch
        pending += await self._drain(queue)
        first = [f for _, raws in pending for f in self._parse(raws)]
        origin = "backfill" if backfilled else ("snapshot" if pending else "stream")
        async for item in self._process(http, [*backfilled, *first], origin):
            yield item
        # 4. the stream
        last_state = time.monotonic()
        interval = self.settings.state_interval
        while True:
            wait = max(interval - (time.monotonic() - last_state), 0.001)
            try:
                kind, raws = await self._next(queue, wait)
            except TimeoutError:
                kind, raws = "", []
            if time.monotonic() - last_state >= interval:
                await self._fetch_state(http)
                last_state = time.monotonic()
            if kind:
                async for item in self._process(http, self._parse(raws), kind):
                    yield item

    async def _await_snapshot(
        self, queue: asyncio.Queue[tuple[str, Any]]
    ) -> list[tuple[str, list[Any]]]:
        """The messages up to and including the snapshot (or until the wait runs out)."""
        pending: list[tuple[str, list[Any]]] = []
        deadline = time.monotonic() + self.settings.request_timeout
        while True:
            try:
                kind, fills = await self._next(queue, max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                log.info("source %s: no snapshot; backfill alone", self.address)
                return pending
            pending.append((kind, fills))
            if kind == "snapshot":
                return pending

    async def _drain(self, queue: asyncio.Queue[tuple[str, Any]]) -> list[tuple[str, list[Any]]]:
        """The messages already received, without waiting for more."""
        out: list[tuple[str, list[Any]]] = []
        while True:
            try:
                out.append(await self._next(queue, 0.0001))
            except TimeoutError:
                return out

    async def _resume(
        self, http: aiohttp.ClientSession, state: LeadState
    ) -> tuple[list[Fill], list[SourceGap]]:
        """First start: the state is the boundary. Otherwise: the backfill since the cursor."""
        if self.cursor is None:
            self.cursor = SourceCursor(state.time_ms)
            self._book.positions = dict(self._state_positions)
            self._boundary = state.time_ms
            self._floor = self.cursor.start
            return [], []
        self._floor = self.cursor.start
        return await self._backfill(http)

    def _parse(self, raws: Iterable[Any]) -> list[Fill]:
        out = []
        for raw in raws:
            try:
                out.append(Fill.from_wire(raw))
            except InvalidInput as exc:
                self._pending_gaps.append(
                    SourceGap("malformed_fill", f"a fill could not be read: {exc.message}")
                )
        return out

    # ------------------------------------------------------------------ REST

    async def _post(self, http: aiohttp.ClientSession, body: dict[str, Any], weight: int) -> Any:
        import aiohttp

        attempt = 0
        while True:
            if self.settings.limiter is not None:
                delay = self.settings.limiter.reserve(weight)
                if delay > 0:
                    await asyncio.sleep(delay)
            try:
                async with http.post(self._info_url, json=body) as resp:
                    status = resp.status
                    text = await resp.text()
                problem = f"HTTP {status}" if status == 429 or status >= 500 else ""
                if 400 <= status < 500 and not problem:
                    raise ConfigurationError(
                        f"Hyperliquid info {body['type']} refused the request "
                        f"(HTTP {status}: {text[:200]}); check lead.address and base_url",
                        field="lead",
                        details={"status": status},
                    )
                if not problem:
                    return json.loads(text)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt >= self.settings.rest_retries:
                raise Retryable(
                    f"Hyperliquid info {body['type']} failed {attempt + 1} times ({problem})",
                    details={"request": body["type"]},
                )
            self.metrics.rest_retries += 1
            delay = self.settings.backoff.delay(attempt)
            attempt += 1
            log.info(
                "source %s: %s: %s; retry in %.2f s", self.address, body["type"], problem, delay
            )
            await asyncio.sleep(delay)

    async def _fetch_state(self, http: aiohttp.ClientSession) -> LeadState:
        data = await self._post(http, {"type": "clearinghouseState", "user": self.address}, 2)
        try:
            summary = data["marginSummary"]
            equity = Decimal(str(summary["accountValue"]))
            when = int(data.get("time") or 0)
            positions: dict[str, Decimal] = {}
            for entry in data.get("assetPositions") or []:
                pos = entry["position"]
                coin, szi = str(pos["coin"]), Decimal(str(pos["szi"]))
                if szi == 0:
                    continue
                positions[coin] = szi
                value = Decimal(str(pos.get("positionValue") or 0))
                entry_px = Decimal(str(pos.get("entryPx") or 0))
                self._book.last_px[coin] = value / abs(szi) if value > 0 else entry_px
                lev = (pos.get("leverage") or {}).get("value")
                if lev:
                    self._book.leverage[coin] = Decimal(str(lev))
        except (KeyError, TypeError, InvalidOperation) as exc:
            raise Retryable(f"malformed clearinghouseState: {exc}") from exc
        if when == 0:  # a server that leaves out the time: the newest fill known marks it
            when = self.cursor.newest if self.cursor is not None else 0
        book = self._book
        book.equity, book.state_time, book.fees_since = equity, when, _ZERO
        self._state_positions = positions
        return LeadState(
            time_ms=when,
            equity=float(equity),
            positions={self.symbol(c): float(q) for c, q in positions.items()},
            initial=self.cursor is None,
            prices={self.symbol(c): float(self._book.last_px[c]) for c in positions},
        )

    async def _backfill(self, http: aiohttp.ClientSession) -> tuple[list[Fill], list[SourceGap]]:
        """The fills since the cursor, in server order, de-duplicated by ``tid``."""
        cursor = self.cursor
        if cursor is None:
            return [], []
        self.metrics.backfills += 1
        gaps: list[SourceGap] = []
        found: dict[int, Fill] = {}
        start = cursor.start
        while True:
            body = {"type": "userFillsByTime", "user": self.address, "startTime": start}
            page = await self._post(http, body, 20 + PAGE_LIMIT // 20)
            if not isinstance(page, list):
                raise Retryable(f"userFillsByTime answered {str(page)[:200]}")
            self.metrics.backfill_pages += 1
            fills = self._parse(page)
            for f in fills:
                found.setdefault(f.tid, f)
            if len(page) < PAGE_LIMIT:
                break
            last = max(f.time for f in fills)
            if last <= start:
                gaps.append(
                    SourceGap(
                        "page_overflow",
                        f"{PAGE_LIMIT} fills of the lead in the millisecond {start}: fills "
                        "of that millisecond beyond one page may be missing",
                        since_ms=start,
                        until_ms=start,
                    )
                )
                last = start + 1
            start = last
        proven = any(t in found for t in cursor.tids) if cursor.tids else len(found) < HISTORY_LIMIT
        if not proven:
            gaps.append(
                SourceGap(
                    "history_truncated",
                    "the lead's fill history no longer reaches the cursor (Hyperliquid keeps "
                    f"the {HISTORY_LIMIT} most recent fills): fills between the cursor and the "
                    "oldest fill returned may be missing",
                    since_ms=cursor.start,
                    until_ms=min((f.time for f in found.values()), default=None),
                )
            )
        return list(found.values()), gaps

    # ------------------------------------------------------------------ processing

    def _gap(self, gap: SourceGap) -> SourceGap:
        self.metrics.gaps += 1
        log.error("source %s: GAP %s: %s", self.address, gap.reason, gap.message)
        return gap

    def _remember(self, tid: int) -> None:
        self._seen[tid] = None
        self._seen.move_to_end(tid)
        while len(self._seen) > self._seen_max:
            self._seen.popitem(last=False)

    def _fresh(self, fills: Iterable[Fill], origin: str) -> tuple[list[Fill], list[Fill]]:
        """The fills not processed yet, and those of the cursor's window fetched again.

        See the module docstring, "De-duplication". The second list (fills a backfill or a
        snapshot brings again, processed before a restart) only moves the tracked positions.
        """
        cursor = self.cursor
        out: list[Fill] = []
        again: list[Fill] = []
        batch: set[int] = set()
        for f in fills:
            if f.tid in self._seen or f.tid in batch:
                self.metrics.duplicates += 1
                continue
            if cursor is not None and cursor.covers(f):
                if origin != "stream" or f.tid in cursor.tids or f.time < self._floor:
                    self.metrics.duplicates += 1
                    self._remember(f.tid)
                    if origin != "stream" and f.time >= cursor.start:
                        batch.add(f.tid)
                        again.append(f)
                    continue
                self.metrics.late_fills += 1
                log.warning(
                    "source %s: fill %s (time %s) arrived after later fills",
                    self.address,
                    f.tid,
                    f.time,
                )
            batch.add(f.tid)
            out.append(f)
        return out, again

    def _ordered(self, fills: Sequence[Fill], origin: str) -> tuple[list[Fill], frozenset[int]]:
        """New and re-fetched fills in processing order, and the trade ids of the latter."""
        fresh, again = self._fresh(fills, origin)
        taken = {id(f) for f in fresh} | {id(f) for f in again}
        arrived = [f for f in fills if id(f) in taken]  # arrival order, for ties
        ordered = self._past_boundary(order_fills(arrived, self._book.positions))
        return ordered, frozenset(f.tid for f in again)

    def _past_boundary(self, fills: list[Fill]) -> list[Fill]:
        """Drop the fills of the first start's millisecond that its state already holds."""
        if self._boundary is None or not any(f.time == self._boundary for f in fills):
            return fills
        here = dict(self._book.positions)
        out: list[Fill] = []
        for f in fills:
            if f.time == self._boundary and f.is_perp:
                if f.start_position != here.get(f.coin, _ZERO):
                    self._remember(f.tid)
                    if self.cursor is not None:
                        self.cursor = self.cursor.advanced(f, self.settings.window_ms)
                    continue
                here[f.coin] = f.end_position
            out.append(f)
        return out

    def _breaks_chain(self, fills: Sequence[Fill]) -> bool:
        here = dict(self._book.positions)
        for f in fills:
            if not f.is_perp:
                continue
            known = here.get(f.coin)
            if known is not None and known != f.start_position:
                return True
            here[f.coin] = f.end_position
        return False

    async def _process(
        self, http: aiohttp.ClientSession, fills: Sequence[Fill], origin: str
    ) -> AsyncIterator[SourceItem]:
        while self._pending_gaps:
            yield self._gap(self._pending_gaps.pop(0))
        ordered, again = self._ordered(fills, origin)
        if not ordered:
            return
        if origin == "stream" and self._breaks_chain(ordered):
            log.warning("source %s: position chain broken; backfilling", self.address)
            backfilled, gaps = await self._backfill(http)
            for gap in gaps:
                yield self._gap(gap)
            ordered, again = self._ordered([*backfilled, *fills], "backfill")
            origin = "backfill"
        for group in group_fills(ordered, again):
            head = group[0]
            if head.tid in again:  # processed before a restart: it only moves the positions
                if head.is_perp:
                    self._book.positions[head.coin] = group[-1].end_position
                continue
            if head.is_perp:
                known = self._book.positions.get(head.coin)
                if known is not None and known != head.start_position:
                    yield self._gap(
                        SourceGap(
                            "position_mismatch",
                            f"lead {head.coin} position was {known} after the fills seen, but "
                            f"the next fill (tid {head.tid}) starts from {head.start_position}",
                            since_ms=self.cursor.newest if self.cursor else None,
                            until_ms=head.time,
                            symbol=self.symbol(head.coin),
                        )
                    )
            item = self._event(group, origin)
            if item is not None:
                yield item

    def _event(self, group: Sequence[Fill], origin: str) -> SourceEvent | SourceGap | None:
        book = self._book
        cursor = self.cursor or SourceCursor(0)
        for f in group:
            cursor = cursor.advanced(f, self.settings.window_ms)
            self._remember(f.tid)
            if f.time > book.state_time:
                book.fees_since += f.fee
        self.cursor = cursor
        self.metrics.fills += len(group)
        head = group[0]
        if not head.is_perp:
            self.metrics.spot_fills += len(group)
            return None
        before = head.start_position
        size = sum((f.signed_size for f in group), _ZERO)
        after = before + size
        volume = sum((f.sz for f in group), _ZERO)
        price = sum((f.px * f.sz for f in group), _ZERO) / volume if volume else head.px
        book.positions[head.coin] = after
        book.last_px[head.coin] = group[-1].px
        equity = book.equity - book.fees_since
        total = sum((abs(q) * book.last_px.get(c, _ZERO) for c, q in book.positions.items()), _ZERO)
        lev = book.leverage.get(head.coin)
        if equity <= 0:
            return self._gap(
                SourceGap(
                    "equity_not_positive",
                    f"the lead's account value is {equity}: the fills of order {head.oid} "
                    "cannot be sized and are not copied",
                    since_ms=head.time,
                    until_ms=head.time,
                    symbol=self.symbol(head.coin),
                )
            )
        event = LeadEvent(
            event_id=f"hyperliquid:{self.address}:{head.tid}",
            timestamp=float(head.time),
            symbol=self.symbol(head.coin),
            price=float(price),
            lead_equity=float(equity),
            lead_position_before=float(before),
            lead_position_after=float(after),
            lead_leverage_setting=float(lev) if lev else None,
            lead_total_notional=float(total),
        )
        self.metrics.events += 1
        return SourceEvent(
            event=event,
            cursor=cursor.to_text(),
            trade_ids=tuple(f.tid for f in group),
            origin=origin,
        )


def _is_ws_error(exc: BaseException) -> bool:
    from websockets.exceptions import WebSocketException

    return isinstance(exc, WebSocketException)
