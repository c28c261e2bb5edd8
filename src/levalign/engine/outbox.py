"""What goes into the outbox: lead events, order intents, source cursors, follower fills.

These are plain values; :class:`levalign.engine.store.Store` writes them. A lead event and all
the order intents it causes, with the source cursor that produced it, are written in one
transaction by :meth:`~levalign.engine.store.Store.record_event`.

Order states and the transitions the store allows (docs/live.md, "Order states")::

    pending ──claim──► sent ──ack──► acknowledged (resting) ──► filled | canceled
       │                 ├──ack──► filled
       │                 ├──ack──► rejected (the exchange's reason)
       │                 └──timeout / 5xx / lost response / lease expired──► unknown
       └──withdrawn before sending──► canceled
    unknown ──lookup by client id──► acknowledged | filled | canceled | rejected
                                     | pending (not found after the order's expiry)
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from levalign.engine.client_ids import cloid
from levalign.errors import InvalidInput

__all__ = [
    "PRIORITY_OPEN",
    "PRIORITY_REDUCE",
    "TRANSITIONS",
    "Cursor",
    "FillRecord",
    "FollowerBook",
    "LeadEventRecord",
    "OrderIntent",
    "OrderState",
    "decimal_amount",
    "intents_from_result",
]

PRIORITY_REDUCE = 0
"""Closes, reductions and de-risking: sent before any open."""
PRIORITY_OPEN = 1
"""Opens and increases."""


class OrderState(enum.StrEnum):
    """Where an order is between the outbox and the exchange."""

    PENDING = "pending"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    FILLED = "filled"
    REJECTED = "rejected"
    CANCELED = "canceled"
    UNKNOWN = "unknown"


S = OrderState
TRANSITIONS: Mapping[OrderState, frozenset[OrderState]] = {
    S.PENDING: frozenset({S.SENT, S.CANCELED}),
    S.SENT: frozenset({S.ACKNOWLEDGED, S.FILLED, S.REJECTED, S.UNKNOWN}),
    S.ACKNOWLEDGED: frozenset({S.FILLED, S.CANCELED}),
    S.UNKNOWN: frozenset({S.ACKNOWLEDGED, S.FILLED, S.CANCELED, S.REJECTED, S.PENDING}),
    S.FILLED: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELED: frozenset(),
}
"""Allowed transitions, from -> to; every state change in the store is checked against it."""
del S


@dataclass(frozen=True, slots=True)
class Cursor:
    """How far a lead's fills have been read: the last fill's time (epoch ms) and trade id.

    ``text`` is the source's own cursor (opaque text, :class:`levalign.sources.base.SourceEvent`)
    when it has one: a cursor with text replaces the stored one unless its time is older, since
    a source's trade ids within one millisecond are not ordered.
    """

    fill_time_ms: int
    tid: int
    text: str | None = None


@dataclass(frozen=True, slots=True)
class LeadEventRecord:
    """A lead event as stored: ``id`` is unique across leads (e.g. ``hl:<address>:<tid>``).

    ``kind`` is ``fill`` for a lead's trade, or what else caused orders (``derisk``,
    ``reconcile``, ``unfollow``, ``guard``); ``payload`` the event's JSON
    (:class:`levalign.schemas.LeadEvent` fields for a fill); ``symbol`` the follower market
    the event sized, whose residuals :meth:`~levalign.engine.store.Store.record_event` writes.
    """

    id: str
    lead_id: int
    kind: str
    payload: Mapping[str, Any]
    created_ms: int
    symbol: str | None = None


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """A follower order to send, before it has a state.

    ``amount`` and ``price_limit`` are exact decimal strings; ``leg`` names the order within
    the event for its follower (``close``, ``open``, ``reduce``, ``derisk``, ...), so that
    (event, follower, leg) derives the client id. ``priority`` orders dispatch (lower first:
    :data:`PRIORITY_REDUCE` before :data:`PRIORITY_OPEN`).
    """

    follower_id: str
    leg: str
    symbol: str
    side: Literal["buy", "sell"]
    amount: str
    reduce_only: bool
    priority: int
    price_limit: str | None = None
    time_in_force: str = "ioc"
    leverage: float | None = None
    collateral: float | None = None

    def client_id(self, event_id: str) -> str:
        """The order's Hyperliquid ``cloid`` within lead event ``event_id``."""
        return cloid(event_id, self.follower_id, self.leg)


