"""Crash test: kill -9 the copier at seeded random moments while it copies a scripted lead.

The sandbox runs as its own process (``python -m levalign sandbox hyperliquid``, stepped by
the test); the copier under test runs ``levalign.engine.copier.run_copy`` (what ``levalign
copy`` runs) in a process of its own with its keys in an encrypted file, killed with SIGKILL
and restarted at every kill. Each copier process is forked from a launcher that imported
everything once (``tests/engine/_forking_copier.py``), so that a restart does not spend
seconds importing. A second copier, in this process and
never interrupted, copies the same lead for twin followers (same equities and profiles, other
accounts): the reference run. The test steps one lead fill at a time and waits until both
stores hold the event with every order done, so both runs see the same prices.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import requests

from levalign.engine.config import load_config
from levalign.engine.copier import Copier
from levalign.engine.credentials import KEYFILE_ENV, encrypt_keys, new_file_key
from levalign.engine.store import Store
from tests.engine._copy_setup import (
    Follower,
    key_env,
    lead_fill_count,
    make_followers,
    settled,
    write_config,
    write_lead,
)

FILLS = 200
FOLLOWERS = 100
KILLS = 50
SEED = 20261204
WAIT_S = 120.0


def _tiny(followers: list[Follower]) -> list[Follower]:
    """All but five followers get 40 USDC: most of their copies fall under the $10 minimum."""
    return [f if i < 5 else Follower(f.id, f.address, f.key, 40.0) for i, f in enumerate(followers)]


def _wait(what: str, check: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _start_sandbox(lead: Path, accounts: list[Follower]) -> tuple[subprocess.Popen[str], str]:
    fund = [a for f in accounts for a in ("--fund", f"{f.address}={f.equity}")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "levalign", "sandbox", "hyperliquid", "--port", "0", "--speed",
         "0", "--lead", str(lead), *fund],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stderr is not None
    line = proc.stdout.readline()
    assert line.startswith("Hyperliquid sandbox on "), line + proc.stderr.read()
    return proc, line.split()[3]


class _Launcher:
    """The forking launcher: ``start()`` returns a fresh copier process id."""

    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self.log = log.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.engine._forking_copier", str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
            cwd=Path(__file__).parents[2],
        )

    def _ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().split()[1]

    def start(self) -> int:
        return int(self._ask("start"))

    def reap(self, pid: int) -> int:
        return int(self._ask(f"reap {pid}"))

    def close(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.proc.stdout.close()
        self.log.close()


def _has_cursor(url: str) -> bool:
    try:
        with Store(url) as store:
            return store.cursor(1) is not None
    except Exception:  # noqa: BLE001 - the store is not created yet
        return False


def _positions(url: str) -> dict[str, dict[str, Decimal]]:
    with Store(url) as store:
        return {
            str(r["id"]): {
                s: Decimal(p["position"])
                for s, p in r["positions"].items()
                if Decimal(p["position"]) != 0
            }
            for r in store.followers()
        }


def test_kill_9_at_random_moments_sends_every_order_once_and_ends_as_uninterrupted(
    tmp_path: Path,
) -> None:
    # Arrange: a 200-fill lead, 100 followers for the killed copier, 100 twins for the reference
    rng = random.Random(SEED)
    lead = write_lead(tmp_path / "lead.csv", FILLS, SEED)
    killed = _tiny(make_followers(FOLLOWERS, SEED))
    twins = [
        Follower(f.id, t.address, t.key, f.equity)
        for f, t in zip(killed, make_followers(FOLLOWERS, SEED + 1), strict=True)
    ]
    sandbox, base_url = _start_sandbox(lead, killed + twins)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    file_key = new_file_key()
    encrypt_keys({f.id: f.key for f in killed}, tmp_path / "a" / "keys.enc", file_key)
    config_a = write_config(tmp_path / "a", base_url, killed, keyfile="keys.enc")
    config_b = write_config(tmp_path / "b", base_url, twins)
    # numba's workqueue layer with one thread: the launcher can load the kernels and fork
    env = {
        **os.environ,
        KEYFILE_ENV: file_key,
        "NUMBA_THREADING_LAYER": "workqueue",
        "NUMBA_NUM_THREADS": "1",
    }
    os.environ.update(key_env(twins))
    url_a, url_b = load_config(config_a).store_url, load_config(config_b).store_url
    kill_steps = set(rng.sample(range(FILLS), KILLS))
    reference = Copier(load_config(config_b))
    ref_thread = threading.Thread(target=lambda: asyncio.run(reference.run()))
    launcher = _Launcher(config_a, env, tmp_path / "copier.log")
    pid = launcher.start()
    kills = 0
    started = time.monotonic()
    try:
        ref_thread.start()
        assert reference.ready.wait(WAIT_S)
        _wait("the copier's first cursor", lambda: _has_cursor(url_a))

        # Act: one lead fill at a time; at 50 seeded steps, SIGKILL at a random moment
        for step in range(FILLS):
            requests.post(f"{base_url}/_sandbox/step", json={"fills": 1}, timeout=30)
            if step in kill_steps:
                time.sleep(rng.uniform(0.0, 0.3))
                os.kill(pid, signal.SIGKILL)
                assert launcher.reap(pid) == -signal.SIGKILL
                kills += 1
                pid = launcher.start()
            events = lead_fill_count(base_url)
            _wait(
                f"step {step}",
                lambda n=events: settled(url_a, n) and settled(url_b, n),  # type: ignore[misc]
            )
    finally:
        os.kill(pid, signal.SIGTERM)
        code = launcher.reap(pid)
        launcher.close()
        reference.stop()
        ref_thread.join(timeout=60)
        log = requests.get(f"{base_url}/_sandbox/orders", timeout=30).json()
        sandbox.send_signal(signal.SIGINT)
        sandbox.communicate(timeout=30)  # reads and closes its pipes
    elapsed = time.monotonic() - started

    # Assert: every intended order of the killed copier reached the sandbox exactly once
    with Store(url_a) as store:
        intended = {o["client_id"] for o in store.orders(limit=1_000_000)}
        assert all(o["state"] in ("filled", "rejected", "canceled") for o in store.orders())
    accounts_a = {f.address.lower() for f in killed}
    received = collections.Counter(
        e["cloid"] for e in log if e["user"] in accounts_a and e["outcome"] != "refused"
    )
    assert set(received) == intended
    assert max(received.values()) == 1
    # the final positions equal the uninterrupted run's, follower by follower
    assert _positions(url_a) == _positions(url_b)
    assert kills >= KILLS
    assert code == 0
    print(f"crash test: {kills} kills, {len(intended)} orders, {elapsed:.0f} s")
