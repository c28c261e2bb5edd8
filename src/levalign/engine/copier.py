"""The live copier: lead events in, follower orders out, exactly once.

See docs/live.md, "The copy loop".

:class:`Copier` ties the pieces together:

- the **source** (:class:`levalign.sources.hyperliquid.HyperliquidSource`) yields the lead's
  state, events and gaps; it resumes from the cursor text stored with the last event;
- each **event** is decided with :func:`levalign.engine.decide.decide` on the followers'
  state read from the store at that moment, the **guards** are applied (slippage cap on opens,
  skip when the market already moved past it, per-symbol notional caps, pause), and the event,
  its order intents (client id from (event, follower, leg)) and the cursor are committed in
  one transaction (:meth:`levalign.engine.store.Store.record_event`);
- the **dispatcher** (:class:`levalign.engine.dispatcher.Dispatcher`), on its own thread,
  sends only from the outbox, risk-reducing orders first, and resolves unknown outcomes by
  lookup;
- the **fill reader**, on its own thread, reads the fills of every order that filled and has
  none stored yet (REST ``userFillsByTime`` of that follower from its last stored fill) and
  stores them, de-duplicated by trade id, so that the next event is sized on them;
- the **stops**: a follower whose equity falls below ``equity_stop``, or whose realized loss
  since midnight UTC exceeds ``daily_loss_limit``, has every position closed through the
  outbox and is stopped with the reason.

REST polling is chosen over websocket ``userFills`` subscriptions for follower fills because
Hyperliquid allows at most 10 distinct users in user subscriptions per IP; a copier has many
more followers. Only followers with orders awaiting fills are polled.

:meth:`Copier.run` runs until :meth:`Copier.stop` (the CLI calls it on SIGTERM and SIGINT): it
stops taking events, lets in-flight sends finish, and returns. :attr:`Copier.stats` counts what
happened and ``listeners`` receive each notable thing as ``(kind, data)``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from levalign.engine.config import CopyConfig, FollowerConfig
from levalign.engine.outbox import (
    PRIORITY_REDUCE,
    Cursor,
    FillRecord,
    LeadEventRecord,
    OrderIntent,
    intents_from_result,
)
from levalign.errors import ConfigurationError, LevalignError, Retryable
from levalign.schemas import LeadEvent

if TYPE_CHECKING:
    from levalign.engine.dispatcher import Dispatcher
    from levalign.engine.store import Store
    from levalign.markets import Markets
    from levalign.sources.base import LeadState, SourceEvent
    from levalign.sources.hyperliquid import HyperliquidSource, SourceSettings
    from levalign.venues.hyperliquid import HyperliquidVenue

__all__ = ["Copier", "CopierStats", "StoreCursor", "run_copy"]

log = logging.getLogger(__name__)

Listener = Callable[[str, Mapping[str, Any]], None]


@dataclass
class CopierStats:
    """Counters of a copier's run (read them any time; the demo view and benches do)."""

    events: int = 0
    events_already_recorded: int = 0
    orders: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    fills: int = 0
    gaps: int = 0
    stops: int = 0
    existing_copied: int = 0
    last_event_id: str | None = None


@dataclass
class StoreCursor:
    """The source's cursor store backed by the engine's store (the text saved with each event)."""

    store: Store
    lead_id: int

    def load(self) -> str | None:
        """The cursor text committed with the last event, or None."""
        found = self.store.cursor(self.lead_id)
        return None if found is None else found.text

    def save(self, cursor: str) -> None:
        """Cursors are saved with their events (:meth:`Store.record_event`); nothing here."""


def _day_start_ms(now_ms: int) -> int:
    day = dt.datetime.fromtimestamp(now_ms / 1000, tz=dt.UTC).date()
    return int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp() * 1000)


