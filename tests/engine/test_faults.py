"""The venue side under faults: dispatcher + HyperliquidVenue + the sandbox, alone and mixed."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from levalign.engine.client_ids import cloid
from levalign.engine.dispatcher import Dispatcher
from levalign.engine.outbox import FillRecord, LeadEventRecord, OrderIntent
from levalign.engine.reconcile import reconcile
from levalign.engine.store import Store

sandbox_mod = pytest.importorskip("levalign.sandbox.hyperliquid")

BTC = "BTC/USDC:USDC"
FOLLOWERS = 20
EVENTS = 10  # 200 orders
FINAL = {"filled", "rejected", "canceled"}


def _keys(base: int) -> list[str]:
    return [f"0x{base + i + 1:064x}" for i in range(FOLLOWERS)]


def _arm(sandbox, kinds: list[str], seed: int) -> None:
    rng = random.Random(seed)
    for kind in kinds:
        sandbox.inject(
            kind,
            count=rng.randint(3, 8),
            delay_ms=1500 if kind == "http_delay" else 0,
            path="/exchange",
        )


def _copy_under_faults(store: Store, kinds: list[str], seed: int, monkeypatch) -> None:
    from eth_account import Account

    from levalign.venues.hyperliquid import HyperliquidVenue

    addresses = [str(Account.from_key(k).address) for k in _keys(0)]
    agents = _keys(1000)
    config = sandbox_mod.SandboxConfig(fund=dict.fromkeys(addresses, 1000), mids={"BTC": "20000"})
    for i, key in enumerate(agents):
        monkeypatch.setenv(f"LEVALIGN_FAULTS_AGENT_{i}", key)
    with sandbox_mod.HyperliquidSandbox(config) as sandbox:
        for a, key in zip(addresses, agents, strict=True):
            sandbox.approve_agent(a, Account.from_key(key).address)
        lead = store.add_lead("hyperliquid", "0xlead")
        store.add_followers(
            lead,
            [
                {
                    "id": f"f{i}",
                    "address": a,
                    "credentials_ref": f"env:LEVALIGN_FAULTS_AGENT_{i}",
                    "equity": 1000.0,
                }
                for i, a in enumerate(addresses)
            ],
        )
        for k in range(EVENTS):
            store.record_event(
                LeadEventRecord(f"ev{k}", lead, "fill", {}, k),
                [
                    OrderIntent(f"f{i}", "open", BTC, "buy", "0.001", False, 1, "20200")
                    for i in range(FOLLOWERS)
                ],
            )
        venue = HyperliquidVenue(sandbox.base_url, timeout=0.5)
        venue.sz_decimals(BTC)  # metadata before the faults: they are for orders
        _arm(sandbox, kinds, seed)
        d = Dispatcher(store, venue, worker="d", expires_in_ms=3000, lease_ms=6000)
        deadline = time.monotonic() + 90  # a generous bound, not a measurement
        while time.monotonic() < deadline:
            d.dispatch_once()
            d.resolve_unknown()
            b = store.backlog()
            if b.pending_reducing + b.pending_opening + b.sent + b.unknown + b.acknowledged == 0:
                break
            time.sleep(0.05)

        assert all(f["fired"] == f["count"] for f in sandbox.faults())  # every fault happened
        log = sandbox.orders()
        cloids = [o["cloid"] for o in log if o.get("cloid")]
        assert len(cloids) == len(set(cloids))  # 0 duplicate follower orders (by cloid)
        states = {}
        for k in range(EVENTS):
            for i in range(FOLLOWERS):
                row = store.order(cloid(f"ev{k}", f"f{i}", "open"))
                assert row is not None
                states[row["client_id"]] = row
        assert all(r["state"] in FINAL for r in states.values())
        assert all(r["reason"] for r in states.values() if r["state"] == "rejected")
        # every order the exchange holds is one the outbox intended and knows as filled
        filled = {c for c, r in states.items() if r["state"] == "filled"}
        assert set(cloids) - filled == {
            c for c, r in states.items() if r["state"] == "rejected"
        } & set(cloids)
        assert filled <= set(cloids)
        # the fills feed's part (not under test here): the store learns each filled order
        store.record_fills(
            [
                FillRecord(r["follower_id"], r["client_id"], BTC, "buy", r["amount"], "20000", 0)
                for r in states.values()
                if r["state"] == "filled"
            ]
        )
        result = reconcile(store, venue, lead, "after", band=0.0, unfollow="close", now_ms=1)
        assert result.report.orphans == []
        assert result.report.corrected == []
        assert result.intents == []


@pytest.mark.parametrize("kind", ["http_429", "http_5xx", "http_delay", "lose_response"])
def test_each_fault_alone(kind, tmp_path: Path, monkeypatch):
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.upgrade()
    try:
        _copy_under_faults(store, [kind], seed=1, monkeypatch=monkeypatch)
    finally:
        store.close()


@pytest.mark.parametrize("seed", [7])
def test_faults_mixed(store: Store, seed, monkeypatch):
    kinds = ["http_429", "http_5xx", "http_delay", "lose_response"] * 2
    random.Random(seed).shuffle(kinds)
    _copy_under_faults(store, kinds, seed, monkeypatch)
