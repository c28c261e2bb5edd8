from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pytest
from scipy import integrate, stats

from levalign import testing
from levalign.errors import InvalidInput
from levalign.margin import margin_report
from levalign.markets import TierTable
from levalign.risk import _mc_kernels as mck
from levalign.risk import monte_carlo as mc
from levalign.risk.first_passage import liquidation_probability
from levalign.risk.monte_carlo import (
    GBM,
    Bootstrap,
    GarchT,
    MertonJump,
    StudentT,
    chunk_streams,
    model_from_spec,
    sample_extremes,
    simulate,
    simulate_paths,
)

DAYS = 365.0  # first_passage takes years of 365 days (8,760 h), as the engine does


# ---------------------------------------------------------------- random numbers


def _streams(seed: int = 3) -> tuple[int, int]:
    keys, gams = chunk_streams(seed, 2)
    return int(keys[1]), int(gams[1])


def test_normals_equal_the_plain_integer_ziggurat_on_every_branch():
    # scan addresses for the ziggurat's rare branches (wedge test, tail beyond r) and check the
    # numba generator against the plain-integer reference there, with the slot budget in use,
    # a budget of 1 and of 0 (every draw from the second stream)
    key, gam = _streams()
    branches = {"fast": 0, "wedge": 0, "tail": 0}
    checked = 0
    for ctr in range(0, 400_000, 7):
        u = testing.reference_draw(key, gam, ctr, 0, 16)
        layer = u & 255
        slow = (u >> 12) >= int(mck.ZIG_K[layer])
        kind = ("tail" if layer == 0 else "wedge") if slow else "fast"
        if kind == "fast" and branches["fast"] >= 200:
            continue
        branches[kind] += 1
        for budget in (16, 1, 0):
            got = mck.normal_at(np.uint64(key), np.uint64(gam), np.uint64(ctr), budget)
            assert got == testing.reference_normal(key, gam, ctr, budget), (ctr, budget)
            checked += 1
    assert branches["tail"] >= 1
    assert branches["wedge"] >= 100
    assert checked == 3 * sum(branches.values())


def test_uniforms_and_draw_arrays_use_the_documented_addresses():
    keys, gams = chunk_streams(11, 3)
    key, gam = int(keys[2]), int(gams[2])
    z = mck.draw_normals(keys, gams, 2, 3, 5, mck.SLOT_JUMP, mck.JUMP_BUDGET)
    u = mck.draw_uniforms(keys, gams, 2, 3, 5, mck.SLOT_POISSON)
    for p in range(3):
        for s in range(5):
            ctr = (p * 5 + s) * mck.SLOTS
            assert z[p, s] == testing.reference_normal(
                key, gam, ctr + mck.SLOT_JUMP, mck.JUMP_BUDGET
            )
            assert u[p, s] == testing.reference_uniform(key, gam, ctr + mck.SLOT_POISSON)
            assert 0.0 < u[p, s] <= 1.0


def test_normals_are_standard_normal():
    keys, gams = chunk_streams(20230310, 1)
    z = mck.draw_normals(keys, gams, 0, 1000, 200, mck.SLOT_NORMAL, mck.NORMAL_BUDGET).ravel()
    n = z.size
    assert abs(z.mean()) < 4 / math.sqrt(n)
    assert abs(z.var() - 1) < 4 * math.sqrt(2 / n)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # the tail beyond r = 3.654 is sampled by its own branch: 2 (1 - N(r)) = 2.58e-4 of draws
    p_tail = 2 * stats.norm.sf(mck.ZIG_R)
    tail = np.mean(np.abs(z) > mck.ZIG_R)
    assert abs(tail - p_tail) < 4 * math.sqrt(p_tail / n)


def test_gamma_sampler_moments():
    # Gamma(a, 1) has mean a and variance a
    key, gam = _streams(5)
    a = 1.7
    x = np.array(
        [
            mck.gamma_at(a, np.uint64(key), np.uint64(gam), np.uint64(64 * i), 32)
            for i in range(20_000)
        ]
    )
    assert abs(x.mean() - a) < 4 * math.sqrt(a / x.size)
    assert abs(x.var() - a) < 0.05 * a
    assert stats.kstest(x, stats.gamma(a).cdf).pvalue > 1e-3


# ---------------------------------------------------------------- GBM against the closed form


@pytest.mark.parametrize(
    ("side", "lp", "mu"),
    [("long", 88.0, 0.0), ("long", 90.0, 0.6), ("short", 112.0, -0.4), ("short", 110.0, 0.3)],
)
def test_gbm_probability_is_the_closed_form_within_3_se(side, lp, mu):
    # 30 steps: the bridge term makes the coarse grid unbiased (docs/design.md, "Performance
    # targets")
    res = simulate(
        GBM(0.9, mu), 100.0, side=side, liquidation_price=lp, horizon_days=10, paths=100_000,
        steps=30, seed=7,
    )  # fmt: skip
    exact = liquidation_probability(100.0, lp, 0.9, 10 / DAYS, mu=mu, side=side)
    assert res.analytic_p_liquidation == pytest.approx(exact, rel=1e-12)
    assert 0.05 < exact < 0.6
    assert 0 < res.p_liquidation_se < 0.003
    assert abs(res.p_liquidation - exact) < 3 * res.p_liquidation_se
    # the sampled liquidations (used for the P&L outcome) have the same law
    assert abs(res.liquidated_fraction - exact) < 4 * math.sqrt(exact * (1 - exact) / res.paths)


def test_without_the_bridge_a_coarse_grid_misses_crossings():
    # the same check on the grid points only (no bridge) underestimates: the bridge matters
    out = simulate_paths(
        GBM(0.9), 100.0, side="long", liquidation_price=88.0, horizon_days=10, paths=20_000,
        steps=30, seed=7,
    )  # fmt: skip
    grid_only = np.mean(out.survival == 0.0)
    exact = liquidation_probability(100.0, 88.0, 0.9, 10 / DAYS)
    assert grid_only < exact - 0.03
    assert abs(np.mean(1 - out.survival) - exact) < 0.01


