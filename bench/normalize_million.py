"""Normalize one lead event for 1,000,000 followers through the full pipeline.

Figures:
- ``kernel``: the cohort kernel with the cohort already columnar and the output columns
  preallocated, as a live engine holding its cohort in memory runs it for every event
  (``open_kernel``: per block of rows, the vectorized pass, then the generic row code for the
  rows it leaves);
- ``generic``: the same event through ``generic_kernel`` (the generic row code for every row);
- ``memory floor``: the kernel's input columns read and as many output columns written, with
  no arithmetic: what the kernel would take if sizing cost nothing;
- ``grouped``: the kernel on the same followers with rows grouped by profile
  (:meth:`levalign.normalize.Cohort.grouped_by_profile`), the layout a live engine keeps;
- ``normalize()``: the public call (event validation, the curve, output columns): with fresh
  output columns, which the operating system zeroes page by page on first touch, and with
  ``out=`` a previous result's columns, as a live engine would reuse them;
- ``python loop``: the same algorithm run follower by follower by CPython (the generic row
  code's ``py_func``), measured on a slice and scaled per follower: the baseline of the
  ratio.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

from bench._timing import median_seconds
from levalign import _layout as layout
from levalign import _normalize_kernel as nk
from levalign.markets import load_markets
from levalign.normalize import (
    Cohort,
    allocate_result,
    event_curve,
    kernel_args,
    normalize,
    prepare_event,
    run_kernel,
)
from levalign.samples import sample_cohort
from levalign.schemas import LeadEvent

N = 1_000_000
BASELINE_N = 5_000


@njit(cache=True, parallel=True)
def _stream(
    floats: NDArray[np.float64],
    bytes_: NDArray[np.int8],
    out: NDArray[np.float64],
    out_u32: NDArray[np.uint32],
    out_bytes: NDArray[np.int8],
) -> None:
    """Read every row of ``floats`` and ``bytes_`` (column-major), write every output row."""
    for i in prange(floats.shape[1]):
        acc = 0.0
        for k in range(floats.shape[0]):
            acc += floats[k, i]
        for k in range(bytes_.shape[0]):
            acc += bytes_[k, i]
        for k in range(out.shape[0]):
            out[k, i] = acc
        out_u32[i] = np.uint32(acc > 0.0)
        for k in range(out_bytes.shape[0]):
            out_bytes[k, i] = np.int8(acc > 0.0)


def _memory_floor_seconds(cohort: Cohort, runs: int) -> float:
    """Median time of :func:`_stream` over the kernel's cohort rows and outputs of its widths.

    The rows are the cohort's float and code rows the normalization kernel reads (all but the
    de-risking ones), copied once, outside the timing, into matrices of their own.
    """
    unread = {"derisk_distance", "derisk"}
    floats = np.ascontiguousarray(
        cohort.float_matrix[[k for k, c in enumerate(layout.FLOAT_COLUMNS) if c not in unread]]
    )
    bytes_ = np.ascontiguousarray(
        cohort.code_matrix[[k for k, c in enumerate(layout.CODE_COLUMNS) if c not in unread]]
    )
    # the kernel's one-byte outputs (side, reduce_only) and its slow flags
    stream_args = (
        floats,
        bytes_,
        np.empty((len(layout.RESULT_FLOATS), N)),
        np.empty(N, dtype=np.uint32),
        np.empty((len(layout.RESULT_BYTES) + 1, N), dtype=np.int8),
    )
    _stream(*stream_args)  # compile
    seconds, _ = median_seconds(lambda: _stream(*stream_args), runs)
    return seconds


def _intake_seconds(table: dict[str, Any], runs: int) -> tuple[float, float]:
    """Median seconds of ``Cohort.from_table`` on ``table`` as a pyarrow Table, and of coding
    its text columns follower by follower in Python (the baseline: a dict lookup per row)."""
    import pyarrow as pa

    arrow = pa.table(table)
    intake_s, _ = median_seconds(lambda: Cohort.from_table(arrow), runs)
    text = [
        (arrow.column(c.name), c.names, str(c.default))
        for c in layout.COLUMNS
        if c.kind == "code" and c.name in arrow.column_names
    ]

    def per_row() -> None:
        for column, names, default in text:
            lookup = {name: i for i, name in enumerate(names)}
            values = column.to_numpy(zero_copy_only=False)
            np.array(
                [lookup.get(str(v), -1) if v is not None else names.index(default) for v in values],
                dtype=np.int8,
            )

    per_row_s, _ = median_seconds(per_row, max(runs // 2, 1))
    return intake_s, per_row_s


def _with_risk_limits(table: dict[str, Any], seed: int) -> dict[str, Any]:
    """The sample cohort with ``max_liq_probability`` on 40% and ``optimal`` on 10% of rows."""
    rng = np.random.default_rng(seed)
    n = len(table["id"])
    out = dict(table)
    out["max_liq_probability"] = np.where(
        rng.random(n) < 0.4, rng.choice(np.array([0.001, 0.01, 0.05]), n), np.nan
    )
    out["horizon_hours"] = rng.choice(np.array([8.0, 24.0, 168.0]), n)
    out["mode"] = np.where(rng.random(n) < 0.1, "optimal", np.asarray(table["mode"]))
    return out


_ONE_RUN = """
import resource
from levalign.samples import sample_cohort
from levalign.markets import load_markets
from levalign.normalize import Cohort, normalize
markets = load_markets("binance")
cohort = Cohort.from_table(sample_cohort(1_000_000, 11))
event = {"event_id": "rss", "symbol": "BTC/USDT:USDT", "price": 22_198.59,
         "lead_equity": 100_000.0, "lead_position_before": 0.0, "lead_position_after": 31.53}
