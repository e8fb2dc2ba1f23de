"""`lq status`: who is live, what each one serves, and which partitions lack an owner.

It reads one snapshot (`storage.status`) and compares each partition's lease with the
owner computed from the live shards by the shards' own function (`cluster.partition`):
a partition is *unowned* when no shard is live, *unleased* when nobody holds its lease
(it is being claimed, or its owner is stuck), and *moving* when its lease is held by
another shard than its owner (a rebalance in progress, or a stale holder until its
lease expires). Exit status: 0 when Redis answered, 1 when it did not.

Which Redis: `--redis-url`, else `$LQ_REDIS_URL`, else the one of the `lq dev` running
with the state directory (`--state-dir`, else `$LQ_DEV_STATE`, else the default), else
the default URL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from cluster.partition import PARTITIONS, owner
from cluster.settings import StorageSettings, from_env
from lq._devstate import Cluster, find_running, state_dir
from storage import ClusterSnapshot, Storage, redact

__all__ = ["build_report", "configure", "format_table", "run"]

_SHARD_COLUMNS = (
    ("id", "id"), ("state", "state"), ("partitions", "partitions"), ("leases", "leases"),
    ("subscriptions", "subscriptions"), ("views", "views"), ("rows", "rows"),
    ("lag ms", "lag_ms"), ("inc", "inc"),
)
_GATEWAY_COLUMNS = (
    ("id", "id"), ("connections", "connections"), ("subscriptions", "subscriptions"),
    ("resyncs", "resyncs"), ("gaps", "gaps"), ("overflows", "overflows"),
    ("draining", "draining"),
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="Redis URL (default: $LQ_REDIS_URL, else the running "
                                            "lq dev's, else redis://127.0.0.1:6379/0)")
    parser.add_argument("--state-dir", help="lq dev's state directory (default: $LQ_DEV_STATE, "
                                            "else $XDG_STATE_HOME/lq/dev or ~/.local/state/lq/dev)")
    parser.add_argument("--prefix", help="key prefix (default: $LQ_PREFIX or lq)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def ranges(ps: Iterable[int]) -> str:
    """`[0, 1, 2, 7]` -> `0-2,7`."""
    out: list[str] = []
    run: list[int] = []
    for p in sorted(ps):
        if run and p == run[-1] + 1:
            run.append(p)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [p]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(out)


def build_report(
    snap: ClusterSnapshot, redis_url: str, dev: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The status as plain data (what `--json` prints); `dev` is the running lq dev when
    its record named the Redis."""
    live = [m.id for m in snap.shards]
    owners = {p: owner(p, live) for p in range(PARTITIONS)}
    held: dict[str, int] = {}
    unleased, moving = [], []
    for p in range(PARTITIONS):
        lease = snap.leases.get(p)
        if lease is None:
            unleased.append(p)
            continue
        held[lease.shard] = held.get(lease.shard, 0) + 1
        if owners[p] is not None and lease.shard != owners[p]:
            moving.append(p)
    shards = []
    for m in snap.shards:
        c = m.counters
        shards.append({
            "id": m.id,
            "state": c.get("state"),
            "partitions": c.get("partitions"),
            "leases": held.get(m.id, 0),
            "owner_of": sum(1 for o in owners.values() if o == m.id),
            "subscriptions": c.get("subscriptions"),
            "views": c.get("views"),
            "rows": c.get("rows"),
            "lag_ms": c.get("lag_ms"),
            "inc": c.get("inc"),
            "expires_in_ms": m.expires_ms - snap.now_ms,
            "counters": c,
        })
    gateways = []
    for m in snap.gateways:
        c = m.counters
        gateways.append({
            "id": m.id,
            "connections": c.get("connections"),
            "subscriptions": c.get("subscriptions"),
            "resyncs": c.get("resyncs"),
            "gaps": c.get("gaps"),
            "overflows": c.get("overflows"),
            "draining": c.get("draining"),
            "expires_in_ms": m.expires_ms - snap.now_ms,
            "counters": c,
        })
    return {
        **({"dev": dev} if dev is not None else {}),
        "redis": {"url": redact(redis_url), **snap.redis},
        "shards": shards,
        "gateways": gateways,
        "partitions": {
            "total": PARTITIONS,
            "unowned": [p for p, o in owners.items() if o is None],
            "unleased": unleased,
            "moving": moving,
            "stale_holders": sorted(set(held) - set(live)),
        },
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _table(rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...]) -> list[str]:
    cells = [[title for title, _ in columns]]
    cells += [[_cell(row.get(key)) for _, key in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in cells]


def format_table(report: dict[str, Any]) -> str:
    """The report as the readable text `lq status` prints by default."""
    r = report["redis"]
    lines = []
    if "dev" in report:
        dev = report["dev"]
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(dev["started_at"]))
        lines.append(f"lq dev   pid {dev['pid']}, {dev['state']} since {since}, "
                     f"{' '.join(dev['gateway_urls'])}")
    lines.append(f"redis    {r['url']}")
    if "redis_version" in r:
        limit = r.get("maxmemory") or 0
        lines.append(
            f"         version {r['redis_version']}, memory {r.get('used_memory_human', '?')}"
            f" of {'no limit' if not limit else str(limit) + ' bytes'}"
            f" ({r.get('maxmemory_policy', '?')}), AOF {'on' if r.get('aof_enabled') else 'off'}"
        )
    lines.append(f"shards   {len(report['shards'])} live")
    if report["shards"]:
        lines += _table(report["shards"], _SHARD_COLUMNS)
    lines.append(f"gateways {len(report['gateways'])} live")
    if report["gateways"]:
        lines += _table(report["gateways"], _GATEWAY_COLUMNS)
    parts = report["partitions"]
    problems = [
        (name, parts[key])
        for name, key in (("without an owner (no live shard)", "unowned"),
                          ("without a lease", "unleased"),
                          ("leased by another shard than their owner", "moving"))
        if parts[key]
    ]
    if not problems:
        lines.append(f"partitions: all {parts['total']} leased by their owners")
    for name, ps in problems:
        lines.append(f"partitions {name}: {len(ps)} ({ranges(ps)})")
    if parts["stale_holders"]:
        stale = ", ".join(parts["stale_holders"])
        lines.append(f"leases held by shards that are not live: {stale}")
    return "\n".join(lines)