@pytest.mark.parametrize(("side", "mu"), [("long", 0.0), ("long", 0.5), ("short", -0.3)])
def test_sample_extremes_matches_the_closed_form_at_every_checkpoint(side, mu):
    ext = sample_extremes(GBM(0.8, mu), 100.0, 12, 60_000, 30, 3, 3)
    assert ext.horizons_hours.tolist() == [96.0, 192.0, 288.0]
    for j, hours in enumerate(ext.horizons_hours):
        for d in (0.05, 0.2):
            p, se = ext.touch_probability([d], side=side, checkpoint=j)
            barrier = 100 * (1 - d) if side == "long" else 100 * (1 + d)
            exact = liquidation_probability(100.0, barrier, 0.8, hours / 24 / DAYS, mu, side)
            assert 0 < se[0] < 0.005
            assert abs(p[0] - exact) < 3 * se[0], (j, d, p, exact)


def test_touch_probability_se_counts_pairs():
    # se^2 = ((p + q)/2 - p^2) / pairs: recompute p, q and the pair-mean variance directly
    ext = sample_extremes(GBM(0.8), 100.0, 5, 2_000, 10, 1, 1)
    p, se = ext.touch_probability([0.1])
    hit = ext.running_min[0] <= math.log(0.9)
    pair_means = hit.reshape(-1, 2).mean(axis=1)
    assert p[0] == hit.mean()
    assert se[0] == pytest.approx(pair_means.std() / math.sqrt(pair_means.size), rel=1e-12)


def test_running_extremes_bound_the_grid_path():
    ext = sample_extremes(GBM(0.6, 0.1), 100.0, 4, 1_000, 8, 2, 8)
    # with a checkpoint at every step, terminal rows are the grid path
    assert np.all(ext.running_min <= np.minimum.accumulate(np.minimum(ext.terminal, 0), axis=0))
    assert np.all(ext.running_max >= np.maximum.accumulate(np.maximum(ext.terminal, 0), axis=0))
    assert np.all(np.diff(ext.running_min, axis=0) <= 0)
    # antithetic pairs: the increments of the two paths of a pair are mirror images around the
    # drift, so their terminal log returns average to the drift (mu - sigma^2/2) T
    drift = (0.1 - 0.18) * 4 / DAYS
    assert np.allclose(ext.terminal[-1].reshape(-1, 2).mean(axis=1), drift, atol=1e-12)


# ---------------------------------------------------------------- kernel against the reference


def _reference_draws(seed: int, pairs: int, steps: int) -> tuple[np.ndarray, ...]:
    """The kernel's normals and, per path of each pair, its bridge uniforms (low, high)."""
    keys, gams = chunk_streams(seed, 1)
    z = mck.draw_normals(keys, gams, 0, pairs, steps, mck.SLOT_NORMAL, mck.NORMAL_BUDGET)
    u_lo = np.empty((2 * pairs, steps))
    u_hi = np.empty((2 * pairs, steps))
    for h in range(2):
        u_lo[h::2] = mck.draw_uniforms(keys, gams, 0, pairs, steps, mck.SLOT_BRIDGE + 2 * h)
        u_hi[h::2] = mck.draw_uniforms(keys, gams, 0, pairs, steps, mck.SLOT_BRIDGE + 2 * h + 1)
    return z, u_lo, u_hi


def _reference(run_book: Any, model: GBM, horizon_days: float, steps: int, pairs: int,
               seed: int, rate_8h: float) -> tuple[np.ndarray, ...]:  # fmt: skip
    step_hours = horizon_days * 24 / steps
    ma = mc._model_arrays(model, step_hours)
    z, u_lo, u_hi = _reference_draws(seed, pairs, steps)
    legs = [
        [(x.c, x.r, x.n, TierTable(x.floor, x.cap, x.mmr, x.cum, np.ones_like(x.mmr))) for x in g]
        for g in run_book.groups
    ]
    rate = np.full(steps, rate_8h * step_hours / 8)
    return testing.reference_paths(
        z, u_lo, u_hi, ma.mp[mck.P_DRIFT], ma.mp[mck.P_SD], run_book.eps, rate, legs,
        run_book.w0, run_book.free, run_book.e0,
    )  # fmt: skip


def _account(*positions: dict[str, Any], wallet: float, **extra: Any) -> dict[str, Any]:
    return {"exchange": "binance", "wallet_balance": wallet, "positions": list(positions), **extra}


def _pos(symbol: str, side: str, contracts: float, entry: float, mark: float,
         mode: str = "cross", collateral: float | None = None) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {
        "symbol": symbol, "side": side, "contracts": contracts, "entry_price": entry,
        "mark_price": mark, "margin_mode": mode,
    }  # fmt: skip
    if collateral is not None:
        out["collateral"] = collateral
    return out


# a cross pair of BTC long and ETH short, plus an isolated SOL long (three liquidation groups)
THREE_GROUPS = _account(
    _pos("BTC/USDT:USDT", "long", 8, 20_000, 20_500),
    _pos("ETH/USDT:USDT", "short", 30, 1_500, 1_480),
    _pos("SOL/USDT:USDT", "long", 2_000, 20, 21, "isolated", 5_000),
    wallet=30_000,
)
# nearly hedged cross book (500k long, 495k short): the margin excess rises by 25 per unit
# of the factor F while both legs are in tier 2, and falls once the legs reach tier 3 at
# F = 1.2: liquidation levels on both sides (about F = 0.8 and F = 1.21)
TWO_SIDED = _account(
    _pos("BTC/USDT:USDT", "long", 25, 20_000, 20_000),
    _pos("ETH/USDT:USDT", "short", 330, 1_500, 1_500),
    wallet=4_880,
)


