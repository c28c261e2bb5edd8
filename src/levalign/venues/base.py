"""What a venue is to the engine: the :class:`Venue` protocol and the records it exchanges.

A venue takes order intents and reports on them by the client order id the engine chose,
and reports each follower account's positions and balance. The paper venue
(:mod:`levalign.venues.paper`) and the live venues implement it; the engine's dispatcher and
reconciliation use nothing else (docs/design.md, "Live engine").

Field names are ccxt's unified ones in snake_case (``client_order_id``, ``reduce_only``,
``filled``, ``average``; a balance's ``free``, ``used``, ``total``); positions are
:class:`levalign.schemas.Position`, as ``fetch_positions`` reports them.

Rules every implementation keeps:

* **Idempotent by client id.** Submitting an intent whose ``client_order_id`` the venue has
  already seen (for that account) returns the report of the first order; it never places a
  second one.
* **Unknown is resolved by look-up.** When a submission's outcome is lost (timeout, 5xx), the
  caller asks :meth:`Venue.order` with the client id; ``None`` means the venue never accepted
  the order, so it may be submitted again with the same id.
* **Expected refusals are reports, not exceptions.** An order the venue refuses (minimum size,
  margin, reduce-only with nothing to reduce) comes back with ``status == "rejected"`` and
  the venue's reason. Exceptions are :mod:`levalign.errors`: ``Retryable`` for transient
  failures, ``ConfigurationError`` for a wrong setup, ``InvalidInput`` for a malformed intent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from levalign.errors import InvalidInput
from levalign.schemas import Position

__all__ = ["Balance", "OrderIntent", "OrderReport", "OrderStatus", "Venue"]

#: ccxt's order statuses: resting, filled (in full or in part, then done), canceled, refused
OrderStatus = Literal["open", "closed", "canceled", "rejected"]


@dataclass(frozen=True)
class OrderIntent:
    """One order the engine wants placed for one follower account.

    Attributes
    ----------
    client_order_id
        The engine's id of the order, a pure function of (lead event, follower, leg), so that
        a retry or a restart can never place a second order (Hyperliquid ``cloid``: ``0x`` and
        32 hex digits).
    account
        The follower's account on the venue.
    symbol
        ccxt unified symbol (``BTC/USDT:USDT``).
    side
        ``"buy"`` or ``"sell"``.
    amount
        Contracts, positive, a whole number of the market's amount steps.
    reduce_only
        The order may only reduce the account's position.
    price
        Limit price (an immediate-or-cancel order capped at this price), or None for a market
        order.
    leverage
        The leverage setting to use for the order, or None to keep the account's.
    """

    client_order_id: str
    account: str
    symbol: str
    side: Literal["buy", "sell"]
    amount: float
    reduce_only: bool = False
    price: float | None = None
    leverage: float | None = None

    def __post_init__(self) -> None:
        if self.side not in ("buy", "sell"):
            raise InvalidInput(
                f"side must be 'buy' or 'sell', got {self.side!r}", field="side", value=self.side
            )
        if not (math.isfinite(self.amount) and self.amount > 0):
            raise InvalidInput(
                f"amount must be a positive number of contracts, got {self.amount}",
                field="amount",
                value=self.amount,
            )
        if self.price is not None and not (math.isfinite(self.price) and self.price > 0):
            raise InvalidInput(
                f"price must be positive, or None for a market order, got {self.price}",
                field="price",
                value=self.price,
            )

    @property
    def sign(self) -> float:
        """+1 for a buy, −1 for a sell."""
        return 1.0 if self.side == "buy" else -1.0


@dataclass(frozen=True)
class OrderReport:
    """What the venue says about one order, found by its client id.

    Attributes
    ----------
    client_order_id, account, symbol
        As in the intent.
    status
        :data:`OrderStatus`.
    filled
        Contracts filled so far.
    average
        Average fill price, or None before any fill.
    id
        The venue's own order id, when it gave one.
    reason
        The venue's reason for a rejection (its own words), else None.
    """

    client_order_id: str
    account: str
    symbol: str
    status: OrderStatus
    filled: float = 0.0
    average: float | None = None
    id: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Balance:
    """An account's money in the settle currency (ccxt's ``free``, ``used``, ``total``).

    ``total`` is the equity (wallet plus unrealized PnL), ``used`` the margin held by
    positions and orders, ``free`` what new orders may use.
    """

    currency: str
    free: float
    used: float
    total: float


@runtime_checkable
class Venue(Protocol):
    """Where follower orders go: the paper venue, or an exchange through its API."""

    def submit(self, intents: Sequence[OrderIntent]) -> list[OrderReport]:
        """Place the intents, in order; one report per intent, same order.

        An intent whose client id was already placed gets that order's report (no new order).
        """
        ...

    def order(self, account: str, client_order_id: str) -> OrderReport | None:
        """The order with this client id on this account, or None if the venue has none."""
        ...

    def positions(self, account: str) -> list[Position]:
        """The account's open positions (none when flat)."""
        ...

    def balance(self, account: str) -> Balance:
        """The account's balance."""
        ...
