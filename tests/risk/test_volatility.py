from __future__ import annotations

import dataclasses
import math
from importlib import resources

import numpy as np
import pytest
from arch import arch_model

from levalign.errors import InvalidInput
from levalign.risk.ohlc import OHLC, load_ohlc, ohlc_from_arrays
from levalign.risk.volatility import (
    GARCH_MIN_BARS,
    GarchFit,
    close_to_close,
    estimate_volatility,
    ewma,
    garch_t,
    garch_variance_path,
    garman_klass,
    parkinson,
)


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


# --- GARCH(1,1)-t ---------------------------------------------------------------------------

# hourly bars: a long-run volatility of sqrt(omega / (1 - alpha - beta) * 8760) = 59.9% a year
TRUE = {"omega": 8.2e-7, "alpha": 0.08, "beta": 0.90, "nu": 6.0, "mu": 1e-5}


def simulate_garch_t(rng, n, omega, alpha, beta, nu, mu, burn=500):
    """Close prices whose log returns are GARCH(1,1) with standardized Student-t shocks."""
    z = rng.standard_t(nu, n + burn) * math.sqrt((nu - 2) / nu)  # unit variance
    r = np.empty(n + burn)
    s2 = omega / (1 - alpha - beta)
    for t in range(n + burn):
        r[t] = mu + math.sqrt(s2) * z[t]
        s2 = omega + alpha * (r[t] - mu) ** 2 + beta * s2
    return 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(r[burn:])]))


@pytest.fixture(scope="module")
def simulated_close():
    return simulate_garch_t(np.random.default_rng(20230310), 4_000, **TRUE)


@pytest.fixture(scope="module")
def simulated_fit(simulated_close):
    return garch_t(simulated_close, 1.0)


def test_garch_recovers_simulated_parameters(simulated_fit):
    # Tolerances: fitting 60 independent 4,000-bar series of this model gave standard
    # deviations of the estimates of 0.009 (alpha), 0.013 (beta), 0.42 (nu), 0.0075
    # (alpha + beta), 2.0e-7 (omega) and 8e-5 (mu); each band below is ~4 of them. The omega
    # band also pins the units: in percent units omega would be 10^4 times larger.
    fit = simulated_fit
    assert fit.status == "ok"
    assert fit.message == ""
    assert fit.nobs == 4_000
    assert fit.alpha == pytest.approx(TRUE["alpha"], abs=0.037)
    assert fit.beta == pytest.approx(TRUE["beta"], abs=0.052)
    assert fit.nu == pytest.approx(TRUE["nu"], abs=1.7)
    assert fit.persistence == pytest.approx(TRUE["alpha"] + TRUE["beta"], abs=0.03)
    assert fit.omega == pytest.approx(TRUE["omega"], abs=8e-7)
    assert fit.mu == pytest.approx(TRUE["mu"], abs=3.3e-4)
    assert fit.stationary