@pytest.mark.parametrize(
    ("case", "rate_8h"),
    [("position", 0.0), ("position", 0.002), ("three_groups", 0.0), ("three_groups", 0.001),
     ("two_sided", 0.0), ("two_sided", -0.0005)],
)  # fmt: skip
def test_kernel_equals_the_plain_python_reference(case, rate_8h):
    model, horizon, steps, pairs, seed = GBM(0.9, 0.1), 5.0, 20, 24, 4
    if case == "position":
        kwargs: dict[str, Any] = {"side": "long", "liquidation_price": 93.0}
        book = mc._position_book("long", 100.0, 93.0)
    else:
        acct = THREE_GROUPS if case == "three_groups" else TWO_SIDED
        kwargs = {"account": acct}
        book = mc._account_book(acct)
    if case == "two_sided":
        lo, hi = book.arrays()["groups"][0, [mck.G_LO, mck.G_HI]]
        assert math.isfinite(lo)
        assert math.isfinite(hi)
        model = GBM(2.5)  # reach both levels within the horizon
    out = simulate_paths(
        model, 100.0, horizon_days=horizon, paths=2 * pairs, steps=steps, seed=seed,
        funding_rate=rate_8h, **kwargs,
    )  # fmt: skip
    surv, liq, eq, dd = _reference(book, model, horizon, steps, pairs, seed, rate_8h)
    np.testing.assert_allclose(out.survival, surv, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(out.liquidation_step, liq)
    np.testing.assert_allclose(out.equity, eq, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out.max_drawdown, dd, rtol=1e-9, atol=1e-12)
    # the case is not trivial: some paths are liquidated, some survive, some only partly
    assert 0 < np.sum(liq >= 0) < liq.size
    assert np.any((surv > 0) & (surv < 1))


# ---------------------------------------------------------------- the lean kernels


def test_gbm_fill_draws_the_documented_normals_including_rejected_ones():
    # the GBM fill takes the ziggurat's fast path in one loop and draws the ~1.2% of 64-bit
    # draws it rejects (wedges, tail) afterwards: every step is still sd times the normal at
    # its address, the one draw_normals (tested against the plain-integer reference) returns
    keys, gams = chunk_streams(5, 1)
    key, gam = int(keys[0]), int(gams[0])
    steps, pairs, sd, drift = 50, 40, 0.03, -0.001
    mp = np.zeros(mck.P_SIZE)
    mp[mck.P_SD], mp[mck.P_DRIFT] = sd, drift
    z = mck.draw_normals(keys, gams, 0, pairs, steps, mck.SLOT_NORMAL, mck.NORMAL_BUDGET)
    base, dev, var = np.empty(steps), np.empty(steps), np.empty(steps)
    draws = np.empty(steps, dtype=np.uint64)
    rejected = 0
    for p in range(pairs):
        pc0 = np.uint64(p * steps * mck.SLOTS)
        mck.fill_pair(mck.K_GBM, mp, 1, steps, keys[0], gams[0], pc0, base, dev, var, draws)
        np.testing.assert_array_equal(dev, sd * z[p])
        np.testing.assert_array_equal(base, np.full(steps, drift))
        np.testing.assert_array_equal(var, np.full(steps, sd * sd))
        for t in range(steps):
            u = testing.reference_draw(key, gam, (p * steps + t) * mck.SLOTS, 0, 1)
            rejected += (u >> 12) >= int(mck.ZIG_K[u & 255])
    assert rejected >= 5  # about 24 of the 2,000 draws


@pytest.mark.parametrize("sign", [1.0, -1.0, 0.0])
def test_walk_lanes_equals_the_drawdown_by_its_definition(rng, sign):
    # a 5x position (equity 1 - c + c e^y, c = 5 sign; no exposure for sign 0): the vector
    # walk, which evaluates equity only where an epoch's dip may beat the drawdown so far,
    # against max_t 1 - E_t / max_{s <= t} E_s at every step; 1% steps over 60 steps reach
    # the near thresholds at +-8% on some paths only; lane 3 can never be near
    steps, lanes = 60, mck.LANES
    bases = np.full((steps, lanes), -2e-4)
    devs = rng.standard_normal((steps, lanes)) * 0.01
    lo_s, hi_s = np.full(lanes, -0.08), np.full(lanes, 0.08)
    lo_s[3], hi_s[3] = -np.inf, np.inf
    c = 5.0 * sign
    groups = np.zeros((1, mck.G_SIZE))
    groups[0, mck.G_W0], groups[0, mck.G_C], groups[0, mck.G_CR] = 1.0, c, c
    near = np.empty(2 * lanes, dtype=np.bool_)
    eq, dd, st = np.empty(2 * lanes), np.empty(2 * lanes), np.empty(mck.W_SIZE)
    mck.walk_lanes(bases, devs, steps, lo_s, hi_s, groups, 0.0, 1.0, st, near, eq, dd)
    ref_near, ref_eq, ref_dd = testing.reference_walk(bases, devs, lo_s, hi_s, 1.0 - c, c, 1.0)
    np.testing.assert_array_equal(near, ref_near)
    np.testing.assert_allclose(eq, ref_eq, rtol=1e-13)
    np.testing.assert_allclose(dd, ref_dd, rtol=1e-12, atol=1e-15)
    assert 0 < near.sum() < near.size
    assert not near[6]
    assert not near[7]
    if sign:
        assert np.all(dd > 0)
    else:
        assert np.all(dd == 0)
        assert np.all(eq == 1.0)


def test_sample_extremes_skips_only_bridge_draws_that_cannot_set_an_extreme():
    # the kernel computes a step's bridge extreme only when U (1 + Q + Q^2/2) < 1 (Q the
    # crossing exponent of the running extreme) and draws nothing past Q = 36; the
    # reference computes every step's extreme: the results are the same numbers
    model, days, pairs, steps, every = GBM(0.9, 0.2), 3.0, 200, 24, 6
    ext = sample_extremes(model, 100.0, days, 2 * pairs, steps, 4, steps // every)
    ma = mc._model_arrays(model, days * 24 / steps)
    z, u_lo, u_hi = _reference_draws(4, pairs, steps)
    lo, hi, last = testing.reference_extremes(
        z, u_lo, u_hi, ma.mp[mck.P_DRIFT], ma.mp[mck.P_SD], every
    )
    np.testing.assert_array_equal(ext.running_min, lo)
    np.testing.assert_array_equal(ext.running_max, hi)
    np.testing.assert_array_equal(ext.terminal, last)


def test_bridge_minimum_is_skipped_only_when_it_is_above_the_running_minimum(rng):
    # the bridge minimum m = (y0 + y1 - sqrt((y1 - y0)^2 - 2 v ln U)) / 2 is below lo exactly
    # when U < exp(-Q), Q = 2 (y0 - lo)(y1 - lo) / v; the skip test may only drop draws with
    # m >= lo, and otherwise returns m itself
    n = 4000
    var = 10.0 ** rng.uniform(-6, -2, n)
    sd = np.sqrt(var)
    lo = rng.normal(0, 0.1, n)
    y0 = lo + np.abs(rng.normal(0, 1, n)) * sd * rng.choice([0.0, 0.01, 1.0, 3.0], n)
    y1 = lo + np.abs(rng.normal(0, 1, n)) * sd * rng.choice([0.01, 1.0, 3.0], n)
    u = rng.uniform(0, 1, n)
    m = 0.5 * (y0 + y1 - np.sqrt((y1 - y0) ** 2 - 2 * var * np.log(u)))
    q = 2.0 * (y0 - lo) * (y1 - lo)
    got = np.array([mck._bridge_min(*args) for args in zip(y0, y1, q, var, u, lo, strict=True)])
    skipped = got == lo
    assert 0.2 < skipped.mean() < 0.95
    assert np.all(m[skipped] >= lo[skipped])
    np.testing.assert_allclose(got[~skipped], m[~skipped], rtol=1e-14, atol=1e-17)
    # every draw that does set a new minimum is computed
    assert np.all(~skipped[m < lo])
    assert np.sum(m < lo) > 50


# ---------------------------------------------------------------- reproducibility


def test_same_seed_same_result_on_any_number_of_threads():
    kwargs: dict[str, Any] = {
        "side": "short", "liquidation_price": 108.0, "horizon_days": 3, "paths": 5 * 2048,
        "steps": 24, "funding_rate": 0.0003,
    }  # fmt: skip
    model = MertonJump(0.7, 30, -0.02, 0.05, mu=0.1)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = simulate_paths(model, 100.0, seed=9, **kwargs)
        numba.set_num_threads(max(2, threads))
        many = simulate_paths(model, 100.0, seed=9, **kwargs)
    finally:
        numba.set_num_threads(threads)
    for name in ("survival", "liquidation_step", "equity", "max_drawdown"):
        np.testing.assert_array_equal(getattr(one, name), getattr(many, name))
    other = simulate_paths(model, 100.0, seed=10, **kwargs)
    assert not np.array_equal(one.equity, other.equity)


def test_progress_bar_batches_do_not_change_results(monkeypatch):
    kwargs: dict[str, Any] = {
        "side": "long", "liquidation_price": 95.0, "horizon_days": 2, "paths": 9_000, "steps": 16,
        "seed": 2,
    }  # fmt: skip
    quiet = simulate(GBM(0.7), 100.0, **kwargs)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    shown = simulate(GBM(0.7), 100.0, progress=True, **kwargs)
    assert shown == quiet
    ext = sample_extremes(GBM(0.7), 100.0, 2, 9_000, 16, 2, 4, progress=True)
    ext_quiet = sample_extremes(GBM(0.7), 100.0, 2, 9_000, 16, 2, 4)
    np.testing.assert_array_equal(ext.running_min, ext_quiet.running_min)


# ---------------------------------------------------------------- the margin model, step by step


def _crossing_drift(b: float, horizon_days: float, cross_step: int, steps: int) -> float:
    """GBM drift whose (nearly noiseless) log path is at (t + 1) b / (cross_step + 0.5) at step t.

    It stays short of the level ``b`` before ``cross_step`` and passes it at that step.
    """
    per_step = b / (cross_step + 0.5)
    return per_step * steps / (horizon_days / DAYS)


def _assert_liquidated_at(model_mu: float, account: Any, steps: int, horizon: float) -> Any:
    return simulate_paths(
        GBM(1e-7, model_mu), None, account=account, horizon_days=horizon, paths=8, steps=steps,
    )  # fmt: skip


def test_cross_hedge_pair_liquidates_exactly_at_the_margin_engines_price(binance):
    # hedge mode: BTC long 2 @ 20,000 and short 1 @ 21,000 in cross; the exact solver of
    # levalign.margin gives the account's liquidation price with both legs in their tiers
    acct = _account(
        _pos("BTC/USDT:USDT", "long", 2, 20_000, 20_000),
        _pos("BTC/USDT:USDT", "short", 1, 21_000, 20_000),
        wallet=2_500,
        position_mode="hedge",
    )
    lp = margin_report(acct, binance).positions[0].liquidation_price
    assert lp is not None
    b = math.log(lp / 20_000)
    steps, horizon = 40, 2.0
    out = _assert_liquidated_at(_crossing_drift(b, horizon, 17, steps), acct, steps, horizon)
    assert np.all(out.liquidation_step == 17)
    assert np.all(out.survival == 0.0)
    # a path ending 1e-5 (in log price) short of the level survives, one just past it does not
    for factor, dead in ((1 - 1e-5, False), (1 + 1e-5, True)):
        mu = b * factor / (horizon / DAYS)
        out = _assert_liquidated_at(mu, acct, steps, horizon)
        assert np.all((out.liquidation_step == steps - 1) == dead)
        assert np.all(out.survival == (0.0 if dead else 1.0))


def test_two_symbol_cross_account_liquidation_level_by_hand():
    # BTC long 10 @ 20,000 (notional 200k) and ETH short 40 @ 1,500 (60k), cross wallet 20,000,
    # both in Binance's second tier (mmr 0.5%, cum 50). With F the common factor:
    #   g(F) = 20,000 + 10 (20,000 F - 20,000) - 40 (1,500 F - 1,500)
    #          - (200,000 F * 0.005 - 50) - (60,000 F * 0.005 - 50)
    #        = -119,900 + 138,700 F  ->  F* = 119,900 / 138,700 = 0.86445
    # at F* the notionals are 172.9k and 51.9k: both still in tier 2, so the root stands
    acct = _account(
        _pos("BTC/USDT:USDT", "long", 10, 20_000, 20_000),
        _pos("ETH/USDT:USDT", "short", 40, 1_500, 1_500),
        wallet=20_000,
    )
    f_star = 119_900 / 138_700
    assert 50_000 < 60_000 * f_star < 200_000 * f_star < 600_000
    b = math.log(f_star)
    steps, horizon = 30, 1.0
    for factor, dead in ((1 - 1e-6, False), (1 + 1e-6, True)):
        out = _assert_liquidated_at(b * factor / (horizon / DAYS), acct, steps, horizon)
        assert np.all((out.liquidation_step == steps - 1) == dead)
        # a cross liquidation takes the whole cross margin balance: nothing is left
        assert np.all((out.equity == 0.0) == dead)


def _write_venue(
    tmp_path: Path, symbol: str, linear: bool, contract_size: float
) -> tuple[str, str]:
    markets = {symbol: {"symbol": symbol, "linear": linear, "inverse": not linear,
                        "contractSize": contract_size}}  # fmt: skip
    tiers = {
        symbol: [
            {"minNotional": 0, "maxNotional": 5 if not linear else 50_000,
             "maintenanceMarginRate": 0.004, "maxLeverage": 125},
            {"minNotional": 5 if not linear else 50_000, "maxNotional": 1e9,
             "maintenanceMarginRate": 0.01, "maxLeverage": 50},
        ]
    }  # fmt: skip
    m, t = tmp_path / "markets.json", tmp_path / "tiers.json"
    m.write_text(json.dumps(markets), encoding="utf-8")
    t.write_text(json.dumps(tiers), encoding="utf-8")
    return str(m), str(t)


@pytest.mark.parametrize(
    ("exchange", "symbol", "linear", "side", "contracts", "collateral"),
    [
        ("binance", "BTC/USDT:USDT", True, "long", 3, 6_000),  # 60k notional: tier 2
        ("hyperliquid", "BTC/USDC:USDC", True, "short", 2, 3_000),
        ("bybit", "BTC/USDT:USDT", True, "long", 3, 6_000),  # MM at the entry notional
        ("binancecoinm", "BTC/USD:BTC", False, "long", 100, 0.05),  # $10,000 of coin-M
        ("binancecoinm", "BTC/USD:BTC", False, "short", 100, 0.05),
    ],
)
def test_isolated_position_liquidates_at_the_margin_engines_price(
    tmp_path, exchange, symbol, linear, side, contracts, collateral
):
    acct: dict[str, Any] = _account(
        _pos(symbol, side, contracts, 20_000, 20_000, "isolated", collateral),
        wallet=2 * collateral,
    )
    acct["exchange"] = exchange
    if exchange in ("bybit", "binancecoinm"):
        acct["markets"], acct["tiers"] = _write_venue(
            tmp_path, symbol, linear, 100 if not linear else 1
        )
    lp = margin_report(acct).positions[0].liquidation_price
    assert lp is not None
    b = math.log(lp / 20_000)
    steps, horizon = 25, 1.0
    for factor, dead in ((1 - 1e-6, False), (1 + 1e-6, True)):
        out = _assert_liquidated_at(b * factor / (horizon / DAYS), acct, steps, horizon)
        assert np.all((out.liquidation_step == steps - 1) == dead)
        # an isolated liquidation loses the collateral; the rest of the wallet stays
        if dead:
            np.testing.assert_allclose(out.equity, 0.5, rtol=1e-12)
    res = simulate(GBM(0.8), None, account=acct, horizon_days=3, paths=40_000, steps=20, seed=1)
    exact = liquidation_probability(20_000, lp, 0.8, 3 / DAYS, side=side)
    assert res.analytic_p_liquidation == pytest.approx(exact, rel=1e-9)
    assert abs(res.p_liquidation - exact) < 3 * res.p_liquidation_se


def test_funding_erodes_the_margin_until_liquidation():
    # 10x long (spot 100, liquidation 90), no price move: the margin balance, 1, pays
    # f L = 1 / 100.5 of itself per 1 h step, so it is first negative after 101 payments:
    # liquidation in step index 100, at hour 101. f = r * 1h / 8h gives r = 8 / 1005.
    rate = 8 / 1005
    kwargs: dict[str, Any] = {"horizon_days": 6, "paths": 8, "steps": 144, "funding_rate": rate}
    out = simulate_paths(GBM(1e-7), 100.0, side="long", liquidation_price=90.0, **kwargs)
    assert np.all(out.liquidation_step == 100)
    res = simulate(GBM(1e-7), 100.0, side="long", liquidation_price=90.0, **kwargs)
    assert res.time_to_liquidation_quantiles[0.5] == pytest.approx(101.0)
    assert res.p_liquidation == 1.0
    assert res.analytic_p_liquidation is None  # funding moves the level: no closed form
    # the short receives the same funding: 144 payments of 1/100.5 of its starting margin
    out = simulate_paths(GBM(1e-7), 100.0, side="short", liquidation_price=110.0, **kwargs)
    assert np.all(out.liquidation_step == -1)
    np.testing.assert_allclose(out.equity, 1 + 144 / 100.5, rtol=1e-5)


def test_funding_series_per_step_is_used_step_by_step():
    # the same erosion, paid only in the second half: liquidation 72 steps later
    rate = np.r_[np.zeros(72), np.full(72, 8 / 1005)]
    out = simulate_paths(
        GBM(1e-7), 100.0, side="long", liquidation_price=90.0, horizon_days=6, paths=4,
        steps=144, funding_rate=rate,
    )  # fmt: skip
    assert np.all(out.liquidation_step == -1)  # 72 payments are not enough
    rate = np.r_[np.zeros(40), np.full(104, 8 / 1005)]
    out = simulate_paths(
        GBM(1e-7), 100.0, side="long", liquidation_price=90.0, horizon_days=6, paths=4,
        steps=144, funding_rate=rate,
    )  # fmt: skip
    assert np.all(out.liquidation_step == 140)


# ---------------------------------------------------------------- P&L measures


def test_var_and_es_of_a_2x_long_match_the_lognormal_closed_form():
    # 2x long (liquidation at half the price, out of reach): loss L = -2 (e^X - 1) with
    # X ~ N(nu T, sigma^2 T). VaR_a = -2 (exp(nu T + s z_{1-a}) - 1) and
    # ES_a = -2 (e^{nu T + s^2/2} N(z_{1-a} - s) / (1 - a) - 1), s = sigma sqrt(T)
    sigma, mu, days, a = 0.7, 0.2, 10.0, 0.99
    res = simulate(GBM(sigma, mu), 100.0, side="long", liquidation_price=50.0,
                   horizon_days=days, paths=200_000, steps=10, seed=3, var_level=a)  # fmt: skip
    t = days / DAYS
    nu, s = (mu - sigma**2 / 2) * t, sigma * math.sqrt(t)
    z = stats.norm.ppf(1 - a)
    var = -2 * (math.exp(nu + s * z) - 1)
    es = -2 * (math.exp(nu + s * s / 2) * stats.norm.cdf(z - s) / (1 - a) - 1)
    assert res.p_liquidation < 1e-9
    assert 0 < res.var_se < 0.01
    assert 0 < res.es_se < 0.01
    assert abs(res.var - var) < 3 * res.var_se
    assert abs(res.es - es) < 3 * res.es_se
    assert res.es > res.var


def test_expected_log_growth_matches_numerical_integration():
    # 2x long, no liquidation in reach: E ln(1 + 2 (e^X - 1)), X ~ N(nu T, sigma^2 T)
    sigma, mu, days = 0.5, 0.3, 20.0
    res = simulate(GBM(sigma, mu), 100.0, side="long", liquidation_price=50.0,
                   horizon_days=days, paths=100_000, steps=5, seed=8)  # fmt: skip
    t = days / DAYS
    nu, s = (mu - sigma**2 / 2) * t, sigma * math.sqrt(t)
    # equity 2 F - 1 is gone at F = 1/2, 6 sd below the mean: integrate above it (the mass
    # below, times the floor's ln(1e-6), is far below the standard error)
    lo = math.log(0.5) + 1e-9
    assert stats.norm.cdf(lo, nu, s) * 14 < 1e-7
    exact, _ = integrate.quad(
        lambda x: math.log(1 + 2 * math.expm1(x)) * stats.norm.pdf(x, nu, s), lo, nu + 10 * s
    )
    assert abs(res.expected_log_growth - exact) < 3 * res.expected_log_growth_se


def test_liquidated_paths_lose_the_margin_and_hit_the_wealth_floor():
    res = simulate(GBM(0.9), 100.0, side="long", liquidation_price=97.0, horizon_days=5,
                   paths=20_000, steps=20, seed=1, wealth_floor=1e-3)  # fmt: skip
    p = res.liquidated_fraction
    assert 0.5 < p < 1
    assert res.terminal_pnl_quantiles[0.01] == -1.0
    assert res.max_drawdown_quantiles[0.99] == 1.0
    assert res.var == 1.0
    assert res.es == 1.0
    # every liquidated path contributes ln(1e-3); the survivors' log growth is bounded by
    # ln(1 + 33 (e^{max X} - 1)), so the mean is close to p ln(1e-3)
    assert res.expected_log_growth < p * math.log(1e-3) + (1 - p) * 3.0


def test_drawdown_of_a_steadily_falling_long():
    # a noiseless fall of 3% over 10 steps on a 10x long: equity falls from 1 to 1 - 10 * 3%
    # (linear in price), the maximum drawdown is that whole fall, and nothing is liquidated
    mu = math.log(0.97) / (5 / DAYS)
    res = simulate(GBM(1e-7, mu), 100.0, side="long", liquidation_price=90.0, horizon_days=5,
                   paths=4, steps=10)  # fmt: skip
    expected = 10 * 0.03
    assert res.max_drawdown_quantiles[0.5] == pytest.approx(expected, rel=1e-5)
    assert res.terminal_pnl_quantiles[0.5] == pytest.approx(-expected, rel=1e-5)
    assert res.p_liquidation == 0.0


def test_result_is_json_ready():
    res = simulate(GBM(0.8), 100.0, side="long", liquidation_price=90.0, horizon_days=1,
                   paths=60, steps=5)  # fmt: skip
    data = res.to_dict()
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["model"] == {"type": "gbm", "sigma": 0.8, "mu": 0.0}
    assert set(data["terminal_pnl_quantiles"]) == {"0.01", "0.05", "0.25", "0.5", "0.75",
                                                   "0.95", "0.99"}  # fmt: skip
    assert data["paths"] == 60
    assert data["var_se"] is None  # 30 pairs: too few for 20 batches of 2 pairs at least


# ---------------------------------------------------------------- other models


def _pair_se_of(values: np.ndarray) -> float:
    pairs = values.reshape(-1, 2).mean(axis=1)
    return float(pairs.std(ddof=1) / math.sqrt(pairs.size))


def test_student_t_variance_and_fat_tails():
    # unit-variance t innovations: Var(x_T) = sigma^2 T; with 2 steps the excess kurtosis of
    # the sum is half that of one t_6 step, 6 / (nu - 4) / 2 = 1.5
    sigma, days = 0.8, 4.0
    x = sample_extremes(StudentT(sigma, 6.0), 100.0, days, 200_000, 2, 4, 1).terminal[0]
    dev2 = (x - x.mean()) ** 2
    assert abs(dev2.mean() - sigma**2 * days / DAYS) < 4 * _pair_se_of(dev2)
    assert 1.0 < stats.kurtosis(x) < 2.2


def test_merton_variance_and_compensated_mean():
    # Var = sigma^2 T + lambda T (m^2 + s^2); E[S_T / S_0] = e^{mu T} (jumps compensated)
    m = MertonJump(0.5, 40.0, -0.05, 0.08, mu=0.3)
    t = 30 / DAYS
    x = sample_extremes(m, 100.0, 30, 200_000, 30, 5, 1).terminal[0]
    dev2 = (x - x.mean()) ** 2
    var = 0.25 * t + 40 * t * (0.05**2 + 0.08**2)
    assert abs(dev2.mean() - var) < 4 * _pair_se_of(dev2)
    growth = np.exp(x)
    assert abs(growth.mean() - math.exp(0.3 * t)) < 4 * _pair_se_of(growth)
    assert stats.skew(x) < -0.1  # negative jumps


def test_garch_variance_from_the_unconditional_start():
    # started at the unconditional variance omega / (1 - alpha - beta) = 2e-5 per bar, every
    # bar has that expected variance and returns are uncorrelated: Var(48 bars) = 48 * 2e-5
    g = GarchT(omega=1e-6, alpha=0.1, beta=0.85, nu=6.0, mu=1e-4, bar_hours=1.0)
    x = sample_extremes(g, 100.0, 2, 100_000, 12, 6, 1).terminal[0]  # 4 bars per step
    assert abs(x.mean() - 48e-4) < 4 * _pair_se_of(x)
    dev2 = (x - 48e-4) ** 2
    assert abs(dev2.mean() - 48 * 2e-5) < 4 * _pair_se_of(dev2)
    # volatility clustering fattens the tails of the 2-day return
    assert stats.kurtosis(x) > 0.3


def test_garch_from_a_high_starting_volatility_is_more_volatile():
    g = GarchT(omega=1e-6, alpha=0.1, beta=0.85, nu=6.0, sigma0=0.02)
    x = sample_extremes(g, 100.0, 1, 50_000, 24, 6, 1).terminal[0]
    # E sigma_j^2 = u + (persistence)^j (sigma0^2 - u), persistence 0.95, u = 2e-5
    u, pers = 2e-5, 0.95
    var = sum(u + pers**j * (0.02**2 - u) for j in range(24))
    dev2 = (x - x.mean()) ** 2
    assert abs(dev2.mean() - var) < 4 * _pair_se_of(dev2)


def test_bootstrap_paths_are_made_of_the_sample_returns(rng):
    r = rng.standard_normal(300) * 0.01
    b = Bootstrap(r, bar_hours=1.0, block_length=5.0)
    ext = sample_extremes(b, 100.0, 1, 200, 24, 3, 24)  # one bar per step, every step kept
    steps = np.diff(np.vstack([np.zeros(ext.paths), ext.terminal]), axis=0)
    dist = np.min(np.abs(steps.ravel()[:, None] - r[None, :]), axis=1)
    assert np.all(dist < 1e-15)
    # blocks: most consecutive bars are consecutive sample returns (continue w.p. 1 - 1/5)
    idx = np.argmin(np.abs(steps[:, :, None] - r[None, None, :]), axis=2)
    follow = np.mean(idx[1:] == (idx[:-1] + 1) % r.size)
    assert 0.75 < follow < 0.85


def test_bootstrap_variance_and_recentered_drift(rng):
    r = rng.standard_normal(2_000) * 0.01 + 0.002
    x = sample_extremes(Bootstrap(r, 1.0, 4.0), 100.0, 1, 100_000, 24, 2, 1).terminal[0]
    assert abs(x.mean() - 24 * r.mean()) < 4 * _pair_se_of(x)
    dev2 = (x - x.mean()) ** 2
    # stationary bootstrap (p = 1/4 of a new block per bar): bars k apart share a block with
    # probability (1 - p)^k, and then covary as the sample's circular autocovariance c(k):
    # Var = 24 c(0) + 2 sum_k (24 - k) (1 - p)^k c(k)   (Politis & Romano 1994, §3)
    d = r - r.mean()
    c = [np.mean(d * np.roll(d, -k)) for k in range(24)]
    var = 24 * c[0] + 2 * sum((24 - k) * 0.75**k * c[k] for k in range(1, 24))
    assert abs(dev2.mean() - var) < 4 * _pair_se_of(dev2)
    mu = -0.5
    x = sample_extremes(Bootstrap(r, 1.0, 4.0, mu=mu), 100.0, 1, 100_000, 24, 2, 1).terminal[0]
    expected = 24 * (mu / 8760 - 0.5 * r.var(ddof=1))
    assert abs(x.mean() - expected) < 4 * _pair_se_of(x)


def test_bar_stepped_models_need_whole_bars_per_step():
    g = GarchT(omega=1e-6, alpha=0.1, beta=0.85, nu=6.0, bar_hours=4.0)
    with pytest.raises(InvalidInput, match="not a whole number of the model's 4 h bars") as e:
        sample_extremes(g, 100.0, 1, 100, 24, 0, 1)  # 1 h steps
    assert e.value.field == "steps"
    sample_extremes(g, 100.0, 1, 100, 6, 0, 1)  # 4 h steps: one bar each


# ---------------------------------------------------------------- specs and errors


def test_model_from_spec_round_trip():
    for model in (
        GBM(0.8, 0.1),
        StudentT(0.6, 5.0),
        GarchT(1e-6, 0.1, 0.85, 6.0, sigma0=0.01),
        MertonJump(0.5, 12.0, -0.1, 0.05),
    ):
        assert model_from_spec(model.to_dict()) == model
    b = Bootstrap(np.arange(12, dtype=np.float64) / 1000, 1.0, 3.0)
    assert np.array_equal(model_from_spec(b.to_dict()).returns, b.returns)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("spec", "match", "field"),
    [
        ({"type": "gbm"}, "model.sigma is required for a gbm model", "model.sigma"),
        ({"type": "gbm", "sigma": -0.1}, "model.sigma must be a positive number", "model.sigma"),
        ({"type": "gbm", "sigma": "high"}, "model.sigma must be a number", "model.sigma"),
        ({"type": "gbm", "sigma": 0.5, "vol": 1}, "model.vol is not a parameter", "model.vol"),
        ({"type": "heston"}, "valid types: gbm, student_t, garch_t, merton_jump, bootstrap, jump",
         "model.type"),
        ({"sigma": 0.5}, "model.type None is not a model", "model.type"),
        ({"type": "student_t", "sigma": 0.5, "nu": 2}, "model.nu must be above 2", "model.nu"),
        ({"type": "garch_t", "omega": 1e-6, "alpha": 0.2, "beta": 0.8, "nu": 5},
         r"alpha \+ model.beta must be below 1", "model.beta"),
        ({"type": "garch_t", "omega": 0, "alpha": 0.1, "beta": 0.8, "nu": 5},
         "model.omega must be a positive number", "model.omega"),
        ({"type": "garch_t", "omega": 1e-6, "alpha": -0.1, "beta": 0.8, "nu": 5},
         "model.alpha must be a non-negative number", "model.alpha"),
        ({"type": "garch_t", "omega": 1e-6, "alpha": 0.1, "beta": 0.8, "nu": 5, "sigma0": 0},
         "model.sigma0 must be a positive number", "model.sigma0"),
        ({"type": "merton_jump", "sigma": 0.5, "jump_intensity": -1, "jump_mean": 0,
          "jump_std": 0.1}, "model.jump_intensity must be a non-negative", "model.jump_intensity"),
        ({"type": "merton_jump", "sigma": 0.5, "jump_intensity": 1, "jump_mean": 0},
         "model.jump_std is required", "model.jump_std"),
        ({"type": "bootstrap", "returns": [0.01] * 5, "bar_hours": 1, "block_length": 2},
         "at least 10 per-bar log returns", "model.returns"),
        ({"type": "bootstrap", "returns": [0.01] * 9 + [math.nan], "bar_hours": 1,
          "block_length": 2}, r"model.returns\[9\] is nan", "model.returns[9]"),
        ({"type": "bootstrap", "returns": [0.01] * 10, "bar_hours": 1, "block_length": 11},
         "between 1 and the number of returns", "model.block_length"),
        ({"type": "bootstrap", "returns": [0.01] * 10, "bar_hours": 0, "block_length": 2},
         "model.bar_hours must be a positive number", "model.bar_hours"),
    ],
)  # fmt: skip
def test_model_spec_errors_name_the_field(spec, match, field):
    with pytest.raises(InvalidInput, match=match) as e:
        model_from_spec(spec)
    assert e.value.field == field


def test_model_spec_must_be_a_mapping():
    with pytest.raises(InvalidInput, match="model must be an object") as e:
        model_from_spec([0.8])  # type: ignore[arg-type]
    assert e.value.field == "model"


POSITION: dict[str, Any] = {"side": "long", "liquidation_price": 90.0, "horizon_days": 1.0,
                            "paths": 10, "steps": 4}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "match", "field"),
    [
        ({"horizon_days": 0.0}, "horizon_days must be a positive number of days", "horizon_days"),
        ({"horizon_days": math.inf}, "horizon_days must be a positive", "horizon_days"),
        ({"paths": 0}, "paths must be a whole number of at least 1", "paths"),
        ({"paths": 2.5}, "paths must be a whole number", "paths"),
        ({"steps": 0}, "steps must be a whole number of at least 1", "steps"),
        ({"liquidation_price": 110.0}, "must be below spot 100.0 for a long", "liquidation_price"),
        ({"side": "short"}, "must be above spot 100.0 for a short", "liquidation_price"),
        ({"side": "buy"}, "side must be 'long' or 'short', got 'buy'", "side"),
        ({"side": None}, "side must be 'long' or 'short', got None", "side"),
        ({"liquidation_price": None}, "give either liquidation_price .* not neither",
         "liquidation_price"),
        ({"account": THREE_GROUPS}, "not both", "account"),
        ({"var_level": 1.0}, "var_level must be between 0 and 1", "var_level"),
        ({"funding_rate": [0.001, 0.0]}, "one per step \\(4\\)", "funding_rate"),
        ({"funding_rate": math.nan}, "funding_rate must be finite", "funding_rate"),
        ({"wealth_floor": 0.0}, "wealth_floor must be between 0 and 1", "wealth_floor"),
    ],
)  # fmt: skip
def test_simulate_errors_name_the_field(change, match, field):
    with pytest.raises(InvalidInput, match=match) as e:
        simulate(GBM(0.5), 100.0, **{**POSITION, **change})
    assert e.value.field == field


