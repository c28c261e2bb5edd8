"""Monte Carlo liquidation risk: path-steps per second, kernel against a plain numpy loop.

The case (docs/design.md, "Performance targets"): GBM (σ = 80%), a 10x isolated long
(liquidation 10% below spot), a one-day horizon in 100 steps, 1,000,000 paths, liquidation
checked at every step with the Brownian-bridge term between steps.

Figures:
- ``kernel``: :func:`levalign.risk.monte_carlo.simulate_paths`, the per-path outcomes
  (survival, liquidation step, terminal equity, drawdown) on all threads;
- ``simulate()``: the same plus the summary (quantiles, VaR/ES, standard errors);
- ``numpy``: the same model and the same outputs written as a plain vectorized numpy loop over
  steps (antithetic normals from ``Generator.standard_normal``, the bridge term for every path,
  a uniform per path and step for the sampled liquidation), the baseline of the ratio;
- ``extremes``: :func:`levalign.risk.monte_carlo.sample_extremes` on the same model, paths and
  steps (running minimum and maximum with the exact bridge extremes), which
  :func:`levalign.risk.optimal.optimal_leverage` and the liquidation curve are built from.

Each figure is the median of ``runs`` timed calls (the best one is reported too: on a machine
shared with other jobs it is the closer to what the code does alone), with the 1-minute load
average at the start of the run.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numba
import numpy as np

from bench._timing import median_seconds
from levalign.risk.first_passage import liquidation_probability
from levalign.risk.monte_carlo import GBM, pair_se, sample_extremes, simulate, simulate_paths

PATHS = 1_000_000
STEPS = 100
SIGMA = 0.8
SPOT, LIQ = 100.0, 90.0
HORIZON_DAYS = 1.0


def numpy_loop(paths: int, steps: int, seed: int) -> tuple[float, float]:
    """The same simulation as a plain vectorized numpy loop; returns P(liq) and its se."""
    rng = np.random.default_rng(seed)
    lev = SPOT / (SPOT - LIQ)
    dt = HORIZON_DAYS / 365 / steps
    drift, sd = -0.5 * SIGMA**2 * dt, SIGMA * math.sqrt(dt)
    b = math.log(LIQ / SPOT)
    half = paths // 2
    y = np.zeros(paths)
    survival = np.ones(paths)
    alive = np.ones(paths, dtype=bool)
    peak = np.ones(paths)
    drawdown = np.zeros(paths)
    equity = np.ones(paths)
    for _ in range(steps):
        z = rng.standard_normal(half)
        y_next = y + drift + sd * np.concatenate([z, -z])
        crossed = y_next <= b
        p = np.exp(-2.0 * (y - b) * (y_next - b) / (sd * sd))
        p = np.where(crossed, 1.0, p)
        survival *= 1.0 - p
        alive &= rng.random(paths) >= p
        equity = np.where(alive, 1.0 + lev * np.expm1(y_next), 0.0)
        np.maximum(peak, equity, out=peak)
        np.maximum(drawdown, 1.0 - equity / peak, out=drawdown)
        y = y_next
    p_path = 1.0 - survival
    pairs = (p_path[:half] + p_path[half:]) / 2
    return float(p_path.mean()), float(pairs.std(ddof=1) / math.sqrt(half))


def run(runs: int = 5) -> dict[str, float]:
    load = os.getloadavg()[0]
    model = GBM(SIGMA)
    kwargs: dict[str, Any] = {
        "side": "long",
        "liquidation_price": LIQ,
        "horizon_days": HORIZON_DAYS,
        "paths": PATHS,
        "steps": STEPS,
    }
    exact = liquidation_probability(SPOT, LIQ, SIGMA, HORIZON_DAYS / 365)
    out = simulate_paths(model, SPOT, seed=1, **kwargs)  # compile, and check the figure
    p = float(np.mean(1.0 - out.survival))
    se = pair_se(1.0 - out.survival)
    if abs(p - exact) > 5 * se:
        raise RuntimeError(f"kernel P(liq) {p} is not the closed form {exact} (se {se})")
    ext = sample_extremes(model, SPOT, HORIZON_DAYS, PATHS, STEPS, seed=1)
    p_ext, se_ext = (float(x[0]) for x in ext.touch_probability([1.0 - LIQ / SPOT]))
    if abs(p_ext - exact) > 5 * se_ext:
        raise RuntimeError(f"extremes P(touch) {p_ext} is not the closed form {exact}")

    kernel_s, kernel_all = median_seconds(
        lambda: simulate_paths(model, SPOT, seed=1, **kwargs), runs
    )
    full_s, _ = median_seconds(lambda: simulate(model, SPOT, seed=1, **kwargs), runs)
    ext_s, ext_all = median_seconds(
        lambda: sample_extremes(model, SPOT, HORIZON_DAYS, PATHS, STEPS, seed=1), runs
    )
    p_np, se_np = numpy_loop(PATHS, STEPS, 1)
    if abs(p_np - exact) > 5 * se_np:
        raise RuntimeError(f"numpy P(liq) {p_np} is not the closed form {exact} (se {se_np})")
    numpy_s, _ = median_seconds(lambda: numpy_loop(PATHS, STEPS, 1), max(1, runs // 2), warmup=0)
    path_steps = PATHS * STEPS
    return {
        "mc_paths": float(PATHS),
        "mc_steps": float(STEPS),
        "mc_threads": float(numba.get_num_threads()),
        "mc_load_1min": load,
        "mc_kernel_median_s": kernel_s,
        "mc_simulate_median_s": full_s,
        "mc_numpy_median_s": numpy_s,
        "mc_extremes_median_s": ext_s,
        "mc_path_steps_per_s": path_steps / kernel_s,
        "mc_path_steps_per_s_best": path_steps / min(kernel_all),
        "mc_simulate_path_steps_per_s": path_steps / full_s,
        "mc_numpy_path_steps_per_s": path_steps / numpy_s,
        "mc_extremes_path_steps_per_s": path_steps / ext_s,
        "mc_extremes_path_steps_per_s_best": path_steps / min(ext_all),
        "mc_speedup": numpy_s / kernel_s,
        "mc_p_liquidation": p,
        "mc_p_liquidation_se": se,
        "mc_p_liquidation_exact": exact,
    }


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:<36}{value:.6g}")
