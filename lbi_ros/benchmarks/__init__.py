"""Benchmarks behind ``lbi bench``: whole-run medians and p99, ratios within one run."""