def test_simulate_rejects_bad_spot_model_and_accounts():
    with pytest.raises(InvalidInput, match="spot must be a positive price") as e:
        simulate(GBM(0.5), -1.0, **POSITION)
    assert e.value.field == "spot"
    with pytest.raises(InvalidInput, match="model must be one of GBM") as e:
        simulate({"type": "gbm"}, 100.0, **POSITION)  # type: ignore[arg-type]
    assert e.value.field == "model"
    with pytest.raises(InvalidInput, match="side applies to a single position") as e:
        simulate(GBM(0.5), None, side="long", account=THREE_GROUPS, horizon_days=1, paths=2,
                 steps=1)  # fmt: skip
    assert e.value.field == "side"
    with pytest.raises(InvalidInput, match="no positions") as e:
        simulate(GBM(0.5), None, account=_account(wallet=100), horizon_days=1, paths=2, steps=1)
    assert e.value.field == "account.positions"
    underwater = _account(_pos("BTC/USDT:USDT", "long", 1, 20_000, 20_000, "isolated", 50),
                          wallet=1_000)  # fmt: skip
    with pytest.raises(InvalidInput, match="already liquidatable") as e:
        simulate(GBM(0.5), None, account=underwater, horizon_days=1, paths=2, steps=1)
    assert e.value.field == "account"
    bad_entry = _account(_pos("BTC/USDT:USDT", "long", 1, -5, 1), wallet=10)
    with pytest.raises(InvalidInput, match=r"account.positions\[0\].entry_price") as e:
        simulate(GBM(0.5), None, account=bad_entry, horizon_days=1, paths=2, steps=1)


