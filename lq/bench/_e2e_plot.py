"""The `--plot` of `lq bench e2e`: write -> client latency percentiles against write rate.

matplotlib comes with the `bench` extra and is imported only here, only when a plot is
asked for (with the Agg backend: no display needed). Each point is the median, over the
runs, of the steps asked for one rate (fixed rates and saturation steps alike), placed
at the rate the writer actually sent, so a rate the system could not take shows where
it ended up.
"""

from __future__ import annotations

import importlib
import math
import statistics
from collections.abc import Sequence

from lq.bench._e2e_step import Step

__all__ = ["missing_package", "plot"]


def missing_package() -> str | None:
    """'matplotlib' when it cannot be imported, else None."""
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        return "matplotlib"
    return None


def _medians(steps: Sequence[Step], kind: str) -> dict[float, tuple[float, float, float]]:
    """Rate sent (the median over the steps asked for one rate) -> p50, p99, max."""
    by_rate: dict[float, list[Step]] = {}
    for step in steps:
        by_rate.setdefault(step.rate, []).append(step)
    out = {}
    for group in by_rate.values():
        cols = []
        for i in range(3):
            values = [v for s in group if not math.isnan(v := getattr(s, kind)[i])]
            cols.append(statistics.median(values) if values else math.nan)
        out[statistics.median(s.achieved for s in group)] = (cols[0], cols[1], cols[2])
    return dict(sorted(out.items()))


def plot(path: str, steps: Sequence[Step], saturation: Sequence[tuple[float, bool]],
         goal: tuple[float, float, float] = (1000.0, 3.0, 15.0)) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for kind, style in (("ws", "-"), ("sse", ":")):
        med = _medians(steps, kind)
        rates = [r for r, v in med.items() if not math.isnan(v[0])]
        if not rates:
            continue
        for i, (name, color) in enumerate((("p50", "tab:blue"), ("p99", "tab:orange"),
                                           ("max", "tab:red"))):
            ax.plot(rates, [med[r][i] for r in rates], style, marker="o", color=color,
                    label=f"{kind.upper()} {name}")
    rate, p50, p99 = goal
    ax.plot([rate], [p50], "k*", markersize=10, label=f"goal at {rate:,.0f}/s: p50 {p50:g} ms")
    ax.plot([rate], [p99], "kx", markersize=10, label=f"goal at {rate:,.0f}/s: p99 {p99:g} ms")
    point = statistics.median(p for p, _ in saturation) if saturation else 0.0
    if point > 0:  # the table's figure: the median over the runs, 0 for "below the first"
        ax.axvline(point, color="grey", linestyle="--", label=f"saturation point {point:,.0f}/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("writes/s sent (median over the runs of each asked rate)")
    ax.set_ylabel("write -> client latency, ms")
    ax.set_title("lq bench e2e: write -> client latency against write rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
