"""Optimal leverage: Kelly when nothing binds, the limits when they do, kernel vs numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from levalign.errors import ConfigurationError, InvalidInput
from levalign.markets import Markets
from levalign.risk.first_passage import liquidation_probability
from levalign.risk.monte_carlo import GBM, WEALTH_FLOOR
from levalign.risk.optimal import (
    evaluate_leverages,
    optimal_leverage,
)
from levalign.testing import evaluate_leverages_reference

SPOT = 22_000.0
PATHS = 40_000


def test_kernel_equals_numpy_reference(rng: np.random.Generator) -> None:
    # Arrange: random extremes consistent with a terminal return, leverages with barriers
    n = 2_000
    terminal = rng.normal(0.0, 0.1, n)
    log_min = np.minimum(terminal, 0.0) - np.abs(rng.normal(0.0, 0.05, n))
    log_max = np.maximum(terminal, 0.0) + np.abs(rng.normal(0.0, 0.05, n))
    lev = np.array([0.0, 0.5, 2.0, 5.0, 10.0, 20.0])
    funding = lev * 0.001
    tail = 20
    for side in (1.0, -1.0):
        # liquidation about 0.9/L away (a long's at most 99% down); L = 0 is never liquidated
        dist = 0.9 / np.maximum(lev, 1e-9)
        barrier = np.log1p(-np.minimum(dist, 0.99)) if side > 0 else np.log1p(dist)
        barrier = np.where(lev > 0, barrier, -np.inf * side)
        gross = np.expm1(terminal)
        worst = np.argsort(side * terminal, kind="stable").astype(np.int64)
        # Act
        got = evaluate_leverages(
            lev, barrier, funding, side, log_min, log_max, gross, worst, tail, WEALTH_FLOOR
        )
        want = evaluate_leverages_reference(
            lev, barrier, funding, side, log_min, log_max, gross, tail, WEALTH_FLOOR
        )
        # Assert: every output column agrees
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)


def test_without_limits_binding_the_optimum_is_kelly(binance: Markets) -> None:
    # Kelly: g(L) = L mu - L^2 sigma^2 / 2 per year, maximal at mu / sigma^2 = 0.5 / 0.36 = 1.389.
    # At 1.4x a 7-day liquidation (~70% away) has P ~ 1e-20: no limit binds.
    market = binance["BTC/USDT:USDT"]
    a = optimal_leverage(
        GBM(sigma=0.6, mu=0.5), SPOT, market, 10_000.0, horizon_days=7.0, paths=PATHS, seed=1
    )
    assert a.kelly == pytest.approx(0.5 / 0.36)
    assert a.binding == "growth"
    # the growth curve is flat near its top (g'' = -sigma^2 T): 3% of grid spacing + MC noise
    assert a.leverage == pytest.approx(a.kelly, rel=0.06)
    assert a.p_liquidation == 0.0
    # amount: the notional in whole 0.001 BTC steps, toward zero
    assert a.amount == pytest.approx(math.floor(a.notional / SPOT / 0.001 + 1e-9) * 0.001)
    assert a.amount * SPOT <= a.notional


def test_no_edge_means_no_leverage(binance: Markets) -> None:
    # mu = 0: g(L) = -L^2 sigma^2 T / 2 < 0 for every L > 0, so the optimum is flat
    a = optimal_leverage(
        GBM(sigma=0.6, mu=0.0), SPOT, binance["BTC/USDT:USDT"], 10_000.0, paths=PATHS
    )
    assert a.leverage == 0.0
    assert a.amount == 0.0
    assert a.max_leverage > 1.0  # the limit still allows some leverage


@pytest.mark.parametrize("side", ["long", "short"])
def test_probability_limit_binds_and_matches_the_closed_form(binance: Markets, side: str) -> None:
    # A strong edge (Kelly 5/0.64 = 7.8x, short: drift -5) over 30 days at sigma 80% would
    # take P(liquidation) to ~15%. Growth net of liquidations (a liquidated path counts as
    # ln 1e-6) peaks near 3.7x, where P is ~1%; a 0.2% limit binds well before that. The
    # closed-form first passage at the chosen liquidation price must be within the limit
    # (+3 standard errors of the estimate).
    mu = 5.0 if side == "long" else -5.0
    a = optimal_leverage(
        GBM(sigma=0.8, mu=mu),
        SPOT,
        binance["BTC/USDT:USDT"],
        10_000.0,
        side=side,  # type: ignore[arg-type]
        horizon_days=30.0,
        max_liq_probability=0.002,
        paths=PATHS,
        steps=60,
        seed=3,
    )
    assert a.binding == "max_liq_probability"
    assert a.p_liquidation <= 0.002
    closed = liquidation_probability(
        SPOT,
        a.liquidation_price,
        0.8,
        30.0 / 365.0,
        mu=mu,
        side=side,  # type: ignore[arg-type]
    )
    assert closed <= 0.002 + 3 * a.p_liquidation_se
    # and the next leverage on the grid breaks the limit
    i = int(np.searchsorted(a.curve.leverage, a.leverage))
    assert a.curve.p_liquidation[i + 1] > 0.002


def test_es_limit_binds(binance: Markets) -> None:
    # ES_99 of a 1x long over 30 days at sigma 80%: about 0.8 sqrt(30/365) * 2.67 = 61% of a
    # normal tail in log terms; a 10% ES cap therefore allows well under 1x
    a = optimal_leverage(
        GBM(sigma=0.8, mu=2.0),
        SPOT,
        binance["BTC/USDT:USDT"],
        10_000.0,
        horizon_days=30.0,
        max_liq_probability=1.0,
        max_es=0.1,
        paths=PATHS,
        steps=30,
    )
    assert a.binding == "max_es"
    assert a.es <= 0.1
    assert a.leverage < 0.5


def test_a_follower_cap_binds(binance: Markets) -> None:
    a = optimal_leverage(
        GBM(sigma=0.6, mu=3.0),  # Kelly 8.3x
        SPOT,
        binance["BTC/USDT:USDT"],
        10_000.0,
        max_leverage=2.0,
        paths=PATHS,
    )
    assert a.leverage == pytest.approx(2.0)
    assert a.binding == "max_leverage"


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"spot": 0.0}, "spot"),
        ({"equity": -1.0}, "equity"),
        ({"horizon_days": 0.0}, "horizon_days"),
        ({"max_liq_probability": 0.0}, "max_liq_probability"),
        ({"max_es": 1.5}, "max_es"),
        ({"es_level": 0.2}, "es_level"),
        ({"side": "flat"}, "side"),
        ({"max_leverage": -2.0}, "max_leverage"),
    ],
)
def test_bad_input_names_the_field(binance: Markets, kw: dict[str, object], match: str) -> None:
    args: dict[str, object] = {
        "model": GBM(sigma=0.6),
        "spot": SPOT,
        "market": binance["BTC/USDT:USDT"],
        "equity": 1_000.0,
        "paths": 100,
    }
    args.update(kw)
    with pytest.raises(InvalidInput, match=match):
        optimal_leverage(**args)  # type: ignore[arg-type]


def test_bad_model_spec_is_named(binance: Markets) -> None:
    with pytest.raises(InvalidInput, match="sigma"):
        optimal_leverage({"type": "gbm"}, SPOT, binance["BTC/USDT:USDT"], 1_000.0, paths=100)


def test_inverse_markets_are_a_configuration_error(binance: Markets) -> None:
    import dataclasses

    inverse = dataclasses.replace(binance["BTC/USDT:USDT"], linear=False)
    with pytest.raises(ConfigurationError, match="linear"):
        optimal_leverage(GBM(sigma=0.6), SPOT, inverse, 1_000.0, paths=100)


def test_too_few_paths_to_mean_anything_are_refused(binance):
    # two paths gave a leverage with a standard error of 0
    with pytest.raises(InvalidInput, match="paths must be at least 1,000") as info:
        optimal_leverage(GBM(sigma=0.6), SPOT, binance["BTC/USDT:USDT"], 1_000.0, paths=2)
    assert info.value.field == "paths"