def test_sample_extremes_errors():
    with pytest.raises(InvalidInput, match="checkpoints must be a whole number that divides") as e:
        sample_extremes(GBM(0.5), 100.0, 1, 10, 10, 0, 3)
    assert e.value.field == "checkpoints"
    ext = sample_extremes(GBM(0.5), 100.0, 1, 10, 10, 0, 2)
    with pytest.raises(InvalidInput, match=r"distance must be a fraction of price in \(0, 1\)"):
        ext.touch_probability([1.2])
    with pytest.raises(InvalidInput, match="checkpoint must be in") as e:
        ext.touch_probability([0.1], checkpoint=2)
    assert e.value.field == "checkpoint"
    with pytest.raises(InvalidInput, match="side must be 'long' or 'short'"):
        ext.touch_probability([0.1], side="up")  # type: ignore[arg-type]


def test_jump_is_short_for_merton_jump() -> None:
    spec = {"sigma": 0.5, "jump_intensity": 2.0, "jump_mean": -0.05, "jump_std": 0.1}
    assert mc.model_from_spec({"type": "jump", **spec}) == mc.model_from_spec(
        {"type": "merton_jump", **spec}
    )


def test_paths_and_work_have_a_documented_maximum():
    from levalign.schemas import MAX_PATH_STEPS, MAX_PATHS

    with pytest.raises(InvalidInput, match="paths must be at most 2,000,000") as info:
        simulate(GBM(0.5), 100.0, side="long", liquidation_price=90.0, horizon_days=1,
                 paths=10**9, steps=1)  # fmt: skip
    assert info.value.field == "paths"
    with pytest.raises(InvalidInput, match=r"paths x steps = 2,000,000,000 is above") as info:
        simulate(GBM(0.5), 100.0, side="long", liquidation_price=90.0, horizon_days=1,
                 paths=MAX_PATHS, steps=MAX_PATH_STEPS // MAX_PATHS * 2)  # fmt: skip
    assert info.value.field == "steps"
