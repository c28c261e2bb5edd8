"""``python -m tests.engine._writer URL``: record lead events of 200 orders each, forever.

The crash test kills this process with SIGKILL at an arbitrary moment and checks the store.
"""

from __future__ import annotations

import sys

from levalign.engine.outbox import PRIORITY_OPEN, Cursor, LeadEventRecord, OrderIntent
from levalign.engine.store import Store

ORDERS_PER_EVENT = 200


def main(url: str) -> None:
    store = Store(url)
    lead = store.add_lead("hyperliquid", "0xlead")
    k = 0
    while True:
        event = LeadEventRecord(f"ev{k}", lead, "fill", {"k": k}, created_ms=k, symbol="BTC")
        orders = [
            OrderIntent(f"f{i}", "open", "BTC", "buy", "0.001", False, PRIORITY_OPEN)
            for i in range(ORDERS_PER_EVENT)
        ]
        residuals = {f"f{i}": float(k) for i in range(ORDERS_PER_EVENT)}
        store.record_event(event, orders, Cursor(k, k), residuals=residuals)
        print(k, flush=True)
        k += 1


if __name__ == "__main__":
    main(sys.argv[1])
