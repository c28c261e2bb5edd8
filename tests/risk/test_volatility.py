from __future__ import annotations

import math

import numpy as np
import pytest

from levalign.errors import InvalidInput
from levalign.risk.volatility import close_to_close, ewma, garman_klass, parkinson


@pytest.fixture
def gbm_ohlc(rng):
    """Hourly OHLC bars from a driftless GBM with sigma 0.8, each bar from 600 sub-steps."""
    sigma, bars, sub = 0.8, 2_000, 600
    dt = 1 / 8760 / sub
    steps = sigma * math.sqrt(dt) * rng.standard_normal((bars, sub)) - 0.5 * sigma**2 * dt
    path = 100 * np.exp(np.cumsum(steps.ravel())).reshape(bars, sub)
    opens = np.concatenate([[100.0], path[:-1, -1]])
    return (
        sigma,
        opens,
        np.maximum(path.max(axis=1), opens),
        np.minimum(path.min(axis=1), opens),
        path[:, -1],
    )


def test_estimators_recover_the_simulated_volatility(gbm_ohlc):
    # 2,000 bars: the standard error of sigma_cc is about sigma / sqrt(2n) = 1.6%; the
    # range-based estimators are more efficient, but discrete sub-steps bias them low by a
    # few percent, hence the 5% band
    sigma, o, h, lo, c = gbm_ohlc
    assert close_to_close(c, 1.0) == pytest.approx(sigma, rel=0.05)
    assert parkinson(h, lo, 1.0) == pytest.approx(sigma, rel=0.05)
    assert garman_klass(o, h, lo, c, 1.0) == pytest.approx(sigma, rel=0.05)


def test_close_to_close_by_hand():
    # prices alternate x1.01, /1.01: returns +-ln 1.01, mean ~0, 11 prices -> 10 returns
    # sample variance = 10 * ln(1.01)^2 / 9 (mean exactly 0); 8,760 hourly bars a year
    c = 100 * 1.01 ** (np.arange(11) % 2)
    expected = math.sqrt(10 * math.log(1.01) ** 2 / 9 * 8760)
    assert close_to_close(c, 1.0) == pytest.approx(expected)


def test_ewma_recursion_by_hand():
    # constant squared return x: the recursion stays at x whatever lambda
    c = 100 * 1.01 ** np.arange(40)
    vol = ewma(c, 24.0)
    assert np.allclose(vol, math.log(1.01) * math.sqrt(365))
    # one shock: variance steps to lam*v + (1-lam)*shock
    c2 = np.concatenate([c, [c[-1] * 1.05]])
    v_before, v_after = ewma(c2, 24.0)[-2:] ** 2
    assert v_after == pytest.approx(0.94 * v_before + 0.06 * math.log(1.05) ** 2 * 365)


def test_too_short_data_is_named():
    with pytest.raises(InvalidInput, match="close needs at least 10 bars, got 3"):
        close_to_close([1.0, 2.0, 3.0], 1.0)


def test_bad_prices_are_located():
    c = np.full(20, 100.0)
    c[7] = -1
    with pytest.raises(InvalidInput, match=r"close\[7\] is -1.0") as info:
        close_to_close(c, 1.0)
    assert info.value.field == "close[7]"


def test_high_below_low():
    h, lo = np.full(12, 101.0), np.full(12, 99.0)
    h[3] = 98
    with pytest.raises(InvalidInput, match=r"high\[3\] 98.0 is below low\[3\] 99.0"):
        parkinson(h, lo, 1.0)
