"""A scripted lead, followers with keys, and a copier configuration, for the copier tests."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account

LEAD = "0x1ead000000000000000000000000000000000001"


def write_lead(path: Path, fills: int, seed: int) -> Path:
    """A SOL lead with ``fills`` fills: opens, adds, partial closes, closes and flips.

    Positions stay within 800 SOL, so that the orders of small followers stay rare.

    Equity stays 100,000 and fees are 0, so every event's ``lead_equity`` is 100,000 whenever
    the source reads the lead's state (a restart reads it at another time), and SOL has no
    bundled candles, so only the lead's fills move its mid: the copies are deterministic.
    """
    rng = random.Random(seed)
    rows = ["timestamp,symbol,price,position_after,equity,stop_price,leverage_setting,fee"]
    pos, price = 0.0, 22.5
    for i in range(fills):
        price = round(max(5.0, price * (1 + rng.uniform(-0.01, 0.01))), 3)
        kind = rng.random()
        if pos == 0 or kind < 0.45:
            # at most 800 SOL either way: a 40 USDC follower's copy stays under the minimum
            pos = round(
                max(-800.0, min(800.0, pos + rng.choice([-1, 1]) * rng.uniform(50, 800))), 2
            )
        elif kind < 0.75:
            pos = round(pos * rng.uniform(0.2, 0.8), 2)
        elif kind < 0.9:
            pos = 0.0
        else:
            pos = round(-pos * rng.uniform(0.5, 1.5), 2)
        stamp = f"2023-03-01T{i // 60:02d}:{i % 60:02d}:00.000Z"
        rows.append(f"{stamp},SOL/USDT:USDT,{price},{pos},100000,,10,0")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class Follower:
    id: str
    address: str
    key: str
    equity: float


def make_followers(n: int, seed: int) -> list[Follower]:
    """``n`` followers with deterministic keys and equities from 300 to 5,000 USDC."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        acct = Account.from_key(rng.randbytes(32))
        out.append(
            Follower(f"f{i:03d}", acct.address, acct.key.hex(), rng.choice([300, 1000, 5000]))
        )
    return out


def write_config(
    folder: Path,
    base_url: str,
    followers: list[Follower],
    *,
    keyfile: str | None = None,
    extra: str = "",
) -> Path:
    """A config with a followers file; keys by ``env:KEY_<id>`` or from ``keyfile``."""
    lines = ["id,address,credentials,equity,min_size_policy"]
    for f in followers:
        ref = f"file:{keyfile}#{f.id}" if keyfile else f"env:KEY_{f.id.upper()}"
        lines.append(f"{f.id},{f.address},{ref},{f.equity},skip")
    (folder / "followers.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    path = folder / "copy.toml"
    path.write_text(
        f'followers_file = "followers.csv"\n\n[lead]\naddress = "{LEAD}"\n\n'
        f'[venue]\nbase_url = "{base_url}"\n\n'
        "[engine]\nsend_expiry_seconds = 15\ndispatch_batch = 2\n"
        "ip_weight_per_minute = 1000000\n"
        f"fills_poll_seconds = 0.05\n{extra}",
        encoding="utf-8",
    )
    return path


def key_env(followers: list[Follower]) -> dict[str, str]:
    return {f"KEY_{f.id.upper()}": f.key for f in followers}


def keys_json(followers: list[Follower]) -> str:
    return json.dumps({f.id: f.key for f in followers})


def lead_fill_count(base_url: str) -> int:
    """How many fills the sandbox's lead has made."""
    import requests

    fills = requests.post(
        base_url + "/info", json={"type": "userFills", "user": LEAD}, timeout=10
    ).json()
    return len({f["oid"] for f in fills})


_STORES: dict[str, object] = {}


def settled(store_url: str, events: int) -> bool:
    """The store holds ``events`` lead events and every order is done, fills stored.

    Read in that order: an event and its orders commit together, so once the event is seen
    its orders are too.
    """
    from levalign.engine.store import Store

    store = _STORES.get(store_url)
    if store is None:
        store = _STORES[store_url] = Store(store_url)
    assert isinstance(store, Store)
    try:
        if store.event_count() < events:
            return False
        counts = store.order_counts()
        return (
            not any(counts.get(s) for s in ("pending", "sent", "unknown", "acknowledged"))
            and not store.unfilled_orders()
        )
    except Exception:  # noqa: BLE001 - the schema may not exist yet
        return False
