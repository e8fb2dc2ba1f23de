"""`lq bench storage`: the write path against its physical ceiling, loads and queries.

Each measure is the median of `--runs` runs. The ceiling is a pipeline of a minimal
Lua script that only does HSET + XADD (one round trip per write, no checks) with the
same rows and batch size, so the ratio compares the real write path with what Redis
and this client can do at all on this machine. Pipelined and ceiling runs alternate,
and the ratio is the median of each pair's ratio: on a shared machine the neighbours'
load drifts over a run, and two phases run one after the other would each see a
different machine. Each pair also reports where a write's time goes: this process's
CPU time and the Redis server's (`INFO cpu`) per write; the wall time beyond their sum
is waiting (for the network, or for a core on a busy machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cluster import codec
from cluster.query import CursorSigner, parse_query
from cluster.settings import StorageSettings
from lq.bench._table import Row, print_table, quantile
from lq.embedded import redis_or_embedded
from storage import RowStore, Storage, WriteOp, run_batch

__all__ = ["configure", "run"]

_MINIMAL = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'i', ARGV[1], 'd', ARGV[2])
"""
_STATUSES = ["open", "doing", "done", "blocked"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="Redis to use (default: start an embedded one)")
    parser.add_argument("--runs", type=int, default=5, help="runs per measure (default 5)")
    parser.add_argument("--writes", type=int, default=20_000, help="writes per pipelined run")
    parser.add_argument("--single", type=int, default=2_000, help="writes per single-write run")
    parser.add_argument("--batch", type=int, default=500, help="writes per pipeline")
    parser.add_argument("--rows", type=int, default=100_000, help="collection size for loads")


def _row(rng: random.Random, i: int) -> dict[str, Any]:
    return {
        "title": f"task {i}: {rng.choice(['fix', 'write', 'review', 'ship'])} the thing",
        "status": rng.choice(_STATUSES),
        "priority": rng.randint(1, 5),
        "due": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "owner": {"name": rng.choice(["ada", "bob", "cy", "dee"]), "team": "core"},
        "tags": rng.sample(["a", "b", "c", "d", "e"], 2),
        "estimate": round(rng.random() * 10, 2),
    }


async def _measure(args: argparse.Namespace, url: str) -> list[Row]:
    front = Storage.open(StorageSettings(redis_url=url))
    client, store = front.client, front.rows
    rng = random.Random(7)
    rows = [_row(rng, i) for i in range(max(args.writes, args.single))]
    try:
        await client.flushdb()
        single = await _async_median(args.runs, lambda: _single(store, rows[: args.single]))
        written = rows[: args.writes]
        pairs: list[tuple[Spent, Spent]] = []
        for _ in range(args.runs):
            await client.flushdb()
            pairs.append((
                await _spent(client, len(written), lambda: _piped(store, written, args.batch)),
                await _spent(client, len(written), lambda: _ceiling(client, written, args.batch)),
            ))
        piped = statistics.median(p.rate for p, _ in pairs)
        ceiling = statistics.median(c.rate for _, c in pairs)
        ratio = statistics.median(p.rate / c.rate for p, c in pairs)
        await client.flushdb()
        await _fill(store, args.rows, args.batch, rng)
        load = await _async_median(args.runs, lambda: _load(front, args.rows))
        latencies = await _query_latencies(front, max(args.runs, 10))
    finally:
        with contextlib.suppress(Exception):
            await client.flushdb()
        await front.aclose()
    return [
        ("single writes/s (await each put)", f"{single:,.0f}", f"{args.single} puts a run"),
        ("pipelined writes/s (write script)", f"{piped:,.0f}", f"run_batch of {args.batch}"),
        ("ceiling writes/s (HSET+XADD script)", f"{ceiling:,.0f}", "same rows, same batches"),
        ("pipelined / ceiling", f"{ratio:.2f}",
         "goal >= 0.6; median of pairs run back to back: "
         + " ".join(f"{p.rate / c.rate:.2f}" for p, c in pairs)),
        _where("pipelined", [p for p, _ in pairs]),
        _where("ceiling", [c for _, c in pairs]),
        (f"collection load rows/s ({args.rows:,} rows)", f"{load:,.0f}", "HSCAN + log replay"),
        (
            "one-shot query p50 ms (limit 50)",
            f"{quantile(latencies, 0.5):.1f}",
            f"over {args.rows:,} rows, where + sort",
        ),
        (
            "one-shot query p99 ms (limit 50)",
            f"{quantile(latencies, 0.99):.1f}",
            f"{len(latencies)} queries",
        ),
    ]


