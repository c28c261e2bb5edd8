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
# a longer search for local runs: HYPOTHESIS_PROFILE=stress make pytest
settings.register_profile("stress", parent=settings.get_profile("levalign"), max_examples=500)
# CI replays a fixed set of examples, so that a landing never depends on the draw; local runs
# keep searching new ones and any failure found is kept in .hypothesis/ and replayed
settings.register_profile("ci", parent=settings.get_profile("levalign"), derandomize=True)
default_profile = "ci" if os.environ.get("CI") else "levalign"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", default_profile))


@pytest.fixture(scope="session")
def binance() -> Markets:
    return load_markets("binance")


@pytest.fixture(scope="session")
def hyperliquid() -> Markets:
    return load_markets("hyperliquid")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20230310)
