"""`lq chaos`: flags, progress lines, the table, and the exit status.

Invariants: the flags map one to one onto `ChaosSettings` (nothing else decides a run),
and the exit status is 0 only when `report.failures` is empty: 1 for a failed proof, 2
for bad flags or a missing package. This module imports the standard library and the
pure parts only; the runner (which needs the `bench` extra: websockets, httpx) is
imported when a run starts, and a missing package is named with the extra to install.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from pathlib import Path
from types import ModuleType

from lq.chaos.schedule import ALL_KINDS, CLUSTER_ONLY, STANDALONE_ONLY
from lq.chaos.settings import TIMINGS, ChaosSettings

__all__ = ["configure", "run", "settings_from"]

_D = ChaosSettings()


def configure(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--duration", type=float, default=_D.duration,
        help=f"seconds of load with faults (default {_D.duration:g})")
    add("--seed", type=int, default=_D.seed, help="seed of the faults, writes and queries")
    add("--shards", type=int, default=_D.shards, help=f"shards at the start ({_D.shards})")
    add("--gateways", type=int, default=_D.gateways, help=f"gateways ({_D.gateways})")
    add("--clients", type=int, default=_D.clients,
        help=f"clients, WebSocket, SSE and long polling in turn ({_D.clients})")
    add("--subs", type=int, default=_D.subs,
        help=f"subscriptions per WebSocket client ({_D.subs}; SSE and poll hold one)")
    add("--faults", default="all",
        help="comma-separated kinds, or 'all' (those the Redis mode allows), or 'none': "
             + ", ".join(ALL_KINDS))
    add("--redis", choices=["standalone", "cluster"], default=_D.redis,
        help="one Redis with AOF, or 3 masters with a replica each (default standalone)")
    add("--fsync", choices=["always", "everysec"], default=_D.fsync,
        help="AOF appendfsync: with always, a lost acknowledged write on standalone fails "
             "the run; with everysec it is a reported figure (default always)")
    add("--rate", type=float, default=_D.rate, help=f"writes per second ({_D.rate:g})")
    add("--tenants", type=int, default=_D.tenants, help=f"tenants ({_D.tenants})")
    add("--ids", type=int, default=_D.ids, help=f"row ids per collection ({_D.ids})")
    add("--timings", choices=sorted(TIMINGS), default=_D.timings,
        help="heartbeats and leases: fast (test suite: lease 2 s) or default (as shipped: "
             "lease 3 s); default fast")
    add("--every", type=float, default=_D.every,
        help=f"smallest spacing of faults in seconds ({_D.every:g})")
    add("--quiet", type=float, default=_D.quiet,
        help="seconds without writes or faults before the final check (at least the "
             "longest TTL plus 4)")
    add("--progress", type=float, default=_D.progress,
        help=f"seconds between progress lines ({_D.progress:g})")
    add("--logs", help="keep the run directory (process logs) under this directory")


def settings_from(args: argparse.Namespace) -> ChaosSettings | str:
    """The run's settings, or what is wrong with the flags."""
    if args.faults == "all":
        skip = CLUSTER_ONLY if args.redis == "standalone" else STANDALONE_ONLY
        kinds = tuple(k for k in ALL_KINDS if k not in skip)
    elif args.faults == "none":
        kinds = ()
    else:
        kinds = tuple(k.strip() for k in args.faults.split(",") if k.strip())
    unknown = [k for k in kinds if k not in ALL_KINDS]
    if unknown:
        return f"unknown fault kinds {unknown}; choose from {', '.join(ALL_KINDS)}"
    wrong = STANDALONE_ONLY if args.redis == "cluster" else CLUSTER_ONLY
    if set(kinds) & wrong:
        return f"{sorted(set(kinds) & wrong)} cannot run on --redis {args.redis}"
    if args.shards < 1 or args.gateways < 1 or args.clients < 1 or args.tenants < 1:
        return "--shards, --gateways, --clients and --tenants must be at least 1"
    if "gateway" in kinds and args.gateways < 2:
        return "the gateway fault needs --gateways 2 or more (clients move to another)"
    if args.duration < 10 or args.rate <= 0:
        return "--duration must be at least 10 and --rate positive"
    return ChaosSettings(
        duration=args.duration, seed=args.seed, shards=args.shards, gateways=args.gateways,
        clients=args.clients, subs=args.subs, faults=kinds, redis=args.redis,
        fsync=args.fsync, rate=args.rate, tenants=args.tenants, ids=args.ids,
        timings=args.timings, quiet=args.quiet, every=args.every, progress=args.progress,
        logs=Path(args.logs) if args.logs else None)


def _say(line: str) -> None:
    print(line, flush=True)


def _load() -> tuple[ModuleType, ModuleType] | str:
    """The runner and report modules, or the missing `bench` extra package's name."""
    from lq.cli import BENCH_EXTRA, extra_packages

    try:
        return (importlib.import_module("lq.chaos.runner"),
                importlib.import_module("lq.chaos.report"))
    except ModuleNotFoundError as e:
        missing = (e.name or "").split(".")[0]
        if missing.lower() not in extra_packages(BENCH_EXTRA):
            raise
        return missing


def run(args: argparse.Namespace) -> int:
    s = settings_from(args)
    if isinstance(s, str):
        print(f"lq chaos: {s}", file=sys.stderr)
        return 2
    loaded = _load()
    if isinstance(loaded, str):
        from lq.cli import BENCH_EXTRA, DISTRIBUTION

        print(f"lq chaos needs {loaded!r}, which comes with the {BENCH_EXTRA!r} extra:\n"
              f"  pip install '{DISTRIBUTION}[{BENCH_EXTRA}]'    (from a checkout: "
              f"pip install '.[{BENCH_EXTRA}]')", file=sys.stderr)
        return 2
    runner, report = loaded
    if s.logs is not None:
        s.logs.mkdir(parents=True, exist_ok=True)
    try:
        out = asyncio.run(runner.run_chaos(s, _say))
    except ValueError as e:
        print(f"lq chaos: {e}", file=sys.stderr)
        return 2
    report.print_report(out)
    return 1 if report.failures(out) else 0
