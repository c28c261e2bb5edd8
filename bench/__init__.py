"""Benchmarks: ``make bench`` (``python -m bench``). Figures are medians and ratios to a
baseline measured in the same run, because shared machines are noisy."""
