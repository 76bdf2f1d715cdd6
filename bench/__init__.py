"""Benchmarks for mugai: `python -m bench.run [--quick] [--only NAME...]`.

Every benchmark measures a baseline in the same run and reports the ratio first; numbers are
medians over repeats with their spread, because the machines are small and noisy.
"""