@dataclass(frozen=True, slots=True)
class Spent:
    """One run: writes/s, and microseconds per write of wall, client CPU, Redis CPU."""

    rate: float
    wall: float
    client: float
    redis: float


async def _redis_cpu(client: Any) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _spent(client: Any, writes: int, fn: Callable[[], Awaitable[float]]) -> Spent:
    server, cpu, wall = await _redis_cpu(client), time.process_time(), time.perf_counter()
    rate = await fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    server = await _redis_cpu(client) - server
    per = 1e6 / writes
    return Spent(rate, wall * per, cpu * per, server * per)


def _where(name: str, runs: list[Spent]) -> Row:
    wall, client, redis = (statistics.median(getattr(r, f) for r in runs)
                           for f in ("wall", "client", "redis"))
    return (f"{name}: us per write", f"{wall:,.1f}",
            f"client CPU {client:.1f}, Redis CPU {redis:.1f}, "
            f"waiting {max(0.0, wall - client - redis):.1f}")


async def _async_median(runs: int, fn: Callable[[], Awaitable[float]]) -> float:
    return statistics.median([await fn() for _ in range(runs)])


async def _single(store: RowStore, rows: list[dict[str, Any]]) -> float:
    start = time.perf_counter()
    for i, row in enumerate(rows):
        await store.put("bench", "single", f"r{i}", row)
    return len(rows) / (time.perf_counter() - start)


async def _piped(store: RowStore, rows: list[dict[str, Any]], batch: int) -> float:
    start = time.perf_counter()
    for lo in range(0, len(rows), batch):
        ops = [
            WriteOp("put", "piped", f"r{lo + i}", row)
            for i, row in enumerate(rows[lo : lo + batch])
        ]
        await run_batch(store, "bench", ops)
    return len(rows) / (time.perf_counter() - start)


async def _ceiling(client: Any, rows: list[dict[str, Any]], batch: int) -> float:
    sha = await client.script_load(_MINIMAL)
    start = time.perf_counter()
    for lo in range(0, len(rows), batch):
        pipe = client.pipeline(transaction=False)
        for i, row in enumerate(rows[lo : lo + batch]):
            payload = codec.encode(row)
            pipe.evalsha(
                sha, 2, "bench:ceil:{1}", "bench:ceil:log:{1}", f"r{lo + i}", payload, 20000
            )
        await pipe.execute()
    return len(rows) / (time.perf_counter() - start)


async def _fill(store: RowStore, n: int, batch: int, rng: random.Random) -> None:
    print(f"filling a collection of {n:,} rows ...", flush=True)
    for lo in range(0, n, batch):
        ops = [
            WriteOp("put", "big", f"r{lo + i}", _row(rng, lo + i))
            for i in range(min(batch, n - lo))
        ]
        await run_batch(store, "bench", ops)


async def _load(front: Storage, n: int) -> float:
    start = time.perf_counter()
    loaded = await front.log.load_collection("bench", "big")
    elapsed = time.perf_counter() - start
    assert len(loaded.rows) == n, (len(loaded.rows), n)
    return n / elapsed


async def _query_latencies(front: Storage, count: int) -> list[float]:
    signer = CursorSigner(b"bench-cursor-key-0123456789")
    query = parse_query(
        {
            "where": {"status": {"$in": ["open", "doing"]}, "priority": {"$gte": 2}},
            "sort": ["-priority", "due"],
            "limit": 50,
        },
        signer=signer,
        entity="big",
    )
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        page = await front.query("bench", query, signer)
        samples.append((time.perf_counter() - start) * 1000)
        assert len(page.rows) == 50
    return samples


def run(args: argparse.Namespace) -> int:
    with redis_or_embedded(args.redis_url) as url:
        table = asyncio.run(_measure(args, url))
    print_table(f"lq bench storage (medians of {args.runs} runs)", table)
    return 0