normalize(event, cohort, markets)
# VmHWM is this image's own peak; ru_maxrss keeps the parent's peak across fork and exec, so a
# large benchmark process would show through it
try:
    with open("/proc/self/status") as status:
        hwm = next(line for line in status if line.startswith("VmHWM:"))
    print(int(hwm.split()[1]) / 1024)
except OSError:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def _peak_rss_of_one_run() -> float:
    """Peak RSS (MB) of a fresh process that builds the million-follower cohort and sizes one
    event for it: what the run costs, without this benchmark's extra copies and timers."""
    out = subprocess.run(
        [sys.executable, "-c", _ONE_RUN], check=True, capture_output=True, text=True
    )
    return float(out.stdout.strip().splitlines()[-1])


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
    cols = allocate_result(N)

    kernel_s, _ = median_seconds(lambda: run_kernel(ev, spec, cohort, cols), runs)
    generic_s, _ = median_seconds(lambda: run_kernel(ev, spec, cohort, cols, fast_path=False), runs)
    floor_s = _memory_floor_seconds(cohort, runs)
    # the share of followers the vectorized open fast path sizes itself
    slow = np.empty(N, dtype=np.bool_)
    open_args: tuple[Any, ...] = (*kernel_args(ev, spec, cohort, allocate_result(N)), slow)
    nk.open_kernel(*open_args)
    # the same followers with rows grouped by profile (Cohort.grouped_by_profile), as a live
    # engine would keep them; timed right after the random order, on the same machine state
    grouped = cohort.grouped_by_profile()
    grouped_cols = allocate_result(N)
    grouped_s, _ = median_seconds(lambda: run_kernel(ev, spec, grouped, grouped_cols), runs)
    full_s, _ = median_seconds(lambda: normalize(event, cohort, markets), runs)
    previous = normalize(event, cohort, markets)
    reused_s, _ = median_seconds(lambda: normalize(event, cohort, markets, out=previous), runs)

    # the same cohort with the risk engine on: 40% of followers limit P(liquidation within
    # their horizon), 10% size by the optimal (Kelly) mode; the curve is built once per event
    risky = _with_risk_limits(table, 12)
    risky_cohort = Cohort.from_table(risky)
    risky_event = event.model_copy(update={"expected_return": 0.3})
    curve = event_curve(risky_event, risky_cohort)
    risky_ev = prepare_event(risky_event, spec, spec)
    risk_kernel_s, _ = median_seconds(
        lambda: run_kernel(risky_ev, spec, risky_cohort, cols, curve), runs
    )
    risky_previous = normalize(risky_event, risky_cohort, markets)
    risk_full_s, _ = median_seconds(
        lambda: normalize(risky_event, risky_cohort, markets, out=risky_previous), runs
    )

    intake_s, per_row_coding_s = _intake_seconds(table, 5)

    small = Cohort(
        ids=cohort.ids[:BASELINE_N],
        floats={k: v[:BASELINE_N] for k, v in cohort.floats.items()},
        codes={k: v[:BASELINE_N] for k, v in cohort.codes.items()},
        allowed=cohort.allowed[:BASELINE_N],
    )
    small_cols = allocate_result(BASELINE_N)
    small_args = kernel_args(ev, spec, small, small_cols)
    every_row: tuple[Any, ...] = (*small_args, np.empty(0, dtype=np.bool_), 0, BASELINE_N)

    def python_loop() -> None:
        nk.generic_rows.py_func(*every_row)

    loop_s, _ = median_seconds(python_loop, 3, warmup=1)
    # the loop must compute what the kernel computes: compare on the slice
    run_kernel(ev, spec, small, cols_check := allocate_result(BASELINE_N))
    python_loop()
    for k in cols_check:
        np.testing.assert_allclose(
            cols_check[k].astype(float), small_cols[k].astype(float), rtol=1e-12
        )
    loop_per_follower = loop_s / BASELINE_N
    peak_rss_mb = _peak_rss_of_one_run()
    return {
        "followers": N,
        "kernel_median_ms": kernel_s * 1e3,
        "grouped_kernel_median_ms": grouped_s * 1e3,
        "grouped_over_random": grouped_s / kernel_s,
        "generic_kernel_median_ms": generic_s * 1e3,
        "fast_path_speedup": generic_s / kernel_s,
        "memory_floor_ms": floor_s * 1e3,
        "kernel_over_floor": kernel_s / floor_s,
        "fast_path_rows": 1.0 - float(slow.mean()),
        "normalize_median_ms": full_s * 1e3,
        "normalize_reused_median_ms": reused_s * 1e3,
        "speedup_normalize_reused": loop_per_follower * N / reused_s,
        "cohort_conversion_ms": convert_s * 1e3,
        "intake_arrow_median_ms": intake_s * 1e3,
        "intake_per_row_coding_ms": per_row_coding_s * 1e3,
        "intake_speedup": per_row_coding_s / intake_s,
        "python_loop_per_follower_us": loop_per_follower * 1e6,
        "python_loop_extrapolated_s": loop_per_follower * N,
        "speedup_kernel": loop_per_follower * N / kernel_s,
        "speedup_normalize": loop_per_follower * N / full_s,
        "risk_kernel_median_ms": risk_kernel_s * 1e3,
        "risk_normalize_median_ms": risk_full_s * 1e3,
        "risk_over_plain": risk_kernel_s / kernel_s,
        "peak_rss_mb": peak_rss_mb,
        "runs": runs,
    }