def _fixed_loglikelihood(close, fit, scale):
    """arch's log-likelihood and last conditional volatility of ``fit``'s fractional parameters,
    evaluated (not optimized) on the log returns of ``close`` times ``scale``, in fractional units.
    """
    r = np.diff(np.log(close))
    model = arch_model(scale * r, mean="Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False)
    fixed = model.fix([scale * fit.mu, scale**2 * fit.omega, fit.alpha, fit.beta, fit.nu])
    return (
        fixed.loglikelihood + r.size * math.log(scale),
        fixed.conditional_volatility[-1] / scale,
    )


@pytest.mark.parametrize("scale", [1.0, 10.0, 100.0, 1_000.0])
def test_garch_units_do_not_depend_on_the_internal_scale(simulated_close, simulated_fit, scale):
    # At FIXED parameters the GARCH-t likelihood maps exactly under r -> s r: mu -> s mu,
    # omega -> s^2 omega, sigma -> s sigma, alpha/beta/nu unchanged, and the density of s r is
    # that of r divided by s, so ln L_s + n ln s = ln L_1. Evaluating the fit's fractional
    # parameters on returns scaled by s (no optimizer involved) must therefore give back the
    # fit's own log-likelihood and last volatility, whatever scale garch_t used inside; equal
    # up to float rounding (1e-9). A missing or doubled conversion of mu, omega or the
    # log-likelihood offset would shift ln L by whole nats or more.
    fit = simulated_fit
    loglikelihood, sigma_last = _fixed_loglikelihood(simulated_close, fit, scale)
    assert loglikelihood == pytest.approx(fit.loglikelihood, rel=1e-9)
    assert sigma_last == pytest.approx(fit.sigma_last, rel=1e-9)


def test_garch_fits_of_scaled_returns_reach_the_same_maximum(simulated_close, simulated_fit):
    # Log returns x10 are a separate optimization. Its parameters, mapped back to the
    # original units (mu / 10, omega / 100) and evaluated on the original returns, must reach
    # the original fit's maximum of ln L. Parameters of two optimizer runs differ by where each
    # stopped, so they are not compared; their likelihoods are: SLSQP (arch's optimizer, tol
    # left at scipy's default ftol = 1e-6) stops when an iteration gains less than 1e-6 nats,
    # and near a quadratic maximum the remaining gap is of that order, so two stops differ by
    # ~1e-6 to 1e-5 nats. 1e-3 nats leaves a hundredfold margin and still fails loudly on a
    # unit error: mu off by x10 costs 0.18 nats here, omega off by x100 thousands.
    log_c = np.log(simulated_close)
    fit10 = garch_t(np.exp(log_c[0] + 10 * (log_c - log_c[0])), 1.0)
    mapped = dataclasses.replace(fit10, mu=fit10.mu / 10, omega=fit10.omega / 100)
    loglikelihood, _ = _fixed_loglikelihood(simulated_close, mapped, 1.0)
    assert loglikelihood == pytest.approx(simulated_fit.loglikelihood, abs=1e-3)
    # the x10 fit's own likelihood is that of the original returns less n ln 10, to the
    # same convergence tolerance
    assert fit10.loglikelihood == pytest.approx(
        simulated_fit.loglikelihood - 4_000 * math.log(10), abs=1e-3
    )


def test_next_bar_and_variance_path_match_arch_forecast(simulated_close, simulated_fit):
    # independent reference: arch's own analytic forecast with our parameters put back into
    # percent units (mu x100, omega x10^4)
    fit = simulated_fit
    pct = 100 * np.diff(np.log(simulated_close))
    params = np.array([100 * fit.mu, 1e4 * fit.omega, fit.alpha, fit.beta, fit.nu])
    model = arch_model(pct, mean="Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False)
    ref = model.forecast(params, horizon=30, reindex=False).variance.to_numpy()[-1] / 1e4
    np.testing.assert_allclose(fit.variance_path(30), ref, rtol=1e-9)
    assert fit.sigma_next == pytest.approx(math.sqrt(ref[0]), rel=1e-9)


def variance_path_loop(omega, p, s1, bars):
    """Plain reference: iterate E[s2_{h}] = omega + p E[s2_{h-1}] from E[s2_1] = s1."""
    out, v = [], s1
    for _ in range(bars):
        out.append(v)
        v = omega + p * v
    return np.array(out)


def test_variance_path_by_hand():
    # omega 1e-6, p 0.9: long-run 1e-5; from 4e-5 the excess 3e-5 decays by 0.9 per bar:
    # 4e-5, 1e-5 + 0.9 * 3e-5 = 3.7e-5, 1e-5 + 0.81 * 3e-5 = 3.43e-5
    np.testing.assert_allclose(garch_variance_path(1e-6, 0.9, 4e-5, 3), [4e-5, 3.7e-5, 3.43e-5])


@pytest.mark.parametrize("p", [0.0, 0.5, 0.9, 0.999999, 1.0, 1.0 + 1e-12, 1.01])
def test_variance_path_matches_the_recursion(p):
    np.testing.assert_allclose(
        garch_variance_path(2e-6, p, 3e-5, 200), variance_path_loop(2e-6, p, 3e-5, 200), rtol=1e-9
    )


def hand_fit(alpha=0.1, beta=0.8, bar_hours=1.0):
    # omega 1e-6 with alpha + beta = 0.9: long-run per-bar variance 1e-5
    return GarchFit(
        omega=1e-6,
        alpha=alpha,
        beta=beta,
        nu=5.0,
        mu=0.0,
        bar_hours=bar_hours,
        sigma_last=0.006,
        sigma_next=math.sqrt(4e-5),
        loglikelihood=0.0,
        nobs=1_000,
        scale=100.0,
        status="ok",
        message="",
    )


def test_forecast_by_hand_for_a_few_horizons():
    fit = hand_fit()  # per-bar expected variances 4e-5, 3.7e-5, 3.43e-5 (test above)
    # 3 hours = 3 one-hour bars; annualize the mean variance per hour with 8,760 hours
    assert fit.forecast(3.0) == pytest.approx(math.sqrt((4e-5 + 3.7e-5 + 3.43e-5) / 3 * 8760))
    # 2.5 hours: half of the third bar's variance
    assert fit.forecast(2.5) == pytest.approx(
        math.sqrt((4e-5 + 3.7e-5 + 0.5 * 3.43e-5) / 2.5 * 8760)
    )
    # 4-hour bars, 8-hour horizon: two bars of 4e-5 and 3.7e-5 over 8/8760 years
    assert hand_fit(bar_hours=4.0).forecast(8.0) == pytest.approx(
        math.sqrt((4e-5 + 3.7e-5) / (8 / 8760))
    )
    assert fit.term_structure([1.0, 3.0]) == [(1.0, fit.forecast(1.0)), (3.0, fit.forecast(3.0))]


def test_forecast_limits():
    fit = hand_fit()
    next_bar = math.sqrt(4e-5 * 8760)
    # one bar, or any part of it, is the next bar's conditional volatility
    assert fit.forecast(1.0) == pytest.approx(next_bar)
    assert fit.forecast(0.25) == pytest.approx(next_bar)
    # long horizons tend to the unconditional sqrt(1e-5 * 8760): the mean excess variance
    # over n bars is 3e-5 (1 - 0.9^n) / (1 - 0.9) / n, 3e-9 against 1e-5 at n = 1e5, i.e.
    # 1.5e-4 relative in sigma
    uncond = math.sqrt(1e-5 * 8760)
    assert fit.unconditional == pytest.approx(uncond)
    assert fit.forecast(1e5) == pytest.approx(uncond, rel=2e-4)
    assert fit.forecast(1e3) > fit.forecast(1e5) > fit.unconditional  # starts above: decays
    assert fit.last == pytest.approx(0.006 * math.sqrt(8760))


def test_integrated_fit_has_no_unconditional_level_and_grows_linearly():
    # alpha + beta = 1: E[s2_{t+h}] = s1 + (h - 1) omega; over 3 bars 3 s1 + 3 omega
    fit = hand_fit(alpha=0.2, beta=0.8)
    assert not fit.stationary
    assert fit.unconditional == math.inf
    assert fit.forecast(3.0) == pytest.approx(math.sqrt((3 * 4e-5 + 3 * 1e-6) / 3 * 8760))


def test_garch_on_the_march_2023_crash_is_integrated_and_kept(btc_hourly):
    # 21 days holding the crash and the rally: the hourly fit sits on the alpha + beta <= 1
    # bound that arch imposes; the fit is kept and flagged, not refused
    fit = garch_t(btc_hourly.close, btc_hourly.bar_hours)
    assert fit.status == "non_stationary"
    assert "not below 1" in fit.message
    assert fit.unconditional == math.inf
    assert math.isfinite(fit.forecast(24.0))


def test_garch_not_converged_is_a_status(simulated_close):
    fit = garch_t(simulated_close, 1.0, max_iterations=1)
    assert fit.status == "not_converged"
    assert "did not converge (Iteration limit reached" in fit.message


def test_garch_input_errors():
    with pytest.raises(InvalidInput, match=f"close needs at least {GARCH_MIN_BARS} bars, got 99"):
        garch_t(np.linspace(100, 110, 99), 1.0)
    with pytest.raises(InvalidInput, match="constant log returns"):
        garch_t(np.full(200, 100.0), 1.0)
    with pytest.raises(InvalidInput, match="bar_hours must be positive"):
        garch_t(np.linspace(100, 110, 200), 0.0)
    with pytest.raises(InvalidInput, match="max_iterations must be at least 1"):
        garch_t(np.linspace(100, 110, 200), 1.0, max_iterations=0)
    with pytest.raises(InvalidInput, match="horizon_hours must be positive"):
        hand_fit().forecast(-1.0)


# --- all estimators on real data --------------------------------------------------------------


@pytest.fixture(scope="module")
def btc_minutes() -> OHLC:
    ref = resources.files("levalign.data").joinpath("BTCUSDT_1m_2023-03-01_2023-03-21.csv.gz")
    with resources.as_file(ref) as path:
        return load_ohlc(path)


@pytest.fixture(scope="module")
def btc_hourly(btc_minutes: OHLC) -> OHLC:
    return btc_minutes.resample(60)


@pytest.fixture(scope="module")
def btc_estimates(btc_minutes):
    return estimate_volatility(btc_minutes)


def test_estimators_agree_on_btc(btc_estimates, btc_hourly):
    # Under a constant-volatility GBM all of these estimate the same sigma; with 503 hourly
    # returns close-to-close has a relative standard error of 1 / sqrt(2 * 503) = 3.2%. Fat
    # tails, the crash and the range estimators' discrete-sampling bias (60 prices per bar)
    # add a few percent more, so a factor of 1.25 (about 7 standard errors) separates
    # agreement from a unit or annualization error (those are factors of 60 or more).
    est = btc_estimates
    assert est.resample_minutes == 60
    assert est.ohlc.bars == 504
    ref = est.close_to_close
    assert 0.2 < ref < 3.0  # a crypto volatility, annualized
    for name in ("parkinson", "garman_klass"):
        assert 1 / 1.25 < getattr(est, name) / ref < 1.25, name
    # EWMA's time-averaged variance over the sample estimates the same sigma
    ewma_rms = math.sqrt(np.mean(ewma(btc_hourly.close, 1.0) ** 2))
    assert 1 / 1.25 < ewma_rms / ref < 1.25
    # GARCH's one-day forecast is conditional on the last days, like EWMA's last value, and
    # both weigh the latest returns heavily: within a factor of 1.5 of each other
    assert 1 / 1.5 < est.garch.forecast(24.0) / est.ewma < 1.5


def test_flat_forecasts_and_the_garch_term_structure(btc_estimates):
    est = btc_estimates
    for horizon in (1.0, 24.0, 720.0):
        f = est.forecast(horizon)
        assert f["close_to_close"] == est.close_to_close
        assert f["parkinson"] == est.parkinson
        assert f["garman_klass"] == est.garman_klass
        assert f["ewma"] == est.ewma
        assert f["garch"] == est.garch.forecast(horizon)
    out = est.to_dict(36.0)
    hours = [h for h, _ in out["garch"]["term_structure"]]
    assert hours == [1.0, 4.0, 8.0, 24.0, 36.0, 72.0, 168.0, 720.0]
    assert out["garch"]["forecast"] == {"horizon_hours": 36.0, "sigma": est.garch.forecast(36.0)}
    # the first point is one bar: the next-bar conditional volatility
    assert out["garch"]["term_structure"][0][1] == pytest.approx(
        est.garch.sigma_next * math.sqrt(8760)
    )


def gbm_minute_bars(rng, bars, minutes):
    c = 100 * np.exp(np.cumsum(0.001 * rng.standard_normal(bars)))
    o = np.concatenate([[100.0], c[:-1]])
    ts = np.arange(bars, dtype=np.int64) * minutes * 60_000_000_000
    return ohlc_from_arrays(ts, o, np.maximum(o, c) * 1.0005, np.minimum(o, c) / 1.0005, c)


def test_auto_resampling_keeps_at_least_500_bars(rng):
    # 1,999 five-minute bars (like the bundled XRP file): 60 min gives 166, 30 min 333,
    # 15 min 666 >= 500, so 15 minutes is chosen
    est = estimate_volatility(gbm_minute_bars(rng, 1_999, 5))
    assert est.resample_minutes == 15
    assert est.ohlc.bar_hours == 0.25
    assert est.source_bars == 1_999
    # explicit bars are used as given; auto_resample=False keeps the data's bars
    assert estimate_volatility(gbm_minute_bars(rng, 600, 5), 10).ohlc.bars == 300
    assert estimate_volatility(gbm_minute_bars(rng, 600, 5), auto_resample=False).ohlc.bars == 600


def test_too_few_bars_after_resampling_says_how_many(rng):
    with pytest.raises(
        InvalidInput,
        match=f"GARCH needs at least {GARCH_MIN_BARS} bars, got 50 after resampling to 60 "
        "minutes: use a smaller resample_minutes",
    ):
        estimate_volatility(gbm_minute_bars(rng, 3_000, 1), 60)


def test_a_hole_of_days_in_minute_bars_is_refused():
    # 1-minute bars with three days missing after the 300th: the return across the hole
    # would be read as one minute's
    ts = np.arange(600, dtype=np.int64) * 60_000_000_000
    ts[300:] += 3 * 86_400_000_000_000
    close = 100.0 + np.sin(np.arange(600))
    bars = ohlc_from_arrays(ts, close, close + 1, close - 1, close)
    with pytest.raises(
        InvalidInput, match=r"jump from 1970-01-01T04:59:00 to 1970-01-04T05:00:00"
    ) as info:
        estimate_volatility(bars)
    assert info.value.field == "bars[300].timestamp"
    # a hole of a few hours (exchange maintenance) is kept
    ts_short = np.arange(600, dtype=np.int64) * 60_000_000_000
    ts_short[300:] += 4 * 3_600_000_000_000
    estimate_volatility(ohlc_from_arrays(ts_short, close, close + 1, close - 1, close))
