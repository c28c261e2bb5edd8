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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = ["Ack", "AckStatus", "Lookup", "LookupStatus", "OrderRequest", "OrderVenue"]

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
