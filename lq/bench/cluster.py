"""`lq bench cluster`: Redis + 2 shard processes + a simulated gateway, end to end.

Measures, on this machine:
- write -> delta latency: a put through the write script until its delta is read from
  the gateway's stream (`lq:delta:<gateway>`), at fixed write rates (100, 1,000, 5,000
  writes/s for `--duration` seconds each), p50 and p99 over every write of the run;
  each write is a new row matched by one changes-mode subscription of its collection.
  The writes come from a separate process (so that this one, reading the stream, does
  not delay them), both timed on the system's monotonic clock;
- changes/s per shard at saturation: both shards are paused (SIGSTOP, well within their
  lease) while a burst of writes piles up in the change logs, then resumed; the rate is
  each shard's share of the burst over the time its `changes` counter took to take it
  all in (median of `--runs` bursts);
- failover: SIGKILL one shard and time until every subscription of its partitions got
  `reset` under a newer epoch and `synced` again (default timings: heartbeat 1 s, TTL
  3 s); SIGTERM likewise (the handoff); the shard is restarted between runs.

Redis is embedded (AOF on, appendfsync everysec, as `lq dev` runs it) unless
`--redis-url` names one, whose database is flushed. Everything runs on this machine:
the writer, the gateway simulation, Redis and both shards share its cores, and on a
small machine that is part of what is measured (as is anything else running).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from cluster.partition import PARTITIONS, owner, partition_of
from cluster.settings import StorageSettings
from lq.bench._shardsim import (
    Decoded,
    Fleet,
    SimGateway,
    SimSub,
    redis_and_logs,
    shard_env,
    taken_over,
)
from lq.bench._table import Row, print_table, quantile
from lq.bench._wait import until
from storage import DeltaFrame, RowStore, Storage, WriteOp, run_batch

__all__ = ["configure", "run"]

SHARDS = ["bench-0", "bench-1"]
_IN_FLIGHT = 512  # most writes awaiting their reply at once


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="Redis to use, flushed (default: start one)")
    parser.add_argument("--rates", default="100,1000,5000",
                        help="write rates for the latency runs, writes/s (default 100,1000,5000)")
    parser.add_argument("--duration", type=float, default=3.0,
                        help="seconds per latency run (default 3)")
    parser.add_argument("--collections", type=int, default=32,
                        help="collections written and subscribed to (default 32)")
    parser.add_argument("--burst", type=int, default=20_000,
                        help="writes per saturation burst (default 20,000)")
    parser.add_argument("--runs", type=int, default=3,
                        help="saturation bursts and failovers of each kind (default 3)")
    parser.add_argument("--logs", help="keep the shards' JSON logs in this directory")


def run(args: argparse.Namespace) -> int:
    with redis_and_logs(args.redis_url, args.logs) as (url, logs):
        rows = asyncio.run(_bench(args, url, logs))
    print_table("lq bench cluster (2 shards, 1 simulated gateway)", rows)
    return 0


# --------------------------------------------------------------------------- helpers


def _collections(count: int) -> list[tuple[str, str]]:
    """`count` collections spread over partitions (and so over both shards)."""
    return [(f"bench{i}", "items") for i in range(count)]


def _row(i: int) -> dict[str, Any]:
    return {"n": i, "status": ("open", "done")[i % 2], "title": f"item {i}"}


@contextlib.contextmanager
def _fleet(url: str, logs: Path, env: dict[str, str]) -> Iterator[Fleet]:
    fleet = Fleet(url, logs, env)
    try:
        yield fleet
    finally:
        fleet.close()


async def _counter(fleet: Fleet, shard: str, name: str = "changes") -> int:
    _, body = await fleet.status(shard)
    return int(body.get(name, -1))


class _Latency:
    """Send times of writes by row id, and the first time each one's delta was read."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.seen: dict[str, float] = {}

    def on_frame(self, frame: DeltaFrame, groups: list[Decoded], now: float) -> None:
        del frame
        for _, msgs in groups:
            for msg in msgs:
                row_id = msg.get("id")
                if isinstance(row_id, str) and row_id not in self.seen:
                    self.seen[row_id] = now  # sent times come later, from the writer

    def samples_ms(self, ids: list[str]) -> list[float]:
        return [(self.seen[i] - self.sent[i]) * 1000 for i in ids if i in self.seen]


