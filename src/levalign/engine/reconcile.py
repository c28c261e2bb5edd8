"""Reconciliation: each follower's real positions against the store, corrected through the outbox.

:func:`plan` is pure: given the store's books, the venue's positions, a drift band and the
unfollow policy, it returns the corrections (order intents) and a report.
:func:`reconcile` reads both sides and commits the corrections as one ``reconcile`` event
(docs/live.md, "Reconciliation").

Rules, per follower and symbol (``stored`` the store's position, ``actual`` the venue's):

- a symbol with an order in flight (pending, sent, resting, unknown) is left alone and
  reported, since that order can still move the position;
- a follower ``unfollowed`` or ``stopped`` holding ``actual != 0``: an orphan;
- ``stored == 0`` and ``actual != 0`` (a position the store does not know): an orphan;
- orphans are always reported; with ``unfollow="close"`` each gets a reduce-only close;
- otherwise ``|actual - stored| <= max(band * |stored|, step / 2)`` is within the band
  (reported when non-zero); above it the venue is brought to ``stored``: a reduce-only
  ``reduce`` when it holds more on the same side, an ``open`` when it holds less, a
  reduce-only ``close`` then an ``open`` when the sides differ.

Client ids: every correction belongs to the event ``reconcile:<run id>`` and its leg names
the kind and the symbol, so the cloid is a function of (run id, follower, symbol, kind):
committing one run twice never creates a second order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Literal, Protocol

from levalign.engine.outbox import (
    PRIORITY_OPEN,
    PRIORITY_REDUCE,
    FollowerBook,
    LeadEventRecord,
    OrderIntent,
    decimal_amount,
)
from levalign.errors import InvalidInput

if TYPE_CHECKING:
    from levalign.engine.store import Store

__all__ = [
    "Drift",
    "Orphan",
    "PositionsVenue",
    "Reconciliation",
    "ReconciliationReport",
    "UnfollowPolicy",
    "event_id",
    "plan",
    "reconcile",
]

UnfollowPolicy = Literal["close", "keep"]
_LEG_MAX = 32  # the orders table's leg column


@dataclass(frozen=True, slots=True)
class Drift:
    """A difference between the store's and the venue's position in one symbol."""

    follower_id: str
    symbol: str
    stored: float
    actual: float


@dataclass(frozen=True, slots=True)
class Orphan:
    """A venue position the copier does not manage; ``action`` is ``close`` or ``keep``."""

    follower_id: str
    symbol: str
    position: float
    reason: str
    action: UnfollowPolicy


@dataclass(frozen=True, slots=True)
class ReconciliationReport:
    """What one reconciliation run found.

    ``within_band`` non-zero drifts left alone; ``corrected`` drifts with correction orders;
    ``orphans`` every orphan position with what was done; ``in_flight`` (follower, symbol)
    pairs skipped because an order is still in flight.
    """

    within_band: list[Drift] = field(default_factory=list)
    corrected: list[Drift] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)
    in_flight: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """The corrections of a run (order intents of event :func:`event_id`) and its report."""

    run_id: str
    intents: list[OrderIntent]
    report: ReconciliationReport
    recorded: bool = False


class PositionsVenue(Protocol):
    """What reconciliation reads from a venue (``HyperliquidVenue`` has both)."""

    def account(self, address: str) -> _Positions:
        """The account's state; its ``positions`` are signed contracts by symbol."""
        ...

    def sz_decimals(self, symbol: str) -> int:
        """Decimals of ``symbol``'s lot size."""
        ...


class _Positions(Protocol):
    @property
    def positions(self) -> dict[str, float]: ...


def event_id(run_id: str) -> str:
    """The lead-event id under which the corrections of run ``run_id`` are stored."""
    return f"reconcile:{run_id}"


def _leg(kind: str, symbol: str) -> str:
    leg = f"{kind}:{symbol}"
    if len(leg) <= _LEG_MAX:
        return leg
    return f"{kind}:{hashlib.sha256(symbol.encode()).hexdigest()[: _LEG_MAX - len(kind) - 1]}"


def _order(  # noqa: PLR0913, PLR0917  (one order: follower, kind, symbol, side, size, grid)
    follower_id: str,
    kind: Literal["close", "reduce", "open"],
    symbol: str,
    side_sign: float,
    size: float,
    step: float,
) -> OrderIntent | None:
    amount = decimal_amount(size, step)
    if Decimal(amount) == 0:
        return None
    reducing = kind != "open"
    return OrderIntent(
        follower_id=follower_id,
        leg=_leg(kind, symbol),
        symbol=symbol,
        side="buy" if side_sign > 0 else "sell",
        amount=amount,
        reduce_only=reducing,
        priority=PRIORITY_REDUCE if reducing else PRIORITY_OPEN,
    )


