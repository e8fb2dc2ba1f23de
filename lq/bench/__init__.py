"""Benchmarks: programs that print a table of medians (never timed tests)."""
