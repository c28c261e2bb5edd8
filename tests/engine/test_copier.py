"""The copy loop against the Hyperliquid sandbox, with the official SDK as the venue client."""

from __future__ import annotations

import asyncio
import collections
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from levalign.engine.config import load_config
from levalign.engine.copier import Copier
from levalign.engine.credentials import KEYFILE_ENV, encrypt_keys, new_file_key
from levalign.engine.outbox import FillRecord
from levalign.sandbox.hyperliquid import HyperliquidSandbox, SandboxConfig
from levalign.schemas import LeadEvent
from tests.engine._copy_setup import (
    LEAD,
    Follower,
    key_env,
    lead_fill_count,
    make_followers,
    settled,
    write_config,
    write_lead,
)

SOL = "SOL/USDC:USDC"


@pytest.fixture
def followers(monkeypatch: pytest.MonkeyPatch) -> list[Follower]:
    out = [Follower(f.id, f.address, f.key, 1000.0) for f in make_followers(4, 7)]
    for name, key in key_env(out).items():
        monkeypatch.setenv(name, key)
    return out


@pytest.fixture
def sandbox(tmp_path: Path, followers: list[Follower]) -> Iterator[HyperliquidSandbox]:
    lead = write_lead(tmp_path / "lead.csv", 12, 3)
    with HyperliquidSandbox(
        SandboxConfig(lead=lead, fund={f.address: f.equity for f in followers})
    ) as sb:
        yield sb


def _event(price: float, before: float, after: float, n: int = 1) -> LeadEvent:
    return LeadEvent(
        event_id=f"test:{n}",
        timestamp=0,
        symbol=SOL,
        price=price,
        lead_equity=100_000.0,
        lead_position_before=before,
        lead_position_after=after,
    )


def _copier(
    tmp_path: Path, sandbox: HyperliquidSandbox, followers: list[Follower], extra: str = ""
) -> Copier:
    copier = Copier(load_config(write_config(tmp_path, sandbox.base_url, followers, extra=extra)))
    copier.prepare()
    return copier


def test_every_lead_fill_is_copied_once_and_the_store_matches_the_venue(
    tmp_path: Path, sandbox: HyperliquidSandbox, followers: list[Follower]
) -> None:
    # Arrange
    copier = Copier(load_config(write_config(tmp_path, sandbox.base_url, followers)))
    thread = threading.Thread(target=lambda: asyncio.run(copier.run()))
    thread.start()
    try:
        assert copier.ready.wait(120)

        # Act: play the 12 lead fills one at a time, each copied before the next
        for _ in range(12):
            sandbox.step(fills=1)
            events = lead_fill_count(sandbox.base_url)
            deadline = time.monotonic() + 120
            while not settled(copier.config.store_url, events):
                assert time.monotonic() < deadline, copier.stats
                time.sleep(0.02)
    finally:
        copier.stop()
        thread.join(60)

    # Assert: 12 events; each order reached the sandbox once; stored positions are the venue's
    assert copier.stats.events == 12
    log = collections.Counter(o["cloid"] for o in sandbox.orders())
    assert set(log.values()) == {1}
    assert sum(log.values()) == copier.stats.orders
    for f in followers:
        state = copier.venue.account(f.address)
        stored = copier.store.follower(f.id)
        assert stored is not None
        mine = {s: float(p["position"]) for s, p in stored["positions"].items()}
        assert {s: q for s, q in mine.items() if q} == state.positions


def test_the_first_open_is_sized_on_equity_and_capped_from_the_lead_price(
    tmp_path: Path, sandbox: HyperliquidSandbox, followers: list[Follower]
) -> None:
    # Arrange: the sandbox mid of SOL is the first lead fill's price
    copier = _copier(tmp_path, sandbox, followers)
    mid = copier.venue.mids()[SOL]

    # Act: the lead opens 200 SOL long at the mid, with 100,000 of equity
    intents, payload, _ = copier.orders_for(_event(mid, 0.0, 200.0))

    # Assert: proportional: 200 x 1,000 / 100,000 = 2 SOL each; a buy capped at
    # mid x 1.005 rounded down onto the price grid (docs/live.md, Hyperliquid venue)
    assert [(i.follower_id, i.amount, i.side, i.reduce_only) for i in intents] == [
        (f.id, "2", "buy", False) for f in followers
    ]
    assert {i.price_limit for i in intents} == {copier.venue.price_cap(SOL, mid, "buy", 0.005)}
    assert "skipped" not in payload