async def _paced(store: RowStore, collections: list[tuple[str, str]], rate: float,
                 duration: float, first: int) -> dict[str, float]:
    """Writes at `rate` per second for `duration` seconds (row ids from `w<first>`);
    the monotonic time each was sent, by row id."""
    sent: dict[str, float] = {}
    pending: set[asyncio.Task[Any]] = set()
    ids = itertools.count(first)
    start = time.monotonic()
    done = 0
    while (elapsed := time.monotonic() - start) < duration:
        due = int(elapsed * rate) - done
        for _ in range(max(0, min(due, _IN_FLIGHT - len(pending)))):
            i = next(ids)
            tenant, entity = collections[i % len(collections)]
            row_id = f"w{i}"
            sent[row_id] = time.monotonic()
            task = asyncio.ensure_future(store.put(tenant, entity, row_id, _row(i)))
            pending.add(task)
            task.add_done_callback(pending.discard)
            done += 1
        await asyncio.sleep(0.0005)
    if pending:
        await asyncio.gather(*pending)
    return sent


def writer_main() -> None:
    """The writer process: `url rate duration collections first`; prints the send
    times (JSON) when done."""
    url, rate, duration, count, first = sys.argv[1:6]

    async def main() -> dict[str, float]:
        async with Storage.open(StorageSettings(redis_url=url)) as front:
            # open the pool's connections first: making them as the first writes go
            # out would be counted as those writes' latency
            await asyncio.gather(*(front.client.ping() for _ in range(64)))
            return await _paced(front.rows, _collections(int(count)), float(rate),
                                float(duration), int(first))

    sys.stdout.buffer.write(orjson.dumps(asyncio.run(main())))


async def _write_from_another_process(url: str, rate: float, duration: float, count: int,
                                      first: int) -> dict[str, float]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from lq.bench.cluster import writer_main; writer_main()",
        url, str(rate), str(duration), str(count), str(first),
        stdout=asyncio.subprocess.PIPE,
        env=shard_env(url, "bench-writer"),  # finds this checkout, like the shards
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the writer process failed ({proc.returncode})")
    sent: dict[str, float] = orjson.loads(out)
    return sent


def _all_seen(latency: _Latency, ids: list[str]) -> Callable[[], bool]:
    return lambda: all(i in latency.seen for i in ids)


# --------------------------------------------------------------------------- phases


async def _latency_and_saturation(args: argparse.Namespace, url: str, logs: Path,
                                  front: Storage) -> list[Row]:
    # Long leases here: the saturation bursts pause both shards (SIGSTOP).
    env = {"LQ_LEASE_TTL_MS": "20000", "LQ_MEMBER_TTL_MS": "20000"}
    collections = _collections(args.collections)
    store = front.rows
    latency = _Latency()
    out: list[Row] = []
    first = 0
    with _fleet(url, logs, env) as fleet:
        async with SimGateway(front.settings, "bench-gw", journal=False,
                              on_frame=latency.on_frame) as gw:
            for shard in SHARDS:
                fleet.start(shard)
            await fleet.wait_balanced(front.leases, SHARDS, timeout=60)
            for tenant, entity in collections:
                await gw.subscribe(tenant, {"entity": entity, "mode": "changes"})
            await until(gw.all_synced, 30)
            await _paced(store, collections, 200, 1.0, 10**9)  # warm up
            for rate in [float(r) for r in args.rates.split(",") if r.strip()]:
                sent = await _write_from_another_process(url, rate, args.duration,
                                                         len(collections), first)
                first += len(sent)
                latency.sent.update(sent)
                written = list(sent)
                with contextlib.suppress(TimeoutError):
                    await until(_all_seen(latency, written), 10)
                samples = latency.samples_ms(written)
                lost = len(written) - len(samples)
                note = f"{len(samples):,} writes in {args.duration:g}s"
                note += f", {lost} deltas missing" if lost else ""
                reached = len(written) / args.duration
                if reached < 0.95 * rate:
                    note += f"; writer reached {reached:,.0f}/s only (CPU-bound)"
                goal = " (goal <= {} ms)"
                out.append((f"write -> delta p50 @ {rate:,.0f}/s",
                            f"{quantile(samples, 0.5):.2f} ms",
                            note + (goal.format(2) if rate == 1000 else "")))
                out.append((f"write -> delta p99 @ {rate:,.0f}/s",
                            f"{quantile(samples, 0.99):.2f} ms",
                            goal.format(10).strip() if rate == 1000 else ""))
            rates = await _saturation(args, fleet, store, collections, itertools.count(first))
            errors = gw.errors()
        for shard in SHARDS:
            rate = statistics.median(rates[shard]) if rates[shard] else float("nan")
            out.append((f"changes/s at saturation, {shard}", f"{rate:,.0f}",
                        f"median of {args.runs} bursts of {args.burst:,} writes"))
    if errors:
        out.append(("protocol violations seen", str(len(errors)), errors[0][:60]))
    return out


