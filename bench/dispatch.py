"""Dispatcher throughput on loopback against the sandbox, rate limits off.

``ORDERS`` pending IOC opens (0.001 BTC at a cap above the mid, so every one fills) for
``FOLLOWERS`` followers are put into a SQLite outbox; the figure is orders per second of
``Dispatcher.dispatch_once`` passes until the outbox is empty (claim, sign with the SDK, POST
/exchange, parse, record the acknowledgement), median of ``RUNS`` runs. The baseline, in the
same run and sandbox: the raw SDK ``Exchange.order`` loop over the same orders with no store.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

FOLLOWERS = 20
ORDERS = 200
RUNS = 3
BTC = "BTC/USDC:USDC"


def _keys(base: int) -> list[str]:
    return [f"0x{base + i + 1:064x}" for i in range(FOLLOWERS)]


def run() -> dict[str, Any]:
    """Orders per second of the dispatcher and of the bare SDK loop, and their ratio."""
    from eth_account import Account
    from hyperliquid.exchange import Exchange

    from levalign.engine.dispatcher import Dispatcher
    from levalign.engine.outbox import LeadEventRecord, OrderIntent
    from levalign.engine.store import Store
    from levalign.sandbox.hyperliquid import HyperliquidSandbox, SandboxConfig
    from levalign.venues.hyperliquid import HyperliquidVenue

    addresses = [str(Account.from_key(k).address) for k in _keys(0)]
    agents = _keys(1000)
    for i, key in enumerate(agents):
        os.environ[f"LEVALIGN_BENCH_AGENT_{i}"] = key
    config = SandboxConfig(
        fund=dict.fromkeys(addresses, 10_000_000),
        mids={"BTC": "20000"},
        rest_weight_per_minute=None,
    )
    dispatcher_rates: list[float] = []
    sdk_rates: list[float] = []
    with HyperliquidSandbox(config) as sandbox, tempfile.TemporaryDirectory() as tmp:
        for a, key in zip(addresses, agents, strict=True):
            sandbox.approve_agent(a, Account.from_key(key).address)
        for r in range(RUNS):
            store = Store(f"sqlite:///{Path(tmp) / f'bench{r}.db'}")
            store.upgrade()
            lead = store.add_lead("hyperliquid", "0xlead")
            store.add_followers(
                lead,
                [
                    {
                        "id": f"f{i}",
                        "address": a,
                        "credentials_ref": f"env:LEVALIGN_BENCH_AGENT_{i}",
                        "equity": 1000.0,
                    }
                    for i, a in enumerate(addresses)
                ],
            )
            for k in range(ORDERS // FOLLOWERS):
                store.record_event(
                    LeadEventRecord(f"ev{k}", lead, "fill", {}, k),
                    [
                        OrderIntent(f"f{i}", "open", BTC, "buy", "0.001", False, 1, "20200")
                        for i in range(FOLLOWERS)
                    ],
                )
            venue = HyperliquidVenue(sandbox.base_url)
            venue.sz_decimals(BTC)
            d = Dispatcher(store, venue, worker="bench")
            for i, a in enumerate(addresses):  # SDK clients built before timing, as the loop
                venue._client(a, f"env:LEVALIGN_BENCH_AGENT_{i}")
            start = time.perf_counter()
            sent = 0
            while sent < ORDERS:
                sent += d.dispatch_once().claimed
            dispatcher_rates.append(ORDERS / (time.perf_counter() - start))
            store.close()

            exchanges = [
                Exchange(Account.from_key(key), sandbox.base_url, account_address=a)
                for a, key in zip(addresses, agents, strict=True)
            ]
            start = time.perf_counter()
            for n in range(ORDERS):
                exchanges[n % FOLLOWERS].order("BTC", True, 0.001, 20200, {"limit": {"tif": "Ioc"}})
            sdk_rates.append(ORDERS / (time.perf_counter() - start))
    dispatcher = statistics.median(dispatcher_rates)
    sdk = statistics.median(sdk_rates)
    return {
        "dispatch_orders": ORDERS,
        "dispatch_runs": RUNS,
        "dispatcher_orders_per_s": dispatcher,
        "sdk_orders_per_s": sdk,
        "dispatcher_over_sdk": dispatcher / sdk,
    }


if __name__ == "__main__":
    print(run())
