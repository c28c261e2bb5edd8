"""The order venue protocol: what the live dispatcher needs from an exchange client.

A venue takes one order at a time (:meth:`OrderVenue.submit`) and answers what it knows about an
order by its client id (:meth:`OrderVenue.lookup`). The Hyperliquid client, a ccxt adapter and a
paper venue implement it; the dispatcher (:mod:`levalign.engine.dispatcher`) depends only on this
module.

Contract of :meth:`~OrderVenue.submit`:

- returns an :class:`Ack` when the exchange answered: ``resting``, ``filled`` or ``rejected``
  (with the exchange's reason);
- raises :class:`levalign.errors.Retryable` when the answer is not known (timeout, 5xx, lost
  response, a duplicate client id): the order may or may not exist, and the dispatcher resolves
  it with :meth:`~OrderVenue.lookup`, never by sending it again;
- must make the exchange refuse the order if it arrives after ``expires_at_ms`` (Hyperliquid's
  ``expiresAfter``), so that a ``not_found`` lookup after that time is final.

In-process venues (the paper venue) also implement :class:`Venue`, which adds each
account's positions and balance for reconciliation.

What a venue is to the engine: the :class:`Venue` protocol and the records it exchanges.

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

__all__ = [
    "Ack",
    "AckStatus",
    "Balance",
    "Lookup",
    "LookupStatus",
    "OrderIntent",
    "OrderReport",
    "OrderRequest",
    "OrderStatus",
    "OrderVenue",
    "Venue",
]

AckStatus = Literal["resting", "filled", "rejected"]
LookupStatus = Literal["resting", "filled", "canceled", "rejected", "not_found"]


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """One follower order as the venue sends it.

    Parameters
    ----------
    client_id
        Hyperliquid ``cloid`` (``0x`` + 32 hex), derived from (lead event, follower, leg).
    venue_client_id
        The same 128 bits in the form the venue accepts (Binance ``newClientOrderId``).
    account
        The follower's venue address.
    credentials_ref
        Where the follower's key is (``env:NAME``): the venue resolves it; never the key.
    symbol, side, amount
        ccxt symbol, ``buy`` or ``sell``, and the amount in contracts as an exact decimal string.
    price_limit
        The worst acceptable price as a decimal string (IOC at a capped price), or ``None``
        for a market order.
    reduce_only
        The order may only reduce the position.
    time_in_force
        ``ioc`` or ``gtc``.
    expires_at_ms
        Epoch milliseconds after which the exchange must refuse the order.
    """

    client_id: str
    venue_client_id: str
    account: str
    credentials_ref: str
    symbol: str
    side: Literal["buy", "sell"]
    amount: str
    price_limit: str | None
    reduce_only: bool
    time_in_force: str
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class Ack:
    """The exchange's answer to a submitted order.

    ``exchange_id`` is the exchange's order id (Hyperliquid ``oid``); ``reason`` the exchange's
    error string of a rejection; ``filled`` and ``average_price`` what filled at once, as
    decimal strings, when the exchange says.
    """

    client_id: str
    status: AckStatus
    exchange_id: str | None = None
    reason: str | None = None
    filled: str | None = None
    average_price: str | None = None


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the venue knows about an order found by its client id (``not_found``: nothing)."""

    client_id: str
    status: LookupStatus
    exchange_id: str | None = None
    reason: str | None = None


@runtime_checkable
class OrderVenue(Protocol):
    """An exchange client the dispatcher can send orders through."""

    def submit(self, order: OrderRequest) -> Ack:
        """Send ``order``; raise :class:`levalign.errors.Retryable` if the outcome is unknown."""
        ...

    def lookup(self, order: OrderRequest) -> Lookup:
        """The order's state at the venue, found by its client id (Hyperliquid orderStatus)."""
        ...


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