async def _saturation(args: argparse.Namespace, fleet: Fleet, store: RowStore,
                      collections: list[tuple[str, str]], ids: Iterator[int]
                      ) -> dict[str, list[float]]:
    """Pause both shards, pile up a burst in the logs, resume: per-shard apply rates."""
    share = {s: 0 for s in SHARDS}
    for i in range(args.burst):
        tenant, entity = collections[i % len(collections)]
        share[str(owner(partition_of(tenant, entity), SHARDS))] += 1
    rates: dict[str, list[float]] = {s: [] for s in SHARDS}
    for _ in range(args.runs):
        before = {s: await _counter(fleet, s) for s in SHARDS}
        batches: dict[tuple[str, str], list[WriteOp]] = {}
        for k in range(args.burst):
            i = next(ids)
            tenant, entity = collections[k % len(collections)]
            batches.setdefault((tenant, entity), []).append(
                WriteOp("put", entity, f"s{i}", _row(i)))
        for shard in SHARDS:
            fleet[shard].pause()
        try:
            for (tenant, _), ops in batches.items():
                for at in range(0, len(ops), 500):
                    await run_batch(store, tenant, ops[at:at + 500])
        finally:
            for shard in SHARDS:
                fleet[shard].resume()
        resumed = time.monotonic()
        left = set(SHARDS)
        deadline = resumed + 60
        while left and time.monotonic() < deadline:
            for shard in list(left):
                if await _counter(fleet, shard) - before[shard] >= share[shard]:
                    rates[shard].append(share[shard] / (time.monotonic() - resumed))
                    left.discard(shard)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # let the gateway simulation catch up
    return rates


async def _failovers(args: argparse.Namespace, url: str, logs: Path,
                     front: Storage) -> list[Row]:
    """Default timings (heartbeat 1 s, TTL 3 s): SIGKILL and SIGTERM, `--runs` each."""
    await front.client.flushdb()
    collections = _collections(args.collections)
    store = front.rows
    for n, (tenant, entity) in enumerate(collections):
        ops = [WriteOp("put", entity, f"r{i}", _row(n * 100 + i)) for i in range(100)]
        await run_batch(store, tenant, ops)
    times: dict[str, list[float]] = {"kill": [], "term": []}
    with _fleet(url, logs, {}) as fleet:
        async with SimGateway(front.settings, "bench-gw2", journal=False) as gw:
            for shard in SHARDS:
                fleet.start(shard)
            await fleet.wait_balanced(front.leases, SHARDS, timeout=60)
            for tenant, entity in collections:
                await gw.subscribe(tenant, {"entity": entity, "mode": "changes"})
                await gw.subscribe(tenant, {"entity": entity, "sort": ["-n"], "limit": 20})
            await until(gw.all_synced, 30)
            for k in range(args.runs * 2):
                kind = ("kill", "term")[k % 2]
                victim = SHARDS[k // 2 % 2]
                times[kind].append(await _failover(fleet, gw, front, victim, kind))
                fleet.start(victim)  # the same id again: a new incarnation
                await fleet.wait_balanced(front.leases, SHARDS, timeout=60)
                await until(gw.all_synced, 30)
    return [
        ("failover after SIGKILL", f"{statistics.median(times['kill']):.2f} s",
         f"median of {args.runs}; TTL 3 s (goal <= 4 s)"),
        ("handoff after SIGTERM", f"{statistics.median(times['term']) * 1000:.0f} ms",
         f"median of {args.runs} (goal <= 500 ms)"),
    ]


async def _failover(fleet: Fleet, gw: SimGateway, front: Storage, victim: str,
                    kind: str) -> float:
    holders = await front.leases.holders(range(PARTITIONS))
    old = {p: h.epoch for p, h in holders.items() if h is not None and h.shard == victim}
    affected: list[SimSub] = gw.subs_in(old)
    started = time.monotonic()
    if kind == "kill":
        fleet[victim].kill()
    else:
        fleet[victim].terminate()
    await until(taken_over(affected, old), 30)
    took = time.monotonic() - started
    await fleet[victim].wait_exit(5)
    return took


async def _bench(args: argparse.Namespace, url: str, logs: Path) -> list[Row]:
    front = Storage.open(StorageSettings(redis_url=url))
    try:
        await front.client.flushdb()
        rows: list[Row] = [("machine", f"{os.cpu_count()} cores",
                            f"load average {os.getloadavg()[0]:.2f} at the start")]
        rows += await _latency_and_saturation(args, url, logs, front)
        rows += await _failovers(args, url, logs, front)
        return rows
    finally:
        with contextlib.suppress(Exception):
            await front.client.flushdb()
        await front.aclose()

