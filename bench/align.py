"""``levalign align`` with 100,000 paths: the optimal-leverage search, end to end.

Figures:
- ``align``: :func:`levalign.risk.optimal_leverage` in process (paths simulated, 256
  leverages evaluated on them), the target being under 2 s;
- ``evaluate`` and ``evaluate (numpy)``: the leverage evaluation alone, the numba kernel
  against the plain numpy reference on the same paths (the baseline of the ratio);
- ``cli``: the ``levalign align`` command in a fresh process (imports and numba cache load
  included), for what a user waits.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench._timing import median_seconds
from levalign.markets import load_markets
from levalign.risk.monte_carlo import GBM, WEALTH_FLOOR, sample_extremes
from levalign.risk.optimal import (
    evaluate_leverages,
    leverage_grid,
    optimal_leverage,
)
from levalign.testing import evaluate_leverages_reference

PATHS = 100_000
EXAMPLE = Path(__file__).parents[1] / "examples" / "align.json"


def run(runs: int = 7) -> dict[str, float]:
    market = load_markets("binance")["BTC/USDT:USDT"]
    model = GBM(sigma=0.8, mu=1.5)

    def align() -> None:
        optimal_leverage(
            model, 22_000.0, market, 10_000.0, horizon_days=7.0, paths=PATHS, steps=168
        )

    align_s, _ = median_seconds(align, runs, warmup=1)

    ext = sample_extremes(model, 22_000.0, 7.0, PATHS, 168, 1, 1)
    lo, hi = ext.running_min[-1], ext.running_max[-1]
    gross = np.expm1(ext.terminal[-1])
    lev = leverage_grid(125.0, 256)  # the grid optimal_leverage searches
    barrier = np.log1p(-np.minimum(0.9 / np.maximum(lev, 1e-9), 0.99))
    funding = np.zeros_like(lev)
    tail = math.ceil(0.01 * PATHS)
    worst = np.argsort(ext.terminal[-1], kind="stable").astype(np.int64)

    def kernel() -> None:
        evaluate_leverages(lev, barrier, funding, 1.0, lo, hi, gross, worst, tail, WEALTH_FLOOR)

    def reference() -> None:
        evaluate_leverages_reference(lev, barrier, funding, 1.0, lo, hi, gross, tail, WEALTH_FLOOR)

    kernel_s, _ = median_seconds(kernel, runs)
    numpy_s, _ = median_seconds(reference, 3, warmup=1)

    cli = [str(Path(sys.executable).parent / "levalign"), "align", str(EXAMPLE)]
    # after one run that warms the numba cache
    cli_s, _ = median_seconds(lambda: subprocess.run(cli, check=True, capture_output=True), 3, 1)
    return {
        "align_paths": PATHS,
        "align_median_s": align_s,
        "evaluate_median_ms": kernel_s * 1e3,
        "evaluate_numpy_median_ms": numpy_s * 1e3,
        "evaluate_speedup": numpy_s / kernel_s,
        "cli_median_s": cli_s,
    }
