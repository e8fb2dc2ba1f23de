"""The `--plot DIR` of `lq bench scaling`: two PNGs of the sweep's medians.

`scaling-matcher.png`: changes/s (and view deltas/s) against subscriptions, beside
memory per subscription (RSS and tracemalloc). `scaling-gateway.png`: delivered
messages/s and fan-out p99 (gateway and bare broadcast) against connections, beside
memory per connection (idle, subscribed, bare). Both axes of the size are logarithmic.
matplotlib (the `bench` extra) is imported only here, with the Agg backend.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["FILES", "plot"]

FILES = ("scaling-matcher.png", "scaling-gateway.png")

Medians = dict[int, dict[str, float]]


def plot(directory: str, matcher: Medians, gateway: Medians) -> list[Path]:
    """Write the plots of the parts measured (an empty part is left out); their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    panels = (
        (matcher, FILES[0], "subscriptions (one shard's matcher)",
         (("changes_s", "changes/s"), ("deltas_s", "view deltas/s")),
         "per second (CPU time)",
         (("rss_per_sub", "RSS per subscription"),
          ("traced_per_sub", "tracemalloc per subscription")), "bytes"),
        (gateway, FILES[1], "WebSocket connections (one gateway process)",
         (("msgs_s", "delivered messages/s"),), "messages/s",
         (("idle_kb", "idle connection"), ("sub_kb", "subscribed connection"),
          ("bare_kb", "bare broadcast, idle")), "KB per connection"),
    )
    for medians, name, xlabel, rates, rate_label, memory, memory_label in panels:
        if not medians:
            continue
        sizes = sorted(medians)
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110)
        for key, label in rates:
            left.plot(sizes, [medians[n][key] for n in sizes], marker="o", label=label)
        left.set_ylabel(rate_label)
        if name == FILES[1]:
            lat = left.twinx()
            for key, label, style in (("fan_p99", "fan-out p99 (gateway)", "r--"),
                                      ("bare_p99", "fan-out p99 (bare)", "k:")):
                lat.plot(sizes, [medians[n][key] for n in sizes], style, marker="x",
                         label=label)
            lat.set_ylabel("fan-out p99, ms")
            lat.set_ylim(bottom=0)
            lat.legend(loc="lower right", fontsize=8)
        for key, label in memory:
            right.plot(sizes, [medians[n][key] for n in sizes], marker="o", label=label)
        right.set_ylabel(memory_label)
        right.set_ylim(bottom=0)
        for ax in (left, right):
            ax.set_xscale("log")
            ax.minorticks_off()
            ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
            ax.set_xlabel(xlabel)
            ax.grid(True, alpha=0.3)
        left.set_ylim(bottom=0)
        left.legend(loc="upper left", fontsize=8)
        right.legend(fontsize=8)
        fig.suptitle(f"lq bench scaling: {xlabel} (medians)")
        fig.tight_layout()
        path = out / name
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
