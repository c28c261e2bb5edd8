"""Shared fixtures: markets are loaded once per session; seeds are fixed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from levalign.markets import Markets, load_markets

settings.register_profile(
    "levalign",
    deadline=None,  # the first call of a numba kernel compiles it
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("levalign")


@pytest.fixture(scope="session")
def binance() -> Markets:
    return load_markets("binance")


@pytest.fixture(scope="session")
def hyperliquid() -> Markets:
    return load_markets("hyperliquid")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20230310)
