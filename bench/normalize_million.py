"""Normalize one lead event for 1,000,000 followers through the full pipeline.

Figures:
- ``kernel``: the cohort kernel with the cohort already columnar and the output columns
  preallocated, as a live engine holding its cohort in memory runs it for every event;
- ``normalize()``: the public call (event validation, output allocation, amount rounding);
- ``python loop``: the same algorithm run follower by follower by CPython (the kernel's
  ``py_func``), measured on a slice and scaled per follower: the baseline of the ratio.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import numpy as np

from bench._timing import median_seconds
from levalign import _normalize_kernel as nk
from levalign.demo import sample_cohort
from levalign.markets import load_markets
from levalign.normalize import Cohort, normalize, prepare_event, run_kernel
from levalign.schemas import LeadEvent

N = 1_000_000
BASELINE_N = 5_000


def _outputs(n: int) -> dict[str, Any]:
    return {
        "side": np.empty(n, np.int8),
        "amount": np.empty(n),
        "close_amount": np.empty(n),
        "reduce_only": np.empty(n, np.bool_),
        "leverage": np.empty(n),
        "collateral": np.empty(n),
        "target_position": np.empty(n),
        "raw_amount": np.empty(n),
        "reasons": np.empty(n, np.uint32),
        "effective_leverage": np.empty(n),
        "liquidation_price": np.empty(n),
        "liquidation_distance": np.empty(n),
        "residual": np.empty(n),
    }


def run(runs: int = 25) -> dict[str, float]:
    markets = load_markets("binance")
    spec = markets["BTC/USDT:USDT"]
    event = LeadEvent(
        event_id="bench",
        symbol="BTC/USDT:USDT",
        price=22_198.59,
        lead_equity=100_000.0,
        lead_position_before=0.0,
        lead_position_after=31.53,
        sigma=0.55,
    )
    t0 = time.perf_counter()
    table = sample_cohort(N, 11)
    cohort = Cohort.from_table(table)
    convert_s = time.perf_counter() - t0
    ev = prepare_event(event, spec, spec)
    cols = _outputs(N)

    kernel_s, _ = median_seconds(lambda: run_kernel(ev, spec, cohort, cols), runs)
    full_s, _ = median_seconds(lambda: normalize(event, cohort, markets), runs)

    small = Cohort(
        ids=cohort.ids[:BASELINE_N],
        floats={k: v[:BASELINE_N] for k, v in cohort.floats.items()},
        codes={k: v[:BASELINE_N] for k, v in cohort.codes.items()},
        allowed=cohort.allowed[:BASELINE_N],
    )
    small_cols = _outputs(BASELINE_N)
    f, c, t = small.floats, small.codes, spec.tiers

    def python_loop() -> None:
        nk.normalize_kernel.py_func(
            ev,
            spec.contract_size,
            float(spec.amount_step or 0),
            spec.amount_decimals,
            float(spec.min_amount or 0),
            float(spec.min_cost or 0),
            t.floor,
            t.cap,
            t.mmr,
            t.cum,
            t.max_leverage,
            f["equity"],
            f["available_balance"],
            f["position"],
            f["entry_price"],
            f["collateral"],
            f["other_notional"],
            f["other_maintenance_margin"],
            c["mode"],
            f["scale"],
            f["fixed_notional"],
            f["risk_fraction"],
            f["vol_target"],
            f["sigma"],
            f["stop_sigmas"],
            f["max_leverage"],
            f["max_position_leverage"],
            f["min_liq_distance"],
            f["max_liq_probability"],
            f["horizon_hours"],
            f["max_notional"],
            c["margin_mode"],
            c["min_size_policy"],
            f["residual"],
            small.allowed,
            *small_cols.values(),
        )

    loop_s, _ = median_seconds(python_loop, 3, warmup=1)
    # the loop must compute what the kernel computes: compare on the slice
    run_kernel(ev, spec, small, cols_check := _outputs(BASELINE_N))
    python_loop()
    for k in cols_check:
        np.testing.assert_allclose(
            cols_check[k].astype(float), small_cols[k].astype(float), rtol=1e-12
        )
    loop_per_follower = loop_s / BASELINE_N
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "followers": N,
        "kernel_median_ms": kernel_s * 1e3,
        "normalize_median_ms": full_s * 1e3,
        "cohort_conversion_ms": convert_s * 1e3,
        "python_loop_per_follower_us": loop_per_follower * 1e6,
        "python_loop_extrapolated_s": loop_per_follower * N,
        "speedup_kernel": loop_per_follower * N / kernel_s,
        "speedup_normalize": loop_per_follower * N / full_s,
        "peak_rss_mb": peak_rss_mb,
        "runs": runs,
    }
