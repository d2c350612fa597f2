"""Benchmarks: ``python -m bench.<name>``; each prints ratios measured in the same run."""
