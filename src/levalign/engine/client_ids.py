"""Client order ids: a pure function of (lead event id, follower id, leg).

The same (event, follower, leg) always gives the same id, so an order recorded twice, retried
or re-dispatched after a restart carries the id it had the first time, and the exchange (and
the store's primary key) can tell it is the same order.

Derivation (version 1)::

    message = b"levalign/client-id/v1"
              + for each of (event_id, follower_id, leg), UTF-8 encoded:
                    4-byte big-endian length + the bytes
    digest  = SHA-256(message)[:16]            # 128 bits
    cloid   = "0x" + digest.hex()              # Hyperliquid cloid: 0x + 32 lower-case hex
    binance = "lv-" + digest.hex()             # Binance newClientOrderId: 35 chars of [a-z0-9-]

The length prefixes make the encoding injective (``("a", "bc")`` and ``("ab", "c")`` differ),
so two different triples collide only if SHA-256 truncated to 128 bits does (about 2^-64 for
4 billion orders).
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "BINANCE_PATTERN",
    "CLOID_PATTERN",
    "binance_client_id",
    "binance_from_cloid",
    "client_digest",
    "cloid",
]

_PREFIX = b"levalign/client-id/v1"
CLOID_PATTERN = re.compile(r"^0x[0-9a-f]{32}$")
BINANCE_PATTERN = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")


def client_digest(event_id: str, follower_id: str, leg: str) -> bytes:
    """The 16-byte digest behind both client id forms (see the module docstring)."""
    h = hashlib.sha256(_PREFIX)
    for part in (event_id, follower_id, leg):
        raw = part.encode("utf-8")
        h.update(len(raw).to_bytes(4, "big"))
        h.update(raw)
    return h.digest()[:16]


def cloid(event_id: str, follower_id: str, leg: str) -> str:
    """Hyperliquid ``cloid`` of a follower order: ``0x`` + 32 lower-case hex digits."""
    return "0x" + client_digest(event_id, follower_id, leg).hex()


def binance_client_id(event_id: str, follower_id: str, leg: str) -> str:
    """Binance ``newClientOrderId`` of a follower order: ``lv-`` + 32 hex (35 characters)."""
    return "lv-" + client_digest(event_id, follower_id, leg).hex()


def binance_from_cloid(client_id: str) -> str:
    """The Binance form of a stored ``cloid`` (the same 128 bits)."""
    return "lv-" + client_id[2:]
