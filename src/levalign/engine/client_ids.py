"""Client order ids: a pure function of (lead event id, follower id, leg).

The same (event, follower, leg) always gives the same id, so an order recorded twice, retried
or re-dispatched after a restart carries the id it had the first time, and the exchange (and
the store's primary key) can tell it is the same order.

Derivation (version 1)::

    enc(s)  = 4-byte big-endian length of s's UTF-8 bytes + the bytes
    event   = SHA-256(b"levalign/client-event/v1" + enc(event_id))[:6]
    order   = SHA-256(b"levalign/client-id/v1"
                      + enc(event_id) + enc(follower_id) + enc(leg))[:10]
    digest  = event + order                    # 16 bytes, 128 bits
    cloid   = "0x" + digest.hex()              # Hyperliquid cloid: 0x + 32 lower-case hex
    binance = "lv-" + digest.hex()             # Binance newClientOrderId: 35 chars of [a-z0-9-]

The length prefixes make the encoding injective (``("a", "bc")`` and ``("ab", "c")`` differ).
The first 48 bits depend on the event alone, so the orders of one event are neighbours in
the store's client-id index and an event's 10,000 orders go into one place of it instead of
10,000 (docs/live.md, "Client ids"). Two orders of one event collide only if their 80-bit
order parts do (about 10^-16 for 20,000 orders); orders of two events only if both parts
do (2^-128 for a pair).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

__all__ = [
    "BINANCE_PATTERN",
    "CLOID_PATTERN",
    "binance_client_id",
    "binance_from_cloid",
    "client_digest",
    "cloid",
    "event_cloids",
]

_EVENT_PREFIX = b"levalign/client-event/v1"
_ORDER_PREFIX = b"levalign/client-id/v1"
CLOID_PATTERN = re.compile(r"^0x[0-9a-f]{32}$")
BINANCE_PATTERN = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")


def _enc(part: str) -> bytes:
    raw = part.encode("utf-8")
    return len(raw).to_bytes(4, "big") + raw


def event_cloids(event_id: str, orders: Iterable[tuple[str, str]]) -> list[str]:
    """The cloids of (follower id, leg) pairs in one event (the event's part hashed once)."""
    ev = _enc(event_id)
    head = "0x" + hashlib.sha256(_EVENT_PREFIX + ev).digest()[:6].hex()
    base = hashlib.sha256(_ORDER_PREFIX + ev)
    out = []
    for follower_id, leg in orders:
        h = base.copy()
        h.update(_enc(follower_id) + _enc(leg))
        out.append(head + h.digest()[:10].hex())
    return out


def client_digest(event_id: str, follower_id: str, leg: str) -> bytes:
    """The 16-byte digest behind both client id forms (see the module docstring)."""
    ev = _enc(event_id)
    event = hashlib.sha256(_EVENT_PREFIX + ev).digest()[:6]
    order = hashlib.sha256(_ORDER_PREFIX + ev + _enc(follower_id) + _enc(leg)).digest()[:10]
    return event + order


def cloid(event_id: str, follower_id: str, leg: str) -> str:
    """Hyperliquid ``cloid`` of a follower order: ``0x`` + 32 lower-case hex digits."""
    return "0x" + client_digest(event_id, follower_id, leg).hex()


def binance_client_id(event_id: str, follower_id: str, leg: str) -> str:
    """Binance ``newClientOrderId`` of a follower order: ``lv-`` + 32 hex (35 characters)."""
    return "lv-" + client_digest(event_id, follower_id, leg).hex()


def binance_from_cloid(client_id: str) -> str:
    """The Binance form of a stored ``cloid`` (the same 128 bits)."""
    return "lv-" + client_id[2:]