async def _read(settings: StorageSettings) -> ClusterSnapshot:
    async with Storage.open(settings, retries=0) as front:
        return await front.read_snapshot()


def _dev(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[Path, Cluster | None]:
    """The state directory, and its running lq dev when no flag or variable names a Redis."""
    path = state_dir(args.state_dir, env)
    if args.redis_url or env.get("LQ_REDIS_URL"):
        return path, None
    return path, find_running(path)


def run(args: argparse.Namespace) -> int:
    path, dev = _dev(args, os.environ)
    redis_url = dev.redis_url if dev is not None else args.redis_url
    try:
        settings = from_env(StorageSettings, os.environ, redis_url=redis_url,
                            prefix=args.prefix)
    except ValueError as e:
        print(f"lq status: {e}", file=sys.stderr)
        return 2
    try:
        snap = asyncio.run(_read(settings))
    except Exception as e:  # any Redis fault: say so, exit 1
        print(f"lq status: cannot read {redact(settings.redis_url)}: {e}", file=sys.stderr)
        if dev is None and not (args.redis_url or os.environ.get("LQ_REDIS_URL")):
            print(f"lq status: (no lq dev is running with the state directory {path}; "
                  "give --redis-url or LQ_REDIS_URL)", file=sys.stderr)
        return 1
    found = None if dev is None else {
        "pid": dev.pid, "state": dev.state, "started_at": dev.started_at,
        "gateway_urls": dev.gateway_urls, "state_dir": str(path),
    }
    report = build_report(snap, settings.redis_url, found)
    if args.json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(format_table(report))
    return 0