def _to(
    follower_id: str, symbol: str, stored: float, actual: float, step: float
) -> list[OrderIntent]:
    """Orders that bring the venue's ``actual`` to ``stored``."""
    out: list[OrderIntent | None] = []
    if actual != 0 and (stored == 0 or (stored > 0) != (actual > 0)):
        out.append(_order(follower_id, "close", symbol, -actual, abs(actual), step))
        if stored != 0:
            out.append(_order(follower_id, "open", symbol, stored, abs(stored), step))
    elif abs(actual) > abs(stored):
        out.append(_order(follower_id, "reduce", symbol, -actual, abs(actual) - abs(stored), step))
    else:
        out.append(_order(follower_id, "open", symbol, stored, abs(stored) - abs(actual), step))
    return [o for o in out if o is not None]


def plan(  # noqa: PLR0913  (the two sides, then the rules)
    run_id: str,
    books: Sequence[FollowerBook],
    actual: Mapping[str, Mapping[str, float]],
    *,
    band: float,
    unfollow: UnfollowPolicy,
    steps: Mapping[str, float],
) -> Reconciliation:
    """The corrections and the report of one reconciliation run (pure; rules in the module doc).

    Parameters
    ----------
    run_id
        The run's id: with (follower, symbol) it derives every correction's client id.
    books
        The store's followers (:meth:`levalign.engine.store.Store.books`).
    actual
        Follower id -> the venue's signed positions by symbol; a follower missing here is
        skipped (its account could not be read).
    band
        Tolerated drift as a fraction of the stored position (``0.01``: 1 %), >= 0.
    unfollow
        ``close`` orphan positions (reduce-only) or ``keep`` them (report only).
    steps
        The lot size by symbol; every symbol on either side must be present.

    Raises
    ------
    InvalidInput
        ``band`` negative or not finite, an unknown ``unfollow`` policy, a symbol without a
        step.
    """
    if not (band >= 0 and band != float("inf")):
        raise InvalidInput(
            f"reconciliation band must be a finite fraction >= 0, got {band}",
            field="band",
            value=band,
        )
    if unfollow not in ("close", "keep"):
        raise InvalidInput(
            f"unfollow policy must be close or keep, got {unfollow!r}",
            field="unfollow",
            value=unfollow,
        )
    intents: list[OrderIntent] = []
    report = ReconciliationReport()
    for book in books:
        venue_side = actual.get(book.id)
        if venue_side is None:
            continue
        managed = book.status in ("active", "paused")
        for symbol in sorted(set(book.positions) | {s for s, q in venue_side.items() if q}):
            stored = float(book.positions.get(symbol, 0))
            real = float(venue_side.get(symbol, 0.0))
            if symbol in book.in_flight:
                report.in_flight.append((book.id, symbol))
                continue
            if symbol not in steps:
                raise InvalidInput(
                    f"no lot size for {symbol!r}: pass it in steps",
                    field="steps",
                    value=symbol,
                )
            step = steps[symbol]
            if real != 0 and (not managed or stored == 0):
                reason = f"follower {book.status}" if not managed else "unknown to the store"
                report.orphans.append(Orphan(book.id, symbol, real, reason, unfollow))
                if unfollow == "close":
                    intents.extend(_to(book.id, symbol, 0.0, real, step))
                continue
            if not managed:
                continue
            drift = Drift(book.id, symbol, stored, real)
            if abs(real - stored) <= max(band * abs(stored), step / 2):
                if real != stored:
                    report.within_band.append(drift)
                continue
            report.corrected.append(drift)
            intents.extend(_to(book.id, symbol, stored, real, step))
    return Reconciliation(run_id, intents, report)


def reconcile(  # noqa: PLR0913  (store, venue, lead, run, then the rules)
    store: Store,
    venue: PositionsVenue,
    lead_id: int,
    run_id: str,
    *,
    band: float,
    unfollow: UnfollowPolicy,
    now_ms: int,
) -> Reconciliation:
    """Read the store's books and each follower's venue positions, commit the corrections.

    The corrections go into the outbox as one event ``reconcile:<run_id>`` (kind
    ``reconcile``, the report's counts as payload) in one transaction; the dispatcher sends
    them. A run id already recorded changes nothing (``recorded`` False).

    Raises
    ------
    Retryable
        The store or the venue could not be read or written; call again with the same
        ``run_id``.
    """
    books = store.books(lead_id)
    actual = {b.id: dict(venue.account(b.address).positions) for b in books}
    symbols = {s for b in books for s in b.positions} | {s for p in actual.values() for s in p}
    steps = {s: 10.0 ** -venue.sz_decimals(s) for s in symbols}
    result = plan(run_id, books, actual, band=band, unfollow=unfollow, steps=steps)
    if not result.intents:
        return result
    r = result.report
    payload = {
        "run_id": run_id,
        "within_band": len(r.within_band),
        "corrected": len(r.corrected),
        "orphans": len(r.orphans),
        "in_flight": len(r.in_flight),
    }
    event = LeadEventRecord(event_id(run_id), lead_id, "reconcile", payload, now_ms)
    recorded = store.record_event(event, result.intents)
    return Reconciliation(run_id, result.intents, r, recorded)
