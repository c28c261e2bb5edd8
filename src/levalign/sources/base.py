"""What a lead source is to the engine: the :class:`LeadSource` protocol and its cursor.

A source turns a lead trader's fills into :class:`~levalign.schemas.LeadEvent` objects, in
order, each with the :class:`Cursor` that marks it done. The engine stores the cursor in the
same transaction as the event's orders; after a restart it asks the source for the events
after the stored cursor, so that no event is missed or copied twice (docs/design.md,
"Live engine").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from levalign.schemas import LeadEvent

__all__ = ["Cursor", "LeadSource"]


@dataclass(frozen=True, order=True)
class Cursor:
    """A position in a lead's stream of fills; cursors order as the fills do.

    Attributes
    ----------
    time_ms
        Time of the last fill taken, milliseconds since the Unix epoch (ccxt's unit).
    seq
        Tie-break among fills of the same millisecond: the venue's trade id (Hyperliquid
        ``tid``), or the row of a lead-history file.
    """

    time_ms: int
    seq: int


@runtime_checkable
class LeadSource(Protocol):
    """Where a lead's events come from: a lead-history file, or a venue's fill stream."""

    def events(self, after: Cursor | None = None) -> Iterator[tuple[LeadEvent, Cursor]]:
        """The lead's events after ``after`` (from the start when None), oldest first.

        Each event comes with its own cursor: storing it marks the event and every earlier
        one done. A live source blocks for the next event; a file source ends at its last.
        """
        ...
