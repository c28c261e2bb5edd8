"""An in-memory order venue for the engine's tests (the real clients are tested elsewhere).

It keeps every order it accepted by client id, counts submissions, and injects the faults the
dispatcher must survive: a request lost before the exchange, a response lost after it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from levalign.errors import Retryable
from levalign.venues.base import Ack, Lookup, OrderRequest


@dataclass
class MemoryVenue:
    accepted: dict[str, OrderRequest] = field(default_factory=dict)
    submissions: Counter[str] = field(default_factory=Counter)
    lose_request: set[str] = field(default_factory=set)
    lose_response: set[str] = field(default_factory=set)
    reject: dict[str, str] = field(default_factory=dict)
    resting: set[str] = field(default_factory=set)
    now_ms: int = 0

    def submit(self, order: OrderRequest) -> Ack:
        cid = order.client_id
        if cid in self.lose_request:
            self.lose_request.discard(cid)
            raise Retryable("request timed out", field="venue")
        self.submissions[cid] += 1
        if self.now_ms > order.expires_at_ms:
            return Ack(cid, "rejected", reason="expired")
        if cid in self.reject:
            return Ack(cid, "rejected", reason=self.reject[cid])
        self.accepted[cid] = order
        ack = Ack(
            cid, "resting" if cid in self.resting else "filled", exchange_id=str(len(self.accepted))
        )
        if cid in self.lose_response:
            self.lose_response.discard(cid)
            raise Retryable("response lost", field="venue")
        return ack

    def lookup(self, order: OrderRequest) -> Lookup:
        cid = order.client_id
        if cid not in self.accepted:
            return Lookup(cid, "not_found")
        return Lookup(cid, "resting" if cid in self.resting else "filled")
