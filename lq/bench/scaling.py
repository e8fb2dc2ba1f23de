"""`lq bench scaling`: scaling curves to size a deployment by.

Two sweeps, each point measured `--repeat` times and reported as medians:
- **matcher** (one shard core): changes/s, view deltas/s, p99 per change and memory
  per subscription (RSS and tracemalloc) against `--subs` subscriptions over
  `--subs-per-shape`-fold shared shapes of `lq bench matcher`'s mix, on `--rows` rows;
  each point in a fresh process (`_scaling_matcher`);
- **gateway** (one process): memory per idle and per subscribed WebSocket connection,
  delivered messages/s and fan-out p50/p99 against `--connections` connections, beside
  a bare starlette broadcast on the same stack; a fresh gateway per point
  (`_scaling_gateway`), one shard and Redis (embedded unless `--redis-url`) for all.
The open-files limit is raised to the hard limit first, and a connection count that
does not fit under it is refused, not lowered. Progress goes to stderr, the tables to
stdout, and with `--plot DIR` two PNGs (`_scaling_plot`). Every point is bounded by
`--timeout` seconds and every process started is stopped by the pid it was started as.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

from lq._serving import STACKS, missing, split_stack
from lq.bench import _scaling_gateway, _scaling_matcher
from lq.bench._e2e_plot import missing_package
from lq.bench._table import print_table
from lq.embedded import redis_or_embedded
from lq.gateway_cmd import raise_fd_limit

__all__ = ["configure", "run"]

_PARTS = ("matcher", "gateway")
_FD_MARGIN = 256  # descriptors the bench process needs beside its client connections


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parts", default="matcher,gateway",
                        help="sweeps to run, comma-separated (default matcher,gateway)")
    parser.add_argument("--subs", default="1000,10000,100000",
                        help="subscription counts of the matcher sweep")
    parser.add_argument("--subs-per-shape", type=int, default=10,
                        help="subscriptions per distinct shape (default 10: 1k shapes at 10k)")
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the collection")
    parser.add_argument("--changes", type=int, default=10_000,
                        help="random updates per matcher point (default 10,000)")
    parser.add_argument("--connections", default="1000,5000,10000",
                        help="WebSocket connection counts of the gateway sweep")
    parser.add_argument("--max-messages", type=int, default=200_000,
                        help="deliveries per throughput run, about (default 200,000)")
    parser.add_argument("--stack", default=STACKS[0],
                        help=f"the gateway's server stack, one of {', '.join(STACKS)}")
    parser.add_argument("--repeat", type=int, default=3, help="runs per point (default 3)")
    parser.add_argument("--timeout", type=float, default=900,
                        help="most seconds per point (default 900)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--redis-url", help="Redis to use (default: start an embedded one)")
    parser.add_argument("--plot", metavar="DIR", help="write the PNG plots into DIR")


def _sizes(text: str, flag: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{flag}: whole numbers, comma-separated") from None
    if not sizes or min(sizes) < 1:
        raise ValueError(f"{flag}: at least one size, each at least 1")
    return sorted(set(sizes))


def _checked(args: argparse.Namespace) -> tuple[list[str], list[int], list[int]]:
    """(parts, subscription sizes, connection sizes); ValueError naming a bad flag."""
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not parts or any(p not in _PARTS for p in parts):
        raise ValueError(f"--parts: choose from {', '.join(_PARTS)}")
    for flag, value in (("--repeat", args.repeat), ("--rows", args.rows),
                        ("--changes", args.changes), ("--subs-per-shape", args.subs_per_shape),
                        ("--max-messages", args.max_messages)):
        if value < 1:
            raise ValueError(f"{flag}: at least 1")
    if args.timeout <= 0:
        raise ValueError("--timeout: more than 0 seconds")
    need = missing(*split_stack(args.stack))
    if need is not None:
        raise ValueError(need)
    if args.plot and missing_package():
        raise ValueError("--plot needs matplotlib: pip install 'lq-cluster[bench]'")
    return parts, _sizes(args.subs, "--subs"), _sizes(args.connections, "--connections")


def _medians(points: dict[int, list[dict[str, float]]]) -> dict[int, dict[str, float]]:
    return {n: {k: statistics.median(p[k] for p in runs) for k in runs[0]}
            for n, runs in points.items() if runs}


class _Say:
    """Progress lines on stderr, with the seconds since the start."""

    def __init__(self, started: float) -> None:
        self.started = started

    def __call__(self, text: str) -> None:
        print(f"lq bench scaling [{time.monotonic() - self.started:5.0f} s]: {text}",
              file=sys.stderr, flush=True)


def _matcher(args: argparse.Namespace, sizes: list[int],
             say: _Say) -> dict[int, dict[str, float]]:
    points: dict[int, list[dict[str, float]]] = {n: [] for n in sizes}
    for run in range(args.repeat):
        for n in sizes:
            say(f"matcher: {n:,} subscriptions, run {run + 1}/{args.repeat}")
            shapes = max(1, n // args.subs_per_shape)
            points[n].append(_scaling_matcher.point(n, shapes, args.rows, args.changes,
                                                    args.seed + run, args.timeout))
    return _medians(points)


def _matcher_table(args: argparse.Namespace, med: dict[int, dict[str, float]]) -> None:
    rows = [(f"{n:,}", f"{m['shapes']:,.0f}", f"{m['changes_s']:,.0f}",
             f"{m['deltas_s']:,.0f}", f"{m['p99_us']:,.0f}", f"{m['rss_per_sub']:,.0f}",
             f"{m['traced_per_sub']:,.0f}", f"{m['rss_total'] / 2**20:,.0f}")
            for n, m in sorted(med.items())]
    print_table(
        f"lq bench scaling: matcher (one shard core), {args.rows:,} rows, "
        f"{args.changes:,} random updates a point, medians of {args.repeat} (CPU time)",
        rows, ("subscriptions", "shapes", "changes/s", "view deltas/s", "p99 us/change",
               "RSS B/sub", "traced B/sub", "process RSS MB"))


def _gateway_table(args: argparse.Namespace, med: dict[int, dict[str, float]]) -> None:
    rows = [(f"{n:,}", f"{g['held']:,.0f}", f"{g['idle_kb']:.1f} / {g['bare_kb']:.1f}",
             f"{g['sub_kb']:.1f}", f"{g['rss_mb']:,.0f}",
             f"{g['msgs_s']:,.0f} ({g['writes']:.0f} writes)",
             f"{g['fan_p50']:.1f} / {g['fan_p99']:.1f}",
             f"{g['bare_p50']:.1f} / {g['bare_p99']:.1f}")
            for n, g in sorted(med.items())]
    print_table(
        f"lq bench scaling: one gateway process ({args.stack}), medians of {args.repeat}",
        rows, ("connections", "held", "idle KB/conn (bare)", "subscribed KB/conn",
               "gateway RSS MB", "delivered msgs/s", "fan-out p50 / p99 ms",
               "bare p50 / p99 ms"))


def run(args: argparse.Namespace) -> int:
    try:
        parts, subs, conns = _checked(args)
    except ValueError as e:
        print(f"lq bench scaling: {e}", file=sys.stderr)
        return 2
    raise_fd_limit()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if "gateway" in parts and max(conns) + _FD_MARGIN > soft:
        print(f"lq bench scaling: --connections: {max(conns):,} does not fit under this "
              f"box's open-files limit ({soft:,} soft, {hard:,} hard, less {_FD_MARGIN} "
              "for the bench itself)", file=sys.stderr)
        return 2
    say = _Say(time.monotonic())
    load_before = os.getloadavg()[0]
    matcher = _matcher(args, subs, say) if "matcher" in parts else {}
    gateway: dict[int, dict[str, float]] = {}
    if "gateway" in parts:
        with redis_or_embedded(args.redis_url) as url:
            gateway = _medians(_scaling_gateway.sweep(
                conns, args.repeat, url, args.stack, args.max_messages, args.timeout, say))
    print(f"machine: {os.cpu_count()} cores; load average (1 min) {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after; open files {soft:,} (hard {hard:,}); "
          f"{time.monotonic() - say.started:.0f} s")
    if matcher:
        _matcher_table(args, matcher)
    if gateway:
        if matcher:
            print()
        _gateway_table(args, gateway)
    if args.plot:
        from lq.bench._scaling_plot import plot

        for path in plot(args.plot, matcher, gateway):
            print(f"plot: {path}")
    return 0
