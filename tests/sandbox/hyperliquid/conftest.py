"""A sandbox per test, funded accounts with fixed keys, and the official SDK's clients."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("hyperliquid")

import eth_account
from eth_account.signers.local import LocalAccount
from hyperliquid.exchange import Exchange
from hyperliquid.info import Info

from levalign.sandbox.hyperliquid import HyperliquidSandbox, SandboxConfig

ALICE_KEY = "0x" + "11" * 32
STRANGER_KEY = "0x" + "22" * 32


@pytest.fixture
def alice() -> LocalAccount:
    account: LocalAccount = eth_account.Account.from_key(ALICE_KEY)
    return account


@pytest.fixture
def sandbox(alice: LocalAccount) -> Iterator[HyperliquidSandbox]:
    config = SandboxConfig(fund={alice.address: 1000}, mids={"BTC": "20000", "ETH": "1500"})
    with HyperliquidSandbox(config) as sb:
        yield sb


@pytest.fixture
def info(sandbox: HyperliquidSandbox) -> Info:
    return Info(sandbox.base_url, skip_ws=True)


@pytest.fixture
def exchange(sandbox: HyperliquidSandbox, alice: LocalAccount) -> Exchange:
    return Exchange(alice, sandbox.base_url)


class Inbox:
    """Messages received on another thread, and a wait for a condition on them."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._cond = threading.Condition()

    def put(self, item: Any) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float = 20.0) -> list[Any]:
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.items), timeout=timeout):
                raise AssertionError(f"condition not met; received {self.items!r}")
            return list(self.items)