class Copier:
    """The copy loop for one lead (see the module docstring).

    Parameters
    ----------
    config
        The checked configuration (:func:`levalign.engine.config.load_config`).
    store, venue, source_settings
        Overrides for tests and benches (default: from the configuration).
    listeners
        Called with ``(kind, data)`` for ``event``, ``skip``, ``gap``, ``stop``, ``fills``.
    """

    def __init__(
        self,
        config: CopyConfig,
        *,
        store: Store | None = None,
        venue: HyperliquidVenue | None = None,
        source_settings: SourceSettings | None = None,
        listeners: tuple[Listener, ...] = (),
    ) -> None:
        from levalign.engine.credentials import CredentialResolver
        from levalign.engine.store import Store
        from levalign.markets import load_markets
        from levalign.venues.hyperliquid import HyperliquidVenue, RateLimiter

        self.config = config
        self.store = store if store is not None else Store(config.store_url)
        self.limiter = RateLimiter(capacity=config.engine.ip_weight_per_minute)
        self.credentials = CredentialResolver(config.base_dir)
        self.venue = (
            venue
            if venue is not None
            else HyperliquidVenue(
                config.venue.base_url,
                credentials=self.credentials,
                limiter=self.limiter,
                timeout=config.venue.timeout,
            )
        )
        self.markets: Markets = load_markets("hyperliquid")
        self.source_settings = source_settings
        self.listeners = listeners
        self.stats = CopierStats()
        self.followers: dict[str, FollowerConfig] = {f.id: f for f in config.followers}
        self.lead_id = 0
        self.source: HyperliquidSource | None = None
        self._stop = threading.Event()
        self.ready = threading.Event()
        """Set once the source has reported the lead's state: lead fills from then on are copied."""
        self._threads: list[threading.Thread] = []
        self._failure: BaseException | None = None
        self._added: set[str] = set()
        self.dispatcher: Dispatcher | None = None

    # ------------------------------------------------------------------ plumbing

    def _emit(self, kind: str, data: Mapping[str, Any]) -> None:
        for listener in self.listeners:
            listener(kind, data)

    def stop(self) -> None:
        """Stop taking events; :meth:`run` returns once in-flight sends are done."""
        self._stop.set()
        source = self.source
        if source is not None:
            loop = getattr(self, "_loop", None)
            if loop is not None and loop.is_running():
                loop.call_soon_threadsafe(lambda: asyncio.ensure_future(source.close()))

    # ------------------------------------------------------------------ start

    def prepare(self) -> None:
        """Migrate the store, sync the followers, check every credential and the venue.

        Raises
        ------
        ConfigurationError
            A credential that cannot be resolved (the message names the reference, never a
            key), or a ``base_url`` that does not answer.
        """
        self.store.upgrade()
        self.lead_id = self.store.add_lead(self.config.lead.source, self.config.lead.address)
        for i, f in enumerate(self.config.followers):
            try:
                self.credentials(f.credentials)
            except ConfigurationError as exc:
                raise ConfigurationError(
                    f"followers[{i}] ({f.id}): {exc.message}", field=f"followers[{i}].credentials"
                ) from None
        self.venue.sz_decimals("BTC/USDC:USDC")  # reads the market list: names an unreachable URL
        self._sync_followers()
        self.store.expire_leases(0)  # one dispatcher per store: any sent order was this one's

    def _sync_followers(self) -> None:
        stored = {str(r["id"]): r for r in self.store.followers(self.lead_id)}
        new = [
            {
                "id": f.id,
                "address": f.address,
                "credentials_ref": f.credentials,
                "equity": f.equity,
                **f.profile,
            }
            for f in self.config.followers
            if f.id not in stored
        ]
        self.store.add_followers(self.lead_id, new, venue=self.config.venue.name)
        self._added = {str(row["id"]) for row in new}
        for f in self.config.followers:
            profile = {**f.profile, "guards": {"unfollow": f.unfollow}}
            row = stored.get(f.id, {})
            if (row.get("address"), row.get("credentials_ref"), row.get("profile")) != (
                f.address,
                f.credentials,
                profile,
            ):
                self.store.configure_follower(
                    f.id, address=f.address, credentials_ref=f.credentials, profile=profile
                )
            status = row.get("status", "active")
            if f.paused and status == "active":
                self.store.set_status(f.id, "paused", "paused in the configuration")
            elif not f.paused and status == "paused":
                self.store.set_status(f.id, "active", None)
        for fid, row in stored.items():
            if fid in self.followers or row["status"] == "unfollowed":
                continue
            policy = (row["profile"].get("guards") or {}).get("unfollow", "close")
            if policy == "close":
                self._close_all(fid, "unfollow", "unfollowed: positions closed")
            self.store.set_status(fid, "unfollowed", f"left the configuration ({policy})")
            self._emit("unfollow", {"follower": fid, "policy": policy})

    # ------------------------------------------------------------------ run

    async def run(self) -> CopierStats:
        """Prepare, then copy until :meth:`stop`; returns the counters.

        Raises
        ------
        ConfigurationError
            What :meth:`prepare` and the source raise for a wrong setup.
        """
        from levalign.engine.dispatcher import Dispatcher
        from levalign.sources.hyperliquid import HyperliquidSource

        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.prepare)
        self.dispatcher = Dispatcher(
            self.store,
            self.venue,
            worker=self.config.engine.worker,
            expires_in_ms=int(self.config.engine.send_expiry_seconds * 1000),
            batch=self.config.engine.dispatch_batch,
            lead_id=self.lead_id,
        )
        self.source = HyperliquidSource(
            self.config.lead.address,
            self.config.venue.base_url,
            cursor_store=StoreCursor(self.store, self.lead_id),
            markets=self.markets,
            settings=self.source_settings,
        )
        self._start_thread("dispatcher", self._dispatch)
        self._start_thread("fills", self._read_fills)
        try:
            if not self._stop.is_set():
                async for item in self.source.events():
                    if self._stop.is_set():
                        break
                    await asyncio.to_thread(self.handle, item)
                    if self._failure is not None:
                        raise self._failure
        finally:
            self._stop.set()
            await self.source.close()
            for t in self._threads:
                await asyncio.to_thread(t.join)
        if self._failure is not None:
            raise self._failure
        return self.stats

    def _start_thread(self, name: str, target: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                target()
            except BaseException as exc:  # surfaced by run(); the loop stops
                log.exception("copier %s thread failed", name)
                self._failure = exc
                self.stop()

        thread = threading.Thread(target=guarded, name=f"levalign-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _dispatch(self) -> None:
        dispatcher = self.dispatcher
        while dispatcher is not None and not self._stop.is_set():
            try:
                dispatcher.run(self._stop)
            except Retryable as exc:
                log.warning("dispatcher: %s; retrying", exc.message)
                self._stop.wait(0.5)

    def _read_fills(self) -> None:
        while not self._stop.is_set():
            try:
                self.read_fills_once()
            except Retryable as exc:
                log.warning("fill reader: %s; retrying", exc.message)
            self._stop.wait(self.config.engine.fills_poll_seconds)

    # ------------------------------------------------------------------ fills

    def read_fills_once(self) -> int:
        """Store the fills of orders that have none yet; returns how many were new."""
        accounts: dict[str, tuple[str, int]] = {}
        for _, fid, account, created in self.store.unfilled_orders():
            first = accounts.get(fid, (account, created))[1]
            accounts[fid] = (account, min(first, created))
        added = 0
        for fid, (account, order_ms) in accounts.items():
            since = self.store.last_fill_ms(fid)
            # from the follower's last stored fill, or a minute before its oldest waiting order
            start = min(since if since is not None else order_ms, order_ms) - 60_000
            records = [
                _fill_record(fid, raw, self.source.symbol if self.source else _symbol)
                for raw in self.venue.fills_since(account, max(start, 0))
            ]
            added += self.store.record_fills(records)
        if added:
            self.stats.fills += added
            self._emit("fills", {"new": added})
        return added

    # ------------------------------------------------------------------ events

    def handle(self, item: Any) -> None:
        """Handle one source item (state, event or gap); blocking (the store and the venue)."""
        from levalign.sources.base import LeadState, SourceEvent, SourceGap

        if isinstance(item, SourceEvent):
            self.check_stops()
            self.on_event(item)
        elif isinstance(item, LeadState) and not self.ready.is_set():
            # the first state of this run: on a first start every follower is new to the
            # lead's positions; on a restart only the followers added now are
            if item.initial:
                self._first_cursor(item)
            self.copy_existing(item, None if item.initial else self._added)
            self.ready.set()
            self._emit("ready", {"lead": self.config.lead.address, "equity": item.equity})
        elif isinstance(item, SourceGap):
            self.stats.gaps += 1
            log.error("lead source gap (%s): %s", item.reason, item.message)
            self._emit("gap", {"reason": item.reason, "message": item.message})

    def _first_cursor(self, state: LeadState) -> None:
        """On a first start, store the source's boundary (the state's time) as the cursor.

        Without it, a copier that stops before the lead's first event would start afresh
        next time, and the fills in between would count as history, never copied.
        """
        from levalign.sources.hyperliquid import SourceCursor

        if self.store.cursor(self.lead_id) is None:
            text = SourceCursor(state.time_ms).to_text()
            self.store.advance_cursor(self.lead_id, Cursor(state.time_ms, 0, text=text))

    def _cohort(self, symbol: str, ids: set[str] | None = None) -> tuple[Any, dict[str, Any]]:
        """The cohort of followers copying now (active and paused), from the store."""
        import numpy as np

        from levalign.normalize import Cohort

        cols = self.store.cohort_table(self.lead_id, symbol, ("active", "paused"))
        cols.pop("guards", None)
        if ids is not None:
            keep = np.array([str(i) in ids for i in cols["id"]], dtype=bool)
            cols = {k: v[keep] for k, v in cols.items()}
        caps = np.array([self._notional_cap(str(i), symbol) for i in cols["id"]], dtype=np.float64)
        if np.isfinite(caps).any():
            given = cols.get("max_notional")
            if given is not None:
                old = np.array(
                    [math.inf if v is None else float(v) for v in given], dtype=np.float64
                )
                caps = np.minimum(caps, old)
            column = np.empty(len(caps), dtype=object)
            column[:] = [None if math.isinf(c) else float(c) for c in caps]
            cols["max_notional"] = column
        return Cohort.from_table(cols), cols

    def _notional_cap(self, follower_id: str, symbol: str) -> float:
        f = self.followers.get(follower_id)
        if f is None:
            return math.inf
        return float(f.max_notional_per_symbol.get(symbol, math.inf))

    def on_event(self, item: SourceEvent) -> bool:
        """Decide one lead event and commit it with its orders and cursor; False if known."""
        event = item.event
        if self.store.event_recorded(event.event_id):
            self.stats.events_already_recorded += 1
            return False
        intents, payload, residuals = self.orders_for(event)
        cursor = Cursor(
            int(float(event.timestamp or 0)),
            int(item.trade_ids[0]) if item.trade_ids else 0,
            text=item.cursor,
        )
        recorded = self.store.record_event(
            LeadEventRecord(
                id=event.event_id,
                lead_id=self.lead_id,
                kind="fill",
                payload=payload,
                created_ms=_now_ms(),
                symbol=event.symbol,
            ),
            intents,
            cursor,
            residuals=residuals,
        )
        if recorded:
            self.stats.events += 1
            self.stats.orders += len(intents)
            self.stats.last_event_id = event.event_id
            self._emit("event", {"event_id": event.event_id, "orders": len(intents)})
        return recorded

    def orders_for(
        self, event: LeadEvent, ids: set[str] | None = None
    ) -> tuple[list[OrderIntent], dict[str, Any], dict[str, float]]:
        """The order intents, payload and residuals of ``event`` for the copying followers."""
        from levalign.engine.decide import decide

        payload: dict[str, Any] = event.model_dump(mode="json")
        try:
            cohort, cols = self._cohort(event.symbol, ids)
        except LevalignError as exc:
            payload["not_copied"] = exc.message
            return [], payload, {}
        if len(cohort) == 0:
            return [], payload, {}
        try:
            decision = decide(event, cohort, self.markets)
        except LevalignError as exc:
            log.error("event %s not copied: %s", event.event_id, exc.message)  # noqa: TRY400
            payload["not_copied"] = exc.message
            return [], payload, {}
        step = float(self.markets[event.symbol].amount_step or 0.0)
        paused = self._paused()
        try:
            mid: float | None = self.venue.mids().get(event.symbol)
        except Retryable:
            mid = None
        intents: list[OrderIntent] = []
        skipped: dict[str, str] = {}
        for intent in intents_from_result(decision.result, step):
            fid = intent.follower_id
            if intent.reduce_only:
                intents.append(intent)
                continue
            if fid in paused:
                skipped[fid] = "paused"
                continue
            slip = self.slippage(fid)
            if mid is not None and abs(mid - event.price) > slip * event.price:
                skipped[fid] = (
                    f"slippage: the market is at {mid:g}, more than {slip:.4%} from the lead's "
                    f"fill at {event.price:g}"
                )
                continue
            cap = self.venue.price_cap(event.symbol, event.price, intent.side, slip)
            intents.append(_with_limit(intent, cap))
        for fid, reason in skipped.items():
            key = reason.split(":", 1)[0]
            self.stats.skipped[key] = self.stats.skipped.get(key, 0) + 1
            self._emit("skip", {"follower": fid, "event_id": event.event_id, "reason": reason})
        if skipped:
            payload["skipped"] = skipped
        residual = decision.result["residual"]
        residuals = {str(i): float(r) for i, r in zip(cols["id"], residual, strict=True)}
        return intents, payload, residuals

    def _paused(self) -> set[str]:
        return {str(r["id"]) for r in self.store.followers(self.lead_id) if r["status"] == "paused"}

    def slippage(self, follower_id: str) -> float:
        """The follower's slippage cap (the engine default when it sets none)."""
        f = self.followers.get(follower_id)
        return self.config.engine.slippage if f is None else self.config.slippage(f)

    # ------------------------------------------------------------------ existing positions

    def copy_existing(self, state: LeadState, only: set[str] | None = None) -> int:
        """Copy the lead's existing positions for the followers that ask; returns how many.

        Sized as opens at the current price, one event per (follower, symbol), so that each is
        copied once, whatever the restarts. ``only`` limits it to those followers (on a
        restart, the ones just added: the others already follow the lead's later fills).
        """
        wanting = [
            f.id
            for f in self.config.followers
            if f.copy_existing_positions and (only is None or f.id in only)
        ]
        done = 0
        for symbol, qty in sorted(state.positions.items()):
            price = state.prices.get(symbol)
            if not wanting or qty == 0 or price is None or state.equity <= 0:
                continue
            for fid in wanting:
                event = LeadEvent(
                    event_id=f"existing:{self.config.lead.address}:{symbol}:{fid}",
                    timestamp=state.time_ms,
                    symbol=symbol,
                    price=price,
                    lead_equity=state.equity,
                    lead_position_before=0.0,
                    lead_position_after=qty,
                )
                if self.store.event_recorded(event.event_id):
                    continue
                intents, payload, _ = self.orders_for(event, {fid})
                if self.store.record_event(
                    LeadEventRecord(
                        event.event_id, self.lead_id, "existing", payload, _now_ms(), symbol
                    ),
                    intents,
                ):
                    done += 1
                    self.stats.orders += len(intents)
        self.stats.existing_copied += done
        return done

    # ------------------------------------------------------------------ stops

    def check_stops(self) -> list[str]:
        """Stop followers past their equity stop or daily loss limit: close all, say why."""
        now = _now_ms()
        guarded = [
            f
            for f in self.config.followers
            if f.equity_stop is not None or f.daily_loss_limit is not None
        ]
        if not guarded:
            return []
        rows = {str(r["id"]): r for r in self.store.followers(self.lead_id)}
        day_pnl = self.store.pnl_since(_day_start_ms(now))
        stopped: list[str] = []
        for f in guarded:
            row = rows.get(f.id)
            if row is None or row["status"] not in ("active", "paused"):
                continue
            reason = None
            if f.equity_stop is not None and float(row["equity"]) < f.equity_stop:
                reason = f"equity {float(row['equity']):.2f} fell below equity_stop {f.equity_stop}"
            loss = -day_pnl.get(f.id, 0.0)
            if f.daily_loss_limit is not None and loss > f.daily_loss_limit:
                reason = f"lost {loss:.2f} today, past daily_loss_limit {f.daily_loss_limit}"
            if reason is None:
                continue
            day = dt.datetime.fromtimestamp(now / 1000, tz=dt.UTC).date().isoformat()
            self._close_all(f.id, f"stop:{day}", reason)
            self.store.set_status(f.id, "stopped", reason)
            self.stats.stops += 1
            log.warning("follower %s stopped: %s", f.id, reason)
            self._emit("stop", {"follower": f.id, "reason": reason})
            stopped.append(f.id)
        return stopped

    def _close_all(self, follower_id: str, tag: str, reason: str) -> None:
        row = self.store.follower(follower_id)
        if row is None:
            return
        self.store.cancel_pending(follower_id, reason, reduce_only=False)
        intents = []
        for symbol, pos in sorted(row["positions"].items()):
            qty = Decimal(str(pos["position"]))
            if qty == 0:
                continue
            intents.append(
                OrderIntent(
                    follower_id=follower_id,
                    leg=f"close:{symbol}",
                    symbol=symbol,
                    side="sell" if qty > 0 else "buy",
                    amount=format(abs(qty), "f"),
                    reduce_only=True,
                    priority=PRIORITY_REDUCE,
                )
            )
        self.store.record_event(
            LeadEventRecord(
                f"guard:{follower_id}:{tag}",
                self.lead_id,
                "guard",
                {"follower": follower_id, "reason": reason},
                _now_ms(),
            ),
            intents,
        )


def _with_limit(intent: OrderIntent, cap: str) -> OrderIntent:
    from dataclasses import replace

    return replace(intent, price_limit=cap)


def _symbol(coin: str) -> str:
    return f"{coin}/USDC:USDC"


def _fill_record(
    follower_id: str, raw: Mapping[str, Any], symbol: Callable[[str], str]
) -> FillRecord:
    return FillRecord(
        follower_id=follower_id,
        tid=str(raw["tid"]),
        symbol=symbol(str(raw["coin"])),
        side="buy" if raw["side"] == "B" else "sell",
        amount=str(raw["sz"]),
        price=str(raw["px"]),
        time_ms=int(raw["time"]),
        fee=float(raw.get("fee") or 0.0),
        closed_pnl=float(raw.get("closedPnl") or 0.0),
        client_id=raw.get("cloid"),
        exchange_id=str(raw["oid"]) if raw.get("oid") is not None else None,
    )


def _now_ms() -> int:
    from levalign.engine.store import now_ms

    return now_ms()


def run_copy(config: CopyConfig, *, install_signals: bool = True) -> CopierStats:
    """Run a copier until SIGTERM or SIGINT (graceful: in-flight sends finish); the CLI's entry.

    Raises
    ------
    ConfigurationError
        A wrong setup (credentials, unreachable ``base_url``).
    """
    import signal
    import sys

    def announce(kind: str, data: Mapping[str, Any]) -> None:
        if kind == "ready":
            sys.stderr.write(
                f"levalign copy: following {data['lead']} for {len(config.followers)} "
                "followers; SIGTERM or Ctrl-C stops\n"
            )
            sys.stderr.flush()

    copier = Copier(config, listeners=(announce,))

    async def main() -> CopierStats:
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, copier.stop)
        return await copier.run()

    try:
        return asyncio.run(main())
    finally:
        copier.store.close()
