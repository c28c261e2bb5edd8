from __future__ import annotations

import numpy as np
import pytest

from levalign.engine.client_ids import cloid
from levalign.engine.marks import MarkWatcher, derisk_event_id
from levalign.engine.outbox import FillRecord
from levalign.engine.store import Store
from levalign.errors import InvalidInput
from levalign.markets import Markets
from levalign.normalize import derisk

BTC = "BTC/USDC:USDC"


@pytest.fixture
def lead(store: Store) -> int:
    lead = store.add_lead("hyperliquid", "0xlead")
    rows = [
        {
            "id": f"f{i}",
            "address": f"0x{i:040x}",
            "credentials_ref": f"env:F{i}",
            "equity": 100.0,
            "derisk_distance": 0.6 if i == 1 else None,
            "min_liq_distance": 0.6 if i == 1 else None,
            "margin_mode": "cross",
        }
        for i in range(3)
    ]
    store.add_followers(lead, [{k: v for k, v in r.items() if v is not None} for r in rows])
    for i in range(3):
        store.record_fills([FillRecord(f"f{i}", f"t{i}", BTC, "buy", "0.01", "20000", 0)])
    return lead


def test_a_move_into_the_floor_gives_one_reduce_only_order(
    store: Store, lead: int, hyperliquid: Markets
):
    watcher = MarkWatcher(store, lead, hyperliquid, min_move=0.001, bucket_ms=1000)
    # f1: cross, equity 100 at the mark, 0.01 BTC, mmr 0.0125 (1/80), floor and buffer 0.6
    expected = derisk(BTC, 19_000.0, store.cohort_table(lead, BTC), hyperliquid)
    check = watcher.on_mark(BTC, 19_000.0, 5_000)
    assert check.checked
    assert check.recorded
    # at 19000: liquidation (190 - 100) / (0.01 · 0.9875) = 9113.9, 52 % away < 60 %:
    # keep Q with Q · 19000 · (0.6 + 0.4 / 80) <= 100, Q <= 0.0086994; cut 0.0013006,
    # rounded up to whole lots of 0.00001: 0.00131
    assert [(o.follower_id, o.side, o.amount, o.reduce_only) for o in check.intents] == [
        ("f1", "sell", "0.00131", True)
    ]
    assert float(check.intents[0].amount) == pytest.approx(float(expected["amount"][1]))
    assert list(np.asarray(expected["side"])) == [0, -1, 0]
    client_id = cloid(derisk_event_id(BTC, 5_000, 1000), "f1", "derisk")
    order = store.order(client_id)
    assert order is not None
    assert (order["state"], order["reduce_only"], order["amount"]) == ("pending", True, "0.00131")

    # the same mark again: throttled; past the throttle in the same bucket: the same order
    assert not watcher.on_mark(BTC, 19_000.0, 5_100).checked
    fresh = MarkWatcher(store, lead, hyperliquid, bucket_ms=1000)
    again = fresh.on_mark(BTC, 19_000.0, 5_500)
    assert again.checked
    assert not again.recorded
    assert store.backlog().pending_reducing == 1


def test_a_mark_outside_every_floor_orders_nothing(store: Store, lead: int, hyperliquid: Markets):
    # at 15000 f1's liquidation is (150 - 100) / (0.01 · 0.9875) = 5063.3, 66 % away > 60 %
    check = MarkWatcher(store, lead, hyperliquid).on_mark(BTC, 15_000.0, 1)
    assert check.checked
    assert check.intents == ()
    assert not check.recorded


def test_bad_settings_are_refused_by_name(store: Store, hyperliquid: Markets):
    with pytest.raises(InvalidInput, match="min_move must be a finite fraction"):
        MarkWatcher(store, 1, hyperliquid, min_move=-1)
    with pytest.raises(InvalidInput, match="bucket_ms must be positive"):
        MarkWatcher(store, 1, hyperliquid, bucket_ms=0)
    with pytest.raises(InvalidInput, match="mark price of BTC/USDC:USDC must be positive"):
        MarkWatcher(store, 1, hyperliquid).on_mark(BTC, float("nan"), 1)