def _hold(copier: Copier, follower_id: str, qty: str, price: float) -> None:
    copier.store.record_fills(
        [FillRecord(follower_id, f"t-{follower_id}", SOL, "buy", qty, str(price), 1)]
    )


def test_opens_are_skipped_when_the_market_moved_and_closes_always_go(
    tmp_path: Path, sandbox: HyperliquidSandbox, followers: list[Follower]
) -> None:
    # Arrange: the market is 2 % above the lead's fill; follower 0 holds 3 SOL
    copier = _copier(tmp_path, sandbox, followers)
    mid = copier.venue.mids()[SOL]
    _hold(copier, followers[0].id, "3", mid)
    lead_price = mid / 1.02

    # Act: the lead adds (an open), then closes everything
    opens, payload, _ = copier.orders_for(_event(lead_price, 100.0, 300.0, 1))
    closes, _, _ = copier.orders_for(_event(lead_price, 300.0, 0.0, 2))

    # Assert: no open, each skipped with the slippage reason; the close goes, reduce-only,
    # without a price cap
    assert opens == []
    assert set(payload["skipped"]) == {f.id for f in followers}
    assert all(r.startswith("slippage: the market is at") for r in payload["skipped"].values())
    assert [(c.follower_id, c.amount, c.side, c.reduce_only, c.price_limit) for c in closes] == [
        (followers[0].id, "3", "sell", True, None)
    ]


def test_a_paused_follower_gets_closes_but_no_opens(
    tmp_path: Path, sandbox: HyperliquidSandbox, followers: list[Follower]
) -> None:
    copier = _copier(tmp_path, sandbox, followers)
    mid = copier.venue.mids()[SOL]
    _hold(copier, followers[1].id, "2", mid)
    copier.store.set_status(followers[1].id, "paused", "by hand")

    opens, payload, _ = copier.orders_for(_event(mid, 0.0, 100.0, 1))
    closes, _, _ = copier.orders_for(_event(mid, 100.0, 0.0, 2))

    assert followers[1].id not in {o.follower_id for o in opens}
    assert payload["skipped"] == {followers[1].id: "paused"}
    assert [c.follower_id for c in closes] == [followers[1].id]


def test_max_notional_per_symbol_caps_the_open(
    tmp_path: Path, sandbox: HyperliquidSandbox, followers: list[Follower]
) -> None:
    # Arrange: follower 0 may hold at most 30 USDC of SOL
    copier = _copier(tmp_path, sandbox, followers)
    copier.followers[followers[0].id] = copier.followers[followers[0].id].model_copy(
        update={"max_notional_per_symbol": {SOL: 30.0}}
    )
    mid = copier.venue.mids()[SOL]

    # Act: an open that would be 2 SOL (about 45 USDC) for each follower
    intents, _, _ = copier.orders_for(_event(mid, 0.0, 200.0))

    # Assert: follower 0's open is at most 30 USDC, the others' are not capped
    amounts = {i.follower_id: Decimal(i.amount) for i in intents}
    assert amounts[followers[0].id] * Decimal(str(mid)) <= 30
    assert amounts[followers[1].id] == 2


def test_the_equity_stop_closes_everything_and_stops_copying(
    tmp_path: Path, sandbox: HyperliquidSandbox, followers: list[Follower]
) -> None:
    # Arrange: follower 2 holds 2 SOL and its equity stop is above its 1,000 of equity
    copier = _copier(tmp_path, sandbox, followers)
    copier.followers[followers[2].id] = copier.followers[followers[2].id].model_copy(
        update={"equity_stop": 1500.0}
    )
    copier.config = copier.config.model_copy(update={"followers": tuple(copier.followers.values())})
    _hold(copier, followers[2].id, "2", copier.venue.mids()[SOL])

    # Act
    stopped = copier.check_stops()

    # Assert: stopped with the reason, a reduce-only close of 2 SOL is in the outbox
    row = copier.store.follower(followers[2].id)
    assert stopped == [followers[2].id]
    assert row is not None
    assert row["status"] == "stopped"
    assert "below equity_stop 1500" in row["status_reason"]
    pending = copier.store.orders(follower_id=followers[2].id, state="pending")
    assert [(o["side"], o["amount"], o["reduce_only"]) for o in pending] == [("sell", "2", True)]


