"""Shared fixtures: markets are loaded once per session; seeds are fixed."""

from __future__ import annotations

import os

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
# Every run (make test, CI, any machine) replays the same examples: a test run never depends
# on the draw or on a local example database. To search new examples, run
# HYPOTHESIS_PROFILE=explore make pytest (random draws, failures kept in .hypothesis/), or
# HYPOTHESIS_PROFILE=stress for a longer search.
settings.register_profile(
    "fixed", parent=settings.get_profile("levalign"), derandomize=True, database=None
)
settings.register_profile("explore", parent=settings.get_profile("levalign"))
settings.register_profile("stress", parent=settings.get_profile("levalign"), max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fixed"))


@pytest.fixture(scope="session")
def binance() -> Markets:
    return load_markets("binance")


@pytest.fixture(scope="session")
def hyperliquid() -> Markets:
    return load_markets("hyperliquid")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20230310)
