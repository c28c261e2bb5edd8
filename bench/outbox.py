"""Lead event -> every follower order durable in the outbox, 10,000 followers.

One ``Store.record_event`` call per lead event: the event row, 10,000 pending orders (client
ids derived, primary key and the pending index maintained, foreign keys checked), a residual
for every follower and the source cursor, committed in one transaction (SQLite: WAL,
``synchronous=FULL``, so the commit waits for fsync; PostgreSQL: COPY, then commit).

Figures, for SQLite (a temporary file) and PostgreSQL (127.0.0.1:5432, database ``test``, a
scratch schema; skipped if unreachable):

- ``p50`` / ``p99`` of ``record_event`` over ``RUNS`` events after warm-up;
- ``baseline``: the same rows inserted by one driver ``executemany`` into a plain table with
  no index, key or constraint, and committed, in the same database and run (median): the
  ratio says what the outbox's keys, index, residuals and cursor cost over a bare insert;
- ``intents``: building the order intents from the ``normalize`` result
  (``intents_from_result``), which the copier does before recording.

The orders are the bundled demo cohort's (``sample_cohort(10_000, 7)``, every sizing mode)
for a lead opening 5 BTC at 60,000: every follower that gets an order has one, and the
residuals written are those the event changed.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from bench._timing import median_seconds
from levalign.engine.outbox import (
    Cursor,
    LeadEventRecord,
    OrderIntent,
    intents_from_result,
)
from levalign.engine.store import Store

FOLLOWERS = 10_000
RUNS = 60
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _followers() -> list[dict[str, Any]]:
    return [
        {
            "id": _follower_id(i),
            "address": f"0x{i:040x}",
            "credentials_ref": f"env:KEY_{i}",
            "equity": 1000.0 + i,
        }
        for i in range(FOLLOWERS)
    ]


def _sized() -> tuple[list[OrderIntent], dict[str, float], float]:
    """The demo cohort's orders for a lead opening 5 BTC, and the residuals that changed."""
    from levalign.markets import load_markets
    from levalign.normalize import normalize
    from levalign.samples import sample_cohort

    markets = load_markets("hyperliquid")
    cohort = sample_cohort(FOLLOWERS, seed=7)
    cohort["id"] = [_follower_id(i) for i in range(FOLLOWERS)]
    event = {
        "event_id": "e",
        "symbol": "BTC/USDC:USDC",
        "price": 60_000.0,
        "lead_equity": 100_000.0,
        "lead_position_before": 0.0,
        "lead_position_after": 5.0,
    }
    result = normalize(event, cohort, markets)
    step = markets["BTC/USDC:USDC"].amount_step
    if step is None:
        raise SystemExit("the bundled hyperliquid BTC market has no amount step")
    intents = intents_from_result(result, step)
    changed = result["residual"] != np.asarray(cohort.get("residual", np.zeros(FOLLOWERS)))
    residuals = {
        str(result["id"][i]): float(result["residual"][i]) for i in np.flatnonzero(changed)
    }
    median, _ = median_seconds(lambda: intents_from_result(result, step), runs=10)
    return intents, residuals, median * 1e3


def _follower_id(i: int) -> str:
    return f"follower-{i:05d}"


def _baseline(store: Store, rows: list[tuple[Any, ...]]) -> float:
    """Median seconds of one executemany of ``rows`` into an index-free table, committed."""
    cols = ", ".join(
        f"c{i} {'TEXT' if isinstance(v, str) else 'DOUBLE PRECISION'}"
        for i, v in enumerate(rows[0])
    )
    mark = "?" if store.dialect == "sqlite" else "%s"
    sql = f"INSERT INTO bench_plain VALUES ({', '.join([mark] * len(rows[0]))})"
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE bench_plain ({cols})")

    def insert() -> None:
        with store.engine.begin() as conn:
            conn.exec_driver_sql(sql, rows)

    median, _ = median_seconds(insert, runs=max(RUNS // 3, 5))
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE bench_plain")
    return median


def _measure(url: str, intents: list[OrderIntent], residuals: dict[str, float]) -> dict[str, float]:
    store = Store(url)
    store.upgrade()
    lead = store.add_lead("hyperliquid", "0xlead")
    store.add_followers(lead, _followers())
    k = [0]

    def record() -> None:
        i = k[0]
        k[0] += 1
        event = LeadEventRecord(
            f"hl:0xlead:{i}", lead, "fill", {"tid": i}, created_ms=i, symbol="BTC/USDC:USDC"
        )
        store.record_event(event, intents, Cursor(i, i), residuals=residuals)

    for _ in range(3):
        record()
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        record()
        samples.append(time.perf_counter() - start)
    # the same rows as one plain executemany (client ids already computed, no keys)
    rows = [
        (
            o.client_id("baseline"),
            "baseline",
            o.follower_id,
            o.leg,
            float(s),
            o.symbol,
            o.side,
            o.amount,
            float(o.reduce_only),
            o.time_in_force,
            o.leverage or 0.0,
            o.collateral or 0.0,
            float(o.priority),
            "pending",
        )
        for s, o in enumerate(intents)
    ]
    base = _baseline(store, rows)
    store.close()
    arr = np.array(samples)
    p50 = float(np.percentile(arr, 50))
    return {
        "p50_ms": p50 * 1e3,
        "p99_ms": float(np.percentile(arr, 99)) * 1e3,
        "max_ms": float(arr.max()) * 1e3,
        "baseline_ms": base * 1e3,
        "over_baseline": p50 / base,
    }


def _pg_schema() -> str | None:
    from sqlalchemy import create_engine, text

    schema = f"bench_outbox_{uuid.uuid4().hex[:12]}"
    try:
        admin = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        admin.dispose()
    except Exception:  # noqa: BLE001 - any failure means "no PostgreSQL here"
        return None
    return schema


def _drop_schema(schema: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def run() -> dict[str, Any]:
    """Measure SQLite and (when reachable) PostgreSQL; figures in ms."""
    intents, residuals, intents_ms = _sized()
    out: dict[str, Any] = {
        "outbox_followers": FOLLOWERS,
        "outbox_orders": len(intents),
        "outbox_residuals": len(residuals),
        "outbox_runs": RUNS,
        "intents_ms": intents_ms,
    }
    with tempfile.TemporaryDirectory() as tmp:
        out["sqlite"] = _measure(f"sqlite:///{Path(tmp) / 'outbox.db'}", intents, residuals)
    schema = _pg_schema()
    if schema is None:
        out["postgresql"] = None
    else:
        try:
            url = f"{PG_URL}?options=-csearch_path%3D{schema}"
            out["postgresql"] = _measure(url, intents, residuals)
        finally:
            _drop_schema(schema)
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
