"""``python -m bench [RESULTS.json]``: run every benchmark and print its figures."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

from bench import align, dispatch, monte_carlo, normalize_million, outbox, replay, startup, venue


def _row(label: str, value: str, ratio: str = "") -> None:
    print(f"  {label:<50}{value:>14}   {ratio}")


def main() -> None:
    import numba

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, "
        f"numba threads {numba.get_num_threads()}, python {platform.python_version()}",
        flush=True,
    )
    st = startup.run()
    results = {"startup": st}
    print("\nstart-up, fresh process (median of 7 runs)")
    _row("python -c pass (the baseline)", f"{st['python_median_s'] * 1e3:.0f} ms")
    for key, label in (
        ("import", "import levalign"),
        ("help", "levalign --help"),
        ("margin", "levalign margin examples/account.json"),
    ):
        _row(
            label,
            f"{st[f'{key}_median_s'] * 1e3:.0f} ms",
            f"{st[f'{key}_over_python']:.1f}x python -c pass",
        )

    r = normalize_million.run()
    print(f"\nnormalize one lead event, 1,000,000 followers (median of {r['runs']} runs)")
    _row(
        "kernel (columnar cohort, preallocated output)",
        f"{r['kernel_median_ms']:.2f} ms",
        f"{r['speedup_kernel']:.0f}x the per-follower Python loop (target <= 20 ms)",
    )
    _row(
        "generic kernel alone (no vectorized open pass)",
        f"{r['generic_kernel_median_ms']:.2f} ms",
        f"the kernel is {r['fast_path_speedup']:.2f}x faster; its fast path sizes "
        f"{r['fast_path_rows']:.0%} of the rows",
    )
    _row(
        "memory floor: its columns streamed, no arithmetic",
        f"{r['memory_floor_ms']:.2f} ms",
        f"the kernel takes {r['kernel_over_floor']:.2f}x this",
    )
    _row(
        "kernel, cohort rows grouped by profile",
        f"{r['grouped_kernel_median_ms']:.2f} ms",
        f"{r['grouped_over_random']:.2f}x the random order",
    )
    _row(
        "levalign.normalize(out=previous result)",
        f"{r['normalize_reused_median_ms']:.2f} ms",
        f"{r['speedup_normalize_reused']:.0f}x",
    )
    _row(
        "levalign.normalize() (fresh output columns)",
        f"{r['normalize_median_ms']:.2f} ms",
        f"{r['speedup_normalize']:.0f}x",
    )
    _row(
        "per-follower Python loop (same algorithm)",
        f"{r['python_loop_per_follower_us']:.2f} us",
        f"per follower = {r['python_loop_extrapolated_s']:.1f} s for 1,000,000",
    )
    _row(
        "kernel, 40% with max_liq_probability, 10% optimal",
        f"{r['risk_kernel_median_ms']:.2f} ms",
        f"{r['risk_over_plain']:.2f}x the plain kernel (target <= 2x)",
    )
    _row(
        "levalign.normalize(out=...) with the risk engine on",
        f"{r['risk_normalize_median_ms']:.2f} ms",
    )
    _row("one-off conversion of the cohort to columns", f"{r['cohort_conversion_ms']:.0f} ms")
    _row(
        "Cohort.from_table(pyarrow Table of 1,000,000 rows)",
        f"{r['intake_arrow_median_ms']:.0f} ms",
        f"{r['intake_speedup']:.0f}x faster than coding its text columns row by row "
        f"({r['intake_per_row_coding_ms']:.0f} ms)",
    )
    _row(
        "peak RSS, one event for 1M followers (fresh process)",
        f"{r['peak_rss_mb']:.0f} MB",
        "target <= 1 GB",
    )
    results["normalize_million"] = r

    a = align.run()
    results["align"] = a
    print(f"\nlevalign align, {a['align_paths']:,} paths, 256 leverages")
    _row(
        "optimal_leverage() in process",
        f"{a['align_median_s']:.2f} s",
        "target < 2 s",
    )
    _row(
        "leverage evaluation (numba kernel)",
        f"{a['evaluate_median_ms']:.1f} ms",
        f"{a['evaluate_speedup']:.1f}x the numpy reference",
    )
    _row("leverage evaluation (numpy reference)", f"{a['evaluate_numpy_median_ms']:.1f} ms")
    _row("levalign align examples/align.json, fresh process", f"{a['cli_median_s']:.2f} s")

    m = monte_carlo.run()
    results["monte_carlo"] = m
    print(
        f"\nMonte Carlo, GBM, 10x long, {m['mc_paths']:,.0f} paths x {m['mc_steps']:.0f} steps, "
        f"liquidation + bridge at every step (load average {m['mc_load_1min']:.1f} "
        f"on {os.cpu_count()} cpus)"
    )
    _row(
        f"kernel (simulate_paths, {m['mc_threads']:.0f} threads)",
        f"{m['mc_path_steps_per_s'] / 1e6:.0f} M/s",
        f"{m['mc_speedup']:.1f}x the numpy loop (target >= 300 M/s, >= 4x)",
    )
    _row("  best run", f"{m['mc_path_steps_per_s_best'] / 1e6:.0f} M/s")
    _row("  median wall time", f"{m['mc_kernel_median_s']:.2f} s")
    _row(
        "simulate() (adds quantiles, VaR/ES, standard errors)",
        f"{m['mc_simulate_path_steps_per_s'] / 1e6:.0f} M/s",
        f"{m['mc_simulate_median_s']:.2f} s",
    )
    _row(
        "plain vectorized numpy loop (same model and outputs)",
        f"{m['mc_numpy_path_steps_per_s'] / 1e6:.1f} M/s",
        f"{m['mc_numpy_median_s']:.2f} s",
    )
    _row(
        "sample_extremes (running min/max, exact bridge extremes)",
        f"{m['mc_extremes_path_steps_per_s'] / 1e6:.0f} M/s",
        f"best {m['mc_extremes_path_steps_per_s_best'] / 1e6:.0f} M/s, "
        f"median {m['mc_extremes_median_s']:.2f} s",
    )
    _row(
        "P(liquidation) vs closed form",
        f"{m['mc_p_liquidation']:.5f}",
        f"se {m['mc_p_liquidation_se']:.5f}, exact {m['mc_p_liquidation_exact']:.5f}",
    )

    v = venue.run()
    results["venue"] = v
    print(
        f"\npaper venue, {v['venue_bars']:,} one-minute bars x {v['venue_followers']:,} "
        f"followers ({v['venue_liquidated']:,} liquidated in the crash)"
    )
    _row(
        "bar walk (liquidation, mark, drawdown)",
        f"{v['advance_median_s']:.2f} s",
        f"{v['advance_speedup']:.1f}x the per-bar numpy loop",
    )
    _row("bar walk with per-mode equity sums", f"{v['advance_groups_median_s']:.2f} s")
    _row("per-bar numpy loop (same work)", f"{v['advance_numpy_loop_s']:.2f} s")
    _row("fill one event's orders for every follower", f"{v['execute_median_ms']:.1f} ms")

    b = replay.run()
    results["replay"] = b
    print(
        f"\nbacktest replay, {b['replay_bars']:,.0f} one-minute bars x "
        f"{b['replay_followers']:,.0f} followers, {b['replay_events']:.0f} lead events"
    )
    _row(
        "backtest() end to end",
        f"{b['replay_median_s']:.2f} s",
        f"{b['replay_over_bar_walk']:.1f}x the bare bar walk (target <= 10 s)",
    )
    _row("bare bar walk of the same followers", f"{b['bar_walk_median_s']:.2f} s")

    o = outbox.run()
    results["outbox"] = o
    print(
        f"\nlead event -> every follower order durable in the outbox, {o['outbox_followers']:,} "
        f"followers ({o['outbox_orders']:,} orders, {o['outbox_residuals']:,} residuals, "
        f"{o['outbox_runs']} events)"
    )
    for backend in ("sqlite", "postgresql"):
        r = o[backend]
        if r is None:
            _row(f"{backend}: record_event", "skipped", "server unreachable")
            continue
        _row(
            f"{backend}: record_event p50 / p99",
            f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f} ms",
            f"{r['over_baseline']:.1f}x a plain executemany of the rows "
            f"({r['baseline_ms']:.1f} ms)"
            + (" (target p99 <= 50 ms)" if backend == "sqlite" else ""),
        )
    _row("order intents from the normalize result", f"{o['intents_ms']:.1f} ms")

    dp = dispatch.run()
    results["dispatch"] = dp
    print(
        f"\ndispatcher throughput on loopback, sandbox rate limits off ({dp['dispatch_orders']} "
        f"orders, median of {dp['dispatch_runs']} runs)"
    )
    _row(
        "outbox -> dispatcher -> HyperliquidVenue -> sandbox",
        f"{dp['dispatcher_orders_per_s']:.0f} orders/s",
        f"{dp['dispatcher_over_sdk']:.2f}x the bare SDK Exchange.order loop "
        f"({dp['sdk_orders_per_s']:.0f} orders/s)",
    )

    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
