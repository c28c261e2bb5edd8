from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from levalign.errors import InvalidInput
from levalign.risk import kelly_fraction, liquidation_probability


def _norm_cdf(x):
    return 0.5 * math.erfc(-x / math.sqrt(2))


def test_driftless_log_price_is_the_reflection_principle():
    # nu = mu - sigma^2/2 = 0: P = 2 N(b / (sigma sqrt T)); b = ln(0.9) at sigma 0.8, T = 1/12
    b = math.log(0.9)
    expected = 2 * _norm_cdf(b / (0.8 * math.sqrt(1 / 12)))
    assert liquidation_probability(100, 90, 0.8, 1 / 12, mu=0.32) == pytest.approx(
        expected, rel=1e-12
    )


@given(
    dist=st.floats(0.01, 0.9),
    sigma=st.floats(0.05, 2.0),
    t=st.floats(0.001, 2.0),
    mu=st.floats(-1, 1),
)
def test_short_is_the_mirror_of_a_long_in_log_space(dist, sigma, t, mu):
    # a short liquidated at S/(1-d) under drift mu sees the same log-distance as a long
    # liquidated at S(1-d) under drift nu -> -nu, i.e. mu -> sigma^2 - mu
    long_p = liquidation_probability(100, 100 * (1 - dist), sigma, t, mu=mu)
    short_p = liquidation_probability(
        100, 100 / (1 - dist), sigma, t, mu=sigma * sigma - mu, side="short"
    )
    assert long_p == pytest.approx(short_p, rel=1e-9, abs=1e-12)


def test_probability_against_brownian_bridge_monte_carlo():
    # 20,000 paths, 30 steps; between steps the bridge crossing probability
    # exp(-2 (x_i - b)(x_{i+1} - b) / (sigma^2 dt)) makes the coarse grid unbiased
    # (docs/design.md, "Risk")
    rng = np.random.default_rng(7)
    s0, barrier, sigma, mu, horizon, n, steps = 100.0, 85.0, 0.9, 0.1, 30 / 365, 20_000, 30
    dt = horizon / steps
    nu = mu - sigma**2 / 2
    b = math.log(barrier / s0)
    x = np.zeros(n)
    survive = np.ones(n)
    for _ in range(steps):
        x_next = x + nu * dt + sigma * math.sqrt(dt) * rng.standard_normal(n)
        crossed = x_next <= b
        bridge = np.exp(-2 * np.maximum(x - b, 0) * np.maximum(x_next - b, 0) / (sigma**2 * dt))
        survive *= np.where(crossed, 0.0, 1.0 - bridge)
        x = x_next
    p = 1 - survive
    se = p.std(ddof=1) / math.sqrt(n)
    exact = liquidation_probability(s0, barrier, sigma, horizon, mu=mu)
    assert abs(p.mean() - exact) < 3 * se


def test_monotone_in_distance_and_horizon():
    near = liquidation_probability(100, 95, 0.6, 0.1)
    far = liquidation_probability(100, 80, 0.6, 0.1)
    longer = liquidation_probability(100, 80, 0.6, 0.5)
    assert 0 < far < near < 1
    assert far < longer


def test_wrong_side_liquidation_price():
    with pytest.raises(
        InvalidInput, match="liquidation_price 110 must be below spot 100 for a long"
    ):
        liquidation_probability(100, 110, 0.5, 1.0)
    with pytest.raises(InvalidInput, match="must be above spot 100 for a short"):
        liquidation_probability(100, 90, 0.5, 1.0, side="short")


@pytest.mark.parametrize("field", ["sigma", "horizon_years"])
def test_non_positive_parameters(field):
    args: dict[str, Any] = {
        "spot": 100.0,
        "liquidation_price": 90.0,
        "sigma": 0.5,
        "horizon_years": 1.0,
    }
    args[field] = 0.0
    with pytest.raises(InvalidInput, match=f"{field} must be a positive number"):
        liquidation_probability(**args)


def test_kelly_fraction():
    # (mu - r) / sigma^2 = (0.10 - 0.02) / 0.04 = 2
    assert kelly_fraction(0.10, 0.2, 0.02) == pytest.approx(2.0)
    with pytest.raises(InvalidInput, match="sigma must be a positive number"):
        kelly_fraction(0.1, 0.0)


def test_low_volatility_strong_drift_does_not_overflow():
    # 2 nu b / sigma^2 = 2 * 1.002 * 1.386 / 0.0039 = 711 > ln(max float): the product with
    # the tiny normal tail must be taken in logs. With drift -100%/year and 6.25% volatility
    # a fall of 75% within a year is all but certain for the short... and impossible-ish for
    # the long against this drift: both finite and in [0, 1]
    p = liquidation_probability(100, 25, 0.0625, 1.0, mu=-1.0)
    assert 0.0 <= p <= 1.0
    # log-space result equals the direct formula where the direct one does not overflow
    direct_b, nu, s = math.log(0.6), -0.3 - 0.5 * 0.2**2, 0.2
    direct = _norm_cdf((direct_b - nu) / s) + math.exp(2 * nu * direct_b / s**2) * _norm_cdf(
        (direct_b + nu) / s
    )
    assert liquidation_probability(100, 60, 0.2, 1.0, mu=-0.3) == pytest.approx(direct, rel=1e-12)
