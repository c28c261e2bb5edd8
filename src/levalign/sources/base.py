"""What every lead source gives the engine, and the cursor store it resumes from.

A lead source watches one lead account and yields, in order:

* one :class:`LeadState` when it starts (the lead's equity and the positions it already
  holds: reported, never copied; the engine decides what to do with them), and again after
  each reconnect;
* one :class:`SourceEvent` per lead order fill group (a :class:`levalign.schemas.LeadEvent`
  with the source cursor just past its fills);
* a :class:`SourceGap` whenever the source cannot prove that it saw every fill. A gap is never
  silent: it is logged, counted in the source's metrics and yielded.

The cursor is opaque text to everyone but its source. The engine commits each event with its
cursor in one transaction, and a restarted source resumes from the last committed cursor (a
:class:`CursorStore`), so that no fill is lost and none is copied twice.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from levalign.schemas import LeadEvent

__all__ = [
    "Backoff",
    "CursorStore",
    "FileCursorStore",
    "LeadSource",
    "LeadState",
    "MemoryCursorStore",
    "SourceEvent",
    "SourceGap",
    "SourceItem",
]


@dataclass(frozen=True)
class LeadState:
    """The lead account as the venue reports it (Hyperliquid: ``clearinghouseState``).

    Attributes
    ----------
    time_ms
        Venue time of the report, epoch milliseconds.
    equity
        Account value in the settle currency.
    positions
        Signed contracts by levalign market symbol (``BTC/USDC:USDC``); flat symbols left out.
    initial
        True for the report taken when the source started: these positions existed before
        the follower subscribed.
    prices
        The price at which the venue values each position (Hyperliquid: ``positionValue``
        over the size, the mark), for sizing copies of existing positions as opens.
    """

    time_ms: int
    equity: float
    positions: dict[str, float]
    initial: bool
    prices: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceEvent:
    """One lead event and the cursor that commits it.

    Attributes
    ----------
    event
        The lead's position change, ready for :func:`levalign.normalize`.
    cursor
        The source cursor just past this event's fills (opaque text): commit it with the event.
    trade_ids
        The venue's trade ids of the fills merged into this event.
    origin
        ``"stream"`` (websocket), ``"snapshot"`` (the subscription's first message) or
        ``"backfill"`` (REST history after a reconnect or a restart).
    """

    event: LeadEvent
    cursor: str
    trade_ids: tuple[int, ...]
    origin: str


@dataclass(frozen=True)
class SourceGap:
    """The source cannot prove continuity: fills may have been missed between two times.

    Attributes
    ----------
    reason
        A code: ``history_truncated`` (the venue's history no longer reaches the cursor),
        ``page_overflow`` (more fills in one millisecond than a history page holds),
        ``position_mismatch`` (a fill's start position differs from the position the earlier
        fills add up to, even after a backfill), ``malformed_fill`` (a fill that could not be
        read), ``equity_not_positive`` (the lead's equity is not positive: the fills cannot be
        sized and no event is yielded for them).
    message
        What happened and what it means, for a person.
    since_ms, until_ms
        The window in which fills may be missing, epoch milliseconds (``None``: unknown).
    symbol
        The market concerned, when the gap is about one market.
    """

    reason: str
    message: str
    since_ms: int | None = None
    until_ms: int | None = None
    symbol: str | None = None


SourceItem = LeadState | SourceEvent | SourceGap


@runtime_checkable
class LeadSource(Protocol):
    """A lead account's fills as lead events, each exactly once and in order."""

    def events(self) -> AsyncIterator[SourceItem]:
        """Yield the initial state, then events and gaps, until :meth:`close`."""
        ...

    async def close(self) -> None:
        """Stop: the iterator of :meth:`events` ends after the item it is yielding."""
        ...


class CursorStore(Protocol):
    """Where a source's cursor is kept between runs (the engine's store implements it)."""

    def load(self) -> str | None:
        """The last committed cursor, or ``None`` on a first start."""
        ...

    def save(self, cursor: str) -> None:
        """Commit ``cursor`` durably."""
        ...


@dataclass
class MemoryCursorStore:
    """A cursor store in memory (tests, and runs that need not survive a restart)."""

    cursor: str | None = None

    def load(self) -> str | None:
        """Return the cursor held."""
        return self.cursor

    def save(self, cursor: str) -> None:
        """Hold ``cursor``."""
        self.cursor = cursor


@dataclass(frozen=True)
class FileCursorStore:
    """A cursor store in one text file, replaced atomically (temporary file, then rename)."""

    path: Path

    def load(self) -> str | None:
        """Return the file's cursor, or ``None`` when the file does not exist."""
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def save(self, cursor: str) -> None:
        """Write ``cursor`` to a temporary file beside the target, flush it, rename it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(cursor)
                out.flush()
                os.fsync(out.fileno())
            Path(tmp).replace(self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@dataclass
class Backoff:
    """Exponential backoff with full jitter.

    The delay before retry number ``attempt`` (0 for the first) is drawn uniformly from
    ``[0, min(cap, base · 2**attempt)]``: the full-jitter rule, which spreads the reconnects
    of many clients after an outage instead of synchronizing them.

    Parameters
    ----------
    base
        Upper bound of the first delay, seconds.
    cap
        Largest upper bound, seconds.
    rng
        The random source; pass ``random.Random(seed)`` for reproducible delays.
    """

    base: float = 0.25
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def bound(self, attempt: int) -> float:
        """Upper bound of the delay before retry ``attempt``: ``min(cap, base · 2**attempt)``."""
        if attempt >= 64:  # 2**64 · base exceeds any cap; avoids a huge float power
            return self.cap
        return min(self.cap, self.base * 2.0 ** max(attempt, 0))

    def delay(self, attempt: int) -> float:
        """A delay drawn uniformly from ``[0, bound(attempt)]``."""
        return self.rng.uniform(0.0, self.bound(attempt))