def test_a_follower_that_leaves_the_config_is_closed_by_its_unfollow_policy(
    tmp_path: Path, sandbox: HyperliquidSandbox, followers: list[Follower]
) -> None:
    # Arrange: follower 3 holds 1 SOL, then the config drops it (unfollow = "close" default)
    copier = _copier(tmp_path, sandbox, followers)
    _hold(copier, followers[3].id, "1", copier.venue.mids()[SOL])
    copier.store.close()

    # Act
    again = _copier(tmp_path, sandbox, followers[:3])

    # Assert
    row = again.store.follower(followers[3].id)
    assert row is not None
    assert row["status"] == "unfollowed"
    pending = again.store.orders(follower_id=followers[3].id, state="pending")
    assert [(o["side"], o["amount"], o["reduce_only"]) for o in pending] == [("sell", "1", True)]


# ---------------------------------------------------------------- bad input, from the CLI


def _copy_cli(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "levalign", "copy", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )


def _config_text(base_url: str, follower: str) -> str:
    return (
        f'[lead]\naddress = "{LEAD}"\n[venue]\nbase_url = "{base_url}"\n'
        f'[[followers]]\nid = "a"\naddress = "{LEAD}"\nequity = 100\n{follower}\n'
    )


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[lead\n", "not valid TOML"),
        (_config_text("http://127.0.0.1:9", 'credentials = "env:K"\nlevrage = 2'),
         "unknown key 'levrage': did you mean 'max_leverage'.*followers\\[0\\].levrage"),
        (_config_text("ftp://x", 'credentials = "env:K"'),
         "venue.base_url: must start with http:// or https://"),
    ],
)  # fmt: skip
def test_bad_config_exits_4_naming_the_key(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")

    done = _copy_cli(path)

    assert done.returncode == 4
    assert "Traceback" not in done.stderr
    assert re.search(match, done.stderr), done.stderr


def test_a_wrong_file_key_exits_4_without_the_secret(tmp_path: Path) -> None:
    secret = "0x" + "5a" * 32
    right = new_file_key()
    encrypt_keys({"a": secret}, tmp_path / "keys.enc", right)
    path = tmp_path / "c.toml"
    path.write_text(
        _config_text("http://127.0.0.1:9", 'credentials = "file:keys.enc#a"'), encoding="utf-8"
    )
    wrong = new_file_key()

    done = _copy_cli(path, {KEYFILE_ENV: wrong})

    assert done.returncode == 4
    assert "cannot be decrypted" in done.stderr
    assert "followers[0]" in done.stderr
    for hidden in (secret[2:], right, wrong):
        assert hidden not in done.stderr


def test_an_unreachable_base_url_exits_4_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(_config_text("http://127.0.0.1:9", 'credentials = "env:K"'), encoding="utf-8")

    done = _copy_cli(path, {"K": "0x" + "11" * 32})

    assert done.returncode == 4
    assert "base_url" in done.stderr
    assert "http://127.0.0.1:9" in done.stderr
    assert "Traceback" not in done.stderr


def test_existing_lead_positions_are_copied_once_only_for_followers_who_ask(
    tmp_path: Path, sandbox: HyperliquidSandbox, followers: list[Follower]
) -> None:
    from levalign.sources.base import LeadState

    # Arrange: follower 0 asks for the lead's existing positions; the lead holds 200 SOL
    copier = _copier(tmp_path, sandbox, followers)
    wants = copier.followers[followers[0].id].model_copy(update={"copy_existing_positions": True})
    copier.followers[wants.id] = wants
    copier.config = copier.config.model_copy(update={"followers": tuple(copier.followers.values())})
    mid = copier.venue.mids()[SOL]
    state = LeadState(1, 100_000.0, {SOL: 200.0}, initial=True, prices={SOL: mid})

    # Act: the first start's state, then the same state again (a second run's first start)
    copier.handle(state)
    again = Copier(copier.config)
    again.prepare()
    again.handle(state)

    # Assert: one open of 200 x 1,000 / 100,000 = 2 SOL for follower 0, none for the others
    orders = copier.store.orders()
    assert [(o["follower_id"], o["side"], o["amount"]) for o in orders] == [
        (followers[0].id, "buy", "2")
    ]
    assert copier.ready.is_set()
