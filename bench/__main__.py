"""``python -m bench``: run every benchmark and print its figures."""

from __future__ import annotations

import json
import os
import platform
import sys

from bench import normalize_million


def main() -> None:
    import numba

    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, numba threads {numba.get_num_threads()}, "
          f"python {platform.python_version()}", flush=True)
    r = normalize_million.run()
    print("\nnormalize one lead event, 1,000,000 followers, full pipeline (median of "
          f"{r['runs']} runs)")
    print(f"  kernel (columnar cohort, preallocated output)  {r['kernel_median_ms']:8.2f} ms   "
          f"{r['speedup_kernel']:8.0f}x the per-follower Python loop")
    print(f"  levalign.normalize() (allocates its result)     {r['normalize_median_ms']:8.2f} ms   "
          f"{r['speedup_normalize']:8.0f}x")
    print(f"  per-follower Python loop (same algorithm)       {r['python_loop_per_follower_us']:8.2f} us/follower"
          f" = {r['python_loop_extrapolated_s']:.1f} s for 1,000,000")
    print(f"  one-off conversion of the cohort to columns     {r['cohort_conversion_ms']:8.0f} ms")
    print(f"  peak RSS of the benchmark process               {r['peak_rss_mb']:8.0f} MB")
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w", encoding="utf-8") as fh:
            json.dump(r, fh, indent=2)


if __name__ == "__main__":
    main()