@dataclass(frozen=True, slots=True)
class FillRecord:
    """One fill of a follower order, as the venue reports it.

    ``tid`` is the exchange's trade id (de-duplication key with the follower); ``amount`` and
    ``price`` decimal strings; ``closed_pnl`` and ``fee`` in the quote currency (the fee a
    cost, positive); ``client_id`` the order's cloid when the venue reports it.
    """

    follower_id: str
    tid: str
    symbol: str
    side: Literal["buy", "sell"]
    amount: str
    price: str
    time_ms: int
    fee: float = 0.0
    closed_pnl: float = 0.0
    client_id: str | None = None
    exchange_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FollowerBook:
    """A follower as the store knows it, for reconciliation.

    ``positions`` the stored non-zero positions by symbol (exact decimals); ``in_flight`` the
    symbols with an order whose outcome is not final yet.
    """

    id: str
    address: str
    status: str
    positions: Mapping[str, Decimal]
    in_flight: frozenset[str] = frozenset()


def decimal_amount(value: float, step: float) -> str:
    """``value`` as an exact decimal string on the lot grid ``step``.

    A value within 1e-9 (relative) of a whole number of lots is written as that number of
    lots times the step's decimal form, so that float noise (``0.30000000000000004``) never
    reaches an exchange; any other value (a close of an off-grid position) is written as the
    shortest decimal that round-trips the float.

    Raises
    ------
    InvalidInput
        ``value`` is not finite or negative, or ``step`` is not positive.
    """
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(
            f"order amount must be finite and non-negative, got {value}",
            field="amount",
            value=value,
        )
    return _grid_text(value, step, _decimals(step))


def _decimals(step: float) -> int:
    """Digits after the point in the shortest decimal form of ``step`` (0.001 -> 3).

    Raises
    ------
    InvalidInput
        ``step`` is not a positive number.
    """
    if not (math.isfinite(step) and step > 0):
        raise InvalidInput(
            f"amount step must be positive, got {step}", field="amount_step", value=step
        )
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(-exponent, 0) if isinstance(exponent, int) else 0


def _grid_text(value: float, step: float, decimals: int) -> str:
    lots = round(value / step)
    if abs(lots * step - value) <= 1e-9 * max(value, step):
        # lots * step is within far less than half a unit of the last decimal of the exact
        # grid value, so rounding to that many decimals gives exactly that value
        text = f"{lots * step:.{decimals}f}"
    else:
        text = repr(value)
        if "e" in text or "E" in text:
            text = format(Decimal(text), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def intents_from_result(
    result: Any,
    amount_step: float,
    *,
    price_limit: str | None = None,
) -> list[OrderIntent]:
    """Order intents of a :class:`levalign.normalize.NormalizeResult`, one or two per follower.

    A row with ``close_amount > 0`` gives a reduce-only leg first (``close`` when it takes the
    whole position, else ``reduce``; priority :data:`PRIORITY_REDUCE`); the rest of
    ``amount`` is an ``open`` leg (priority :data:`PRIORITY_OPEN`), so a flip is a close then
    an open. Rows with ``side == 0`` give nothing. ``price_limit`` applies to opens only
    (closes always go).
    """
    cols = result.columns
    ids = cols["id"].tolist()
    side = cols["side"].tolist()
    amount = cols["amount"].tolist()
    close = cols["close_amount"].tolist()
    reduce_only = cols["reduce_only"].tolist()
    target = cols["target_position"].tolist()
    leverage = cols["leverage"].tolist()
    collateral = cols["collateral"].tolist()
    symbol = result.symbol
    decimals = _decimals(amount_step)
    out: list[OrderIntent] = []
    for i, s in enumerate(side):
        if s == 0:
            continue
        fid = str(ids[i])
        side_name: Literal["buy", "sell"] = "buy" if s > 0 else "sell"
        amt = amount[i]
        closing = amt if reduce_only[i] else min(max(close[i], 0.0), amt)
        if closing > 0:
            leg = "close" if target[i] == 0.0 or amt > closing else "reduce"
            out.append(
                OrderIntent(
                    follower_id=fid,
                    leg=leg,
                    symbol=symbol,
                    side=side_name,
                    amount=_grid_text(closing, amount_step, decimals),
                    reduce_only=True,
                    priority=PRIORITY_REDUCE,
                )
            )
        rest = amt - closing
        if rest > 0:
            lev = leverage[i]
            col = collateral[i]
            out.append(
                OrderIntent(
                    follower_id=fid,
                    leg="open",
                    symbol=symbol,
                    side=side_name,
                    amount=_grid_text(rest, amount_step, decimals),
                    reduce_only=False,
                    priority=PRIORITY_OPEN,
                    price_limit=price_limit,
                    leverage=lev if math.isfinite(lev) else None,
                    collateral=col if math.isfinite(col) and col > 0 else None,
                )
            )
    return out
