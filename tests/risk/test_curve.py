"""The liquidation curve: conservative lookups, closed form vs simulated extremes."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from levalign.errors import InvalidInput
from levalign.risk.curve import LiquidationCurve, required_distance
from levalign.risk.first_passage import liquidation_probability
from levalign.risk.monte_carlo import GBM, sample_extremes

Side = Literal["long", "short"]


def closed_form(distance: float, hours: float, sigma: float, mu: float, side: Side) -> float:
    barrier = 1.0 - distance if side == "long" else 1.0 + distance
    return liquidation_probability(1.0, barrier, sigma, hours / 8760.0, mu=mu, side=side)


@given(
    sigma=st.floats(0.1, 2.0),
    mu=st.floats(-1.0, 1.0),
    alpha=st.floats(1e-4, 0.5),
    hours=st.floats(0.5, 4000.0),
    side=st.sampled_from(["long", "short"]),
)
def test_lookup_is_conservative_and_tight(
    sigma: float, mu: float, alpha: float, hours: float, side: Side
) -> None:
    # Arrange
    curve = LiquidationCurve.gbm(sigma, mu)
    # Act
    d = curve.required_distance(alpha, hours, side)
    # Assert: at the distance returned, the exact probability is within the limit ...
    if d >= 1.0 and side == "long":
        return  # no barrier below spot is safe enough: fully collateralized
    assert closed_form(d, hours, sigma, mu, side) <= alpha * (1 + 1e-9)
    # ... and not far inside it: one horizon step (2^(1/8)) and one distance step (2.4%) back
    # the probability exceeds the limit, so the caution costs at most those two grid steps
    y = -math.log1p(-d) if side == "long" else math.log1p(d)
    y_back = y / 1.025
    d_back = 1.0 - math.exp(-y_back) if side == "long" else math.exp(y_back) - 1.0
    if y > 1.5e-4:  # the first grid point has nothing before it
        assert closed_form(d_back, hours * 2 ** (1 / 8) * 1.001, sigma, mu, side) > alpha


def test_known_value() -> None:
    # driftless: P = 2 N(-y / (sigma sqrt T)); P = 1% at y = 2.5758 * 0.6 * sqrt(24/8760)
    # = 0.08089 (long distance 1 - e^-y = 7.77%); the lookup rounds up to the next grid horizon
    # (24.68 h: y = 0.08203) and grid distance: between 7.87% and 8.1%
    curve = LiquidationCurve.gbm(0.6, 0.0 + 0.5 * 0.36)  # mu = sigma^2/2: zero log drift
    d = curve.required_distance(0.01, 24.0, "long")
    assert 1 - math.exp(-0.08203) <= d < 0.081


def test_kernel_edge_cases() -> None:
    curve = LiquidationCurve.gbm(0.6)
    t, y, h = curve.table, curve.log_distance, curve.horizon_hours
    assert required_distance(t, y, h, 0, 1.0, 24.0) == 0.0  # no limit
    assert math.isnan(required_distance(t, y, h, 0, 0.01, 0.0))  # no horizon
    assert math.isnan(required_distance(t, y, h, 0, 0.01, 1e6))  # beyond the grid
    assert math.isnan(required_distance(t, y, h, 0, math.nan, 24.0))
    # a limit no tabulated distance meets: a long must be fully collateralized
    assert required_distance(t, y, h, 0, 1e-300, 8000.0) == 1.0


def test_curve_from_simulated_extremes_matches_the_closed_form() -> None:
    # Arrange: 40,000 GBM paths, 30 days, 10 checkpoints of 3 days
    sigma = 0.8
    ext = sample_extremes(GBM(sigma=sigma), 1.0, 30.0, 40_000, 60, seed=5, checkpoints=10)
    # Act
    curve = LiquidationCurve.from_extremes(ext.running_min.T, ext.running_max.T, ext.horizons_hours)
    # Assert: at a few cells, within 4 binomial standard errors of the closed form
    for j in (0, 4, 9):
        hours = float(ext.horizons_hours[j])
        for k in (200, 300, 350):
            yk = float(curve.log_distance[k])
            for side, s in (("long", 0), ("short", 1)):
                d = 1 - math.exp(-yk) if side == "long" else math.exp(yk) - 1
                want = closed_form(d, hours, sigma, 0.0, side)  # type: ignore[arg-type]
                se = math.sqrt(max(want * (1 - want), 1e-6) / 40_000)
                assert abs(curve.table[s, j, k] - want) <= 4 * se + 1e-4, (j, k, side)


def test_bad_inputs() -> None:
    curve = LiquidationCurve.gbm(0.6)
    with pytest.raises(InvalidInput, match="max_liq_probability"):
        curve.required_distance(0.0, 24.0, "long")
    with pytest.raises(InvalidInput, match="horizon_hours"):
        curve.required_distance(0.01, 1e6, "long")
    with pytest.raises(InvalidInput, match="side"):
        curve.required_distance(0.01, 24.0, "flat")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="sigma"):
        LiquidationCurve.gbm(0.0)
    with pytest.raises(InvalidInput, match="increasing"):
        LiquidationCurve.from_extremes(np.zeros((4, 2)), np.zeros((4, 2)), np.array([2.0, 1.0]))
    with pytest.raises(InvalidInput, match="checkpoints"):
        LiquidationCurve.from_extremes(np.zeros((4, 2)), np.zeros((4, 3)), np.array([1.0, 2.0]))
