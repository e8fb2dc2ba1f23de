"""Shared helpers for benchmark programs: repeated runs, medians and a plain table."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

__all__ = ["Row", "median_of", "print_table", "quantile"]

Row = tuple[str, str, str]


def median_of(runs: int, fn: Callable[[], float]) -> float:
    """The median of `runs` calls of `fn` (each returns one measurement)."""
    return statistics.median(fn() for _ in range(runs))


def quantile(samples: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of samples, nearest-rank."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def print_table(
    title: str, rows: Sequence[Sequence[str]],
    header: Sequence[str] = ("measure", "median", "note"),
) -> None:
    """Print rows as an aligned text table under a title; every row has as many cells
    as the header (three unless another header is given)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(title)
    line = "  ".join("-" * w for w in widths)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print(line)
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
