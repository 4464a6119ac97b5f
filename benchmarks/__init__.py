"""Benchmarks: `python -m benchmarks ...`; each prints a table and writes JSON (never timed assertions in tests)."""
