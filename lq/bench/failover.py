"""`lq bench failover`: failover time against the rows the failed shard held.

For each size in `--rows` (default 10,000, 100,000 and 1,000,000 rows): Redis is
flushed and that many rows are written (through the write script, as any client
would) into `--collections` collections whose partitions the victim shard owns; two
shard processes start (default timings: heartbeat 1 s, lease and membership TTL 3 s),
a simulated gateway (`lq.bench._simgateway`) subscribes twice to every collection (a
window sorted by `-n`, limit 50; a changes-mode query with a filter, limit 50), so the
victim holds every row in memory. Then, `--repeats` times: SIGKILL the victim and time

- *total*: from the SIGKILL until every subscription of its partitions got `reset`
  under a newer epoch and `synced` again (what a client waits for);
- *lease wait*: from the SIGKILL until the survivor holds every one of those leases
  (the membership and lease TTLs: the survivor cannot tell a dead shard from a slow
  one sooner);
- *claims*: the rest, from the last lease taken to the last `synced` read;
- *inside the claims*, from the survivor's `claimed` log events: the seconds each
  claim spent reading the registry, loading collections from Redis (round trips and
  decoding), filling the matcher, building views and snapshots (sort indexes), and
  handing snapshots to the publisher, summed over the claims (which run
  `claim_concurrency` at a time, so the sums overlap in wall time), and the rows they
  loaded (checked against the rows written);

then restart the victim and wait until it has taken its partitions back. `--profile
DIR` records the survivor with py-spy (a flame graph per size, first repeat) from the
SIGKILL to the last `synced`.

Everything runs on this machine (Redis, both shards, the simulated gateway); the table
is medians over the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from cluster.partition import PARTITIONS, owner, partition_of
from cluster.settings import StorageSettings
from lq.bench._shardsim import Fleet, SimGateway, SimSub, redis_and_logs, taken_over
from lq.bench._table import Row, print_table
from lq.bench._wait import until
from storage import RowStore, Storage, WriteOp, run_batch

__all__ = ["configure", "run"]

VICTIM, SURVIVOR = "fo-0", "fo-1"
SHARDS = [VICTIM, SURVIVOR]
PHASES = ("registry", "load", "fill", "snapshot", "send")
_BATCH = 500  # writes per pipelined batch while filling
_FILLERS = 8  # collections filled at once


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s.replace("_", "")) for s in text.split(",") if s.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"a list of positive row counts, not {text!r}")
    return sizes


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"at least 1, not {value}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="Redis to use, flushed (default: start one)")
    parser.add_argument("--rows", type=_sizes, default=_sizes("10000,100000,1000000"),
                        help="rows held by the failed shard, one run each "
                             "(default 10000,100000,1000000)")
    parser.add_argument("--collections", type=_positive, default=32,
                        help="collections holding those rows, each in its own partition "
                             "of the failed shard (default 32)")
    parser.add_argument("--repeats", type=_positive, default=3,
                        help="failovers per size (default 3)")
    parser.add_argument("--ttl-ms", type=_positive, default=3000,
                        help="lease and membership TTL of the shards (default 3000)")
    parser.add_argument("--claim-concurrency", type=_positive,
                        help="the shards' LQ_CLAIM_CONCURRENCY (default: theirs)")
    parser.add_argument("--timeout", type=_positive,
                        help="seconds a failover may take before it counts as failed "
                             "(default 60 + rows / 5,000)")
    parser.add_argument("--profile", help="write a py-spy flame graph of the survivor "
                                          "per size into this directory")
    parser.add_argument("--logs", help="keep the shards' JSON logs in this directory")


def run(args: argparse.Namespace) -> int:
    if args.collections > PARTITIONS // 2:
        print(f"--collections: at most {PARTITIONS // 2}", file=sys.stderr)
        return 2
    with redis_and_logs(args.redis_url, args.logs) as (url, logs):
        rows = asyncio.run(_bench(args, url, logs))
    title = f"lq bench failover (2 shards, TTL {args.ttl_ms} ms, medians of {args.repeats})"
    print_table(title, rows)
    return 0


# --------------------------------------------------------------------------- data


def victim_collections(count: int) -> list[tuple[str, str]]:
    """`count` collections in distinct partitions that HRW gives to the victim."""
    found: list[tuple[str, str]] = []
    seen: set[int] = set()
    i = 0
    while len(found) < count:
        tenant, entity = f"fo{i}", "items"
        p = partition_of(tenant, entity)
        if p not in seen and owner(p, SHARDS) == VICTIM:
            seen.add(p)
            found.append((tenant, entity))
        i += 1
    return found


def _row(i: int) -> dict[str, Any]:
    return {"n": i, "status": ("open", "done", "late")[i % 3], "title": f"item {i}",
            "owner": f"user{i % 97}", "ts": 1_700_000_000_000 + i}


async def _fill(store: RowStore, collections: list[tuple[str, str]], rows: int) -> None:
    """`rows` rows spread evenly over `collections`, through the write script."""
    slots = asyncio.Semaphore(_FILLERS)

    async def one(k: int, tenant: str, entity: str) -> None:
        ids = range(k, rows, len(collections))
        async with slots:
            for lo in range(0, len(ids), _BATCH):
                ops = [WriteOp("put", entity, f"r{i}", _row(i)) for i in ids[lo:lo + _BATCH]]
                await run_batch(store, tenant, ops)

    await asyncio.gather(*(one(k, t, e) for k, (t, e) in enumerate(collections)))


def _queries(entity: str) -> list[dict[str, Any]]:
    return [{"entity": entity, "sort": ["-n"], "limit": 50},
            {"entity": entity, "mode": "changes", "where": {"status": "late"}, "limit": 50}]


# --------------------------------------------------------------------------- timing


async def _leases_moved(front: Storage, old: dict[int, int], timeout: float) -> None:
    """Until the survivor holds every lease of `old` under a newer epoch."""
    deadline = time.monotonic() + timeout
    while True:
        holders = await front.leases.holders(list(old))
        if all(h is not None and h.shard == SURVIVOR and h.epoch > old[p]
               for p, h in holders.items()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"leases not taken over within {timeout}s")
        await asyncio.sleep(0.01)


async def _epochs(front: Storage, shard: str) -> dict[int, int]:
    holders = await front.leases.holders(range(PARTITIONS))
    return {p: h.epoch for p, h in holders.items() if h is not None and h.shard == shard}


@contextlib.asynccontextmanager
async def _profiled(out: Path | None, pid: int) -> AsyncIterator[None]:
    """py-spy records `pid` for the block (nothing when `out` is None)."""
    if out is None:
        yield
        return
    spy = subprocess.Popen(
        [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid),
         "--rate", "200", "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await asyncio.sleep(0.5)  # attached before the kill
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            await asyncio.to_thread(spy.wait, 60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


class _Run:
    """One failover's figures, in seconds (phases summed over the claims); `losses`:
    leases the survivor lost or let lapse meanwhile; `ok`: all synced in time."""

    def __init__(self, total: float, lease: float, phases: dict[str, float],
                 rows: int, claims: int, losses: int, ok: bool = True) -> None:
        self.total, self.lease = total, lease
        self.phases, self.rows, self.claims = phases, rows, claims
        self.losses, self.ok = losses, ok


def _losses(fleet: Fleet) -> int:
    """Leases the survivor has lost or let lapse so far (its log's warnings)."""
    return sum(1 for ev in fleet[SURVIVOR].events()
               if ev.get("event") in ("lease_lost", "lease_lapsed"))


def _claimed(fleet: Fleet, old: dict[int, int]) -> list[dict[str, Any]]:
    """The survivor's `claimed` events for the partitions of `old`, under newer epochs."""
    return [ev for ev in fleet[SURVIVOR].events()
            if ev.get("event") == "claimed" and ev.get("p") in old
            and int(ev.get("epoch", 0)) > old[int(ev["p"])]]


async def _settled_claims(fleet: Fleet, old: dict[int, int], quiet: float = 0.3,
                          most: float = 3.0) -> list[dict[str, Any]]:
    """`_claimed` once the survivor's log has shown no new one for `quiet` seconds (at
    most `most`): a claim logs after it sent its snapshots, so the subscriptions can be
    synced before its line is written."""
    deadline = time.monotonic() + most
    events = _claimed(fleet, old)
    still = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - still < quiet:
        await asyncio.sleep(0.05)
        now = _claimed(fleet, old)
        if len(now) != len(events):
            events, still = now, time.monotonic()
    return events


async def _failover(fleet: Fleet, gw: SimGateway, front: Storage, timeout: float,
                    profile: Path | None) -> _Run:
    old = await _epochs(front, VICTIM)
    affected: list[SimSub] = gw.subs_in(old)
    lost_before = _losses(fleet)
    lease = total = float("nan")
    ok = True
    async with _profiled(profile, fleet[SURVIVOR].pid):
        started = time.monotonic()
        fleet[VICTIM].kill()
        try:
            await _leases_moved(front, old, timeout)
            lease = time.monotonic() - started
            await until(taken_over(affected, old), timeout)
            total = time.monotonic() - started
        except TimeoutError:
            ok = False
    await fleet[VICTIM].wait_exit(5)
    events = await _settled_claims(fleet, old)
    phases = {k: sum(float(ev.get(f"{k}_s", 0.0)) for ev in events) for k in PHASES}
    return _Run(total, lease, phases, sum(int(ev.get("rows", 0)) for ev in events),
                len(events), _losses(fleet) - lost_before, ok)


async def _restart(fleet: Fleet, gw: SimGateway, front: Storage, timeout: float) -> None:
    """The victim again (a new incarnation), until it serves its partitions again."""
    held = await _epochs(front, SURVIVOR)
    fleet.start(VICTIM)
    await fleet.wait_balanced(front.leases, SHARDS, timeout=timeout)
    back = {p: e for p, e in held.items() if owner(p, SHARDS) == VICTIM}
    await until(taken_over(gw.subs_in(back), back), timeout)


# --------------------------------------------------------------------------- runs


async def _size(args: argparse.Namespace, url: str, logs: Path, front: Storage,
                rows: int) -> list[Row]:
    await front.client.flushdb()
    collections = victim_collections(args.collections)
    began = time.monotonic()
    await _fill(front.rows, collections, rows)
    print(f"{rows:,} rows written in {time.monotonic() - began:.1f} s", file=sys.stderr,
          flush=True)
    env = {"LQ_LEASE_TTL_MS": str(args.ttl_ms), "LQ_MEMBER_TTL_MS": str(args.ttl_ms)}
    if args.claim_concurrency:
        env["LQ_CLAIM_CONCURRENCY"] = str(args.claim_concurrency)
    timeout = args.timeout or 60 + rows / 5_000  # generous: a 2-core box shared
    runs: list[_Run] = []
    fleet = Fleet(url, logs, env)
    try:
        async with SimGateway(front.settings, f"fo-gw-{rows}", journal=False) as gw:
            for shard in SHARDS:
                fleet.start(shard)
            await fleet.wait_balanced(front.leases, SHARDS, timeout=60)
            for tenant, entity in collections:
                for query in _queries(entity):
                    await gw.subscribe(tenant, query)
            await until(gw.all_synced, timeout)
            for k in range(args.repeats):
                profile = None
                if args.profile and k == 0:
                    profile = Path(args.profile) / f"failover-{rows}.svg"
                    profile.parent.mkdir(parents=True, exist_ok=True)
                run = await _failover(fleet, gw, front, timeout, profile)
                runs.append(run)
                print(f"{rows:,} rows, failover {k + 1}: {run.total:.2f} s, survivor lost"
                      f" {run.losses} leases", file=sys.stderr, flush=True)
                if not run.ok:
                    break  # the survivor never settled: nothing to repeat from
                await _restart(fleet, gw, front, timeout)
            errors = gw.errors()
    finally:
        fleet.close()
    return _rows(args, rows, runs, errors)


def _rows(args: argparse.Namespace, rows: int, runs: list[_Run], errors: list[str]) -> list[Row]:
    failed = [r for r in runs if not r.ok]
    if failed:
        return [(f"{rows:,} rows: SIGKILL -> all synced", "NOT synced",
                 f"within {args.timeout or 60 + rows / 5_000:g} s; the survivor lost"
                 f" {failed[0].losses} leases meanwhile")]

    def med(get: Callable[[_Run], float]) -> float:
        return statistics.median(get(r) for r in runs)

    total, lease = med(lambda r: r.total), med(lambda r: r.lease)
    goal = args.ttl_ms / 1000 + 1
    note = f"goal <= TTL + 1 s = {goal:g} s" if rows == 100_000 else ""
    loaded = sorted({r.rows for r in runs})
    claims = max(r.claims for r in runs)
    check = "every row" if loaded == [rows] else f"rows loaded {loaded}, NOT {rows:,}"
    split = " / ".join(f"{statistics.median(r.phases[k] for r in runs):.2f}" for k in PHASES)
    out: list[Row] = [
        (f"{rows:,} rows: SIGKILL -> all synced", f"{total:.2f} s", note),
        (f"{rows:,} rows: lease TTL wait", f"{lease:.2f} s", "SIGKILL -> last lease taken"),
        (f"{rows:,} rows: claims", f"{total - lease:.2f} s",
         f"last lease -> last synced; {rows / max(total - lease, 1e-9):,.0f} rows/s"),
        (f"{rows:,} rows: in claims " + " / ".join(PHASES), split + " s",
         f"summed over {claims} claims ({check})"),
        (f"{rows:,} rows: leases the survivor lost", str(max(r.losses for r in runs)),
         "most in one failover (0: its renewals kept up)"),
    ]
    if errors:
        out.append((f"{rows:,} rows: protocol violations", str(len(errors)), errors[0][:60]))
    return out


async def _bench(args: argparse.Namespace, url: str, logs: Path) -> list[Row]:
    front = Storage.open(StorageSettings(redis_url=url))
    try:
        rows: list[Row] = [("machine", f"{os.cpu_count()} cores",
                            f"load average {os.getloadavg()[0]:.2f} at the start")]
        for size in args.rows:
            rows += await _size(args, url, logs, front, size)
        return rows
    finally:
        with contextlib.suppress(Exception):
            await front.client.flushdb()
        await front.aclose()
