"""De-risking on the mark stream: a price per symbol -> ``levalign.derisk`` -> the outbox.

:class:`MarkWatcher` takes marks (the sandbox's or Hyperliquid's ``allMids``, or any price
feed), throttles them per symbol, runs :func:`levalign.normalize.derisk` on the cohort read
from the store and commits its reduce-only orders as one ``derisk`` event
(docs/live.md, "De-risking on marks").

Client ids: the event of a mark is ``derisk:<symbol>:<time bucket>`` (``time_ms //
bucket_ms``) and every order's leg is ``derisk``, so the cloid is a function of (symbol,
bucket, follower, leg): a mark repeated within a bucket, or the same mark processed again
after a restart, never gives a second order.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from levalign.engine.outbox import LeadEventRecord, OrderIntent, intents_from_result
from levalign.errors import InvalidInput

if TYPE_CHECKING:
    from levalign.engine.store import Store
    from levalign.markets import Markets

__all__ = ["MarkCheck", "MarkWatcher", "derisk_event_id"]

LEG = "derisk"


def derisk_event_id(symbol: str, time_ms: int, bucket_ms: int) -> str:
    """The event id of a mark of ``symbol`` at ``time_ms`` (its time bucket)."""
    return f"derisk:{symbol}:{time_ms // bucket_ms}"


@dataclass(frozen=True, slots=True)
class MarkCheck:
    """What one mark did.

    ``checked`` is False when the mark was throttled; ``recorded`` True when orders were
    committed now (False also when the bucket's event already was).
    """

    symbol: str
    price: float
    checked: bool
    event_id: str | None = None
    intents: tuple[OrderIntent, ...] = ()
    recorded: bool = False


class MarkWatcher:
    """De-risks the store's followers of one lead on marks, through the outbox.

    Parameters
    ----------
    store
        The outbox and the followers' state (:meth:`~levalign.engine.store.Store.cohort_table`).
    lead_id
        Whose followers.
    markets
        The follower venue's markets (lot sizes, tiers) for :func:`levalign.normalize.derisk`.
    min_move
        A symbol is checked again only when its price moved by more than this fraction since
        its last check (the first mark always checks), >= 0.
    bucket_ms
        Width of the time bucket in the client ids, > 0.
    """

    def __init__(
        self,
        store: Store,
        lead_id: int,
        markets: Markets,
        *,
        min_move: float = 0.001,
        bucket_ms: int = 1000,
    ) -> None:
        if not (math.isfinite(min_move) and min_move >= 0):
            raise InvalidInput(
                f"min_move must be a finite fraction >= 0, got {min_move}",
                field="min_move",
                value=min_move,
            )
        if bucket_ms <= 0:
            raise InvalidInput(
                f"bucket_ms must be positive, got {bucket_ms}", field="bucket_ms", value=bucket_ms
            )
        self.store = store
        self.lead_id = lead_id
        self.markets = markets
        self.min_move = min_move
        self.bucket_ms = bucket_ms
        self._last: dict[str, float] = {}

    def due(self, symbol: str, price: float) -> bool:
        """True if ``price`` moved more than ``min_move`` since ``symbol``'s last check."""
        last = self._last.get(symbol)
        return last is None or abs(price / last - 1.0) > self.min_move

    def on_mark(self, symbol: str, price: float, time_ms: int) -> MarkCheck:
        """Check ``symbol`` at ``price`` (throttled) and commit the de-risking orders.

        Raises
        ------
        InvalidInput
            ``price`` not finite and positive; what :func:`levalign.normalize.derisk` raises.
        Retryable
            The store went away; call again with the same mark (same client ids).
        """
        from levalign.normalize import derisk

        if not (math.isfinite(price) and price > 0):
            raise InvalidInput(
                f"mark price of {symbol} must be positive, got {price}", field="price", value=price
            )
        if not self.due(symbol, price):
            return MarkCheck(symbol, price, checked=False)
        cohort = self.store.cohort_table(self.lead_id, symbol)
        if len(cohort["id"]) == 0:
            self._last[symbol] = price
            return MarkCheck(symbol, price, checked=True)
        result = derisk(symbol, price, cohort, self.markets)
        step = self.markets[symbol].amount_step or 1.0
        intents = tuple(dataclasses.replace(o, leg=LEG) for o in intents_from_result(result, step))
        event_id = derisk_event_id(symbol, time_ms, self.bucket_ms)
        recorded = False
        if intents:
            event = LeadEventRecord(
                event_id,
                self.lead_id,
                "derisk",
                {"symbol": symbol, "price": price, "time_ms": time_ms},
                time_ms,
                symbol=symbol,
            )
            recorded = self.store.record_event(event, intents)
        self._last[symbol] = price
        return MarkCheck(symbol, price, True, event_id, intents, recorded)
