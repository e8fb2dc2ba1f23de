"""`lq bench oneshot`: `POST /v1/entities/{e}/query` answered from the owner shard's
memory against the scan, on the same data in the same run, through real processes.

Redis (embedded unless `--redis-url`), one shard and one gateway (`_e2e_cluster`); a
collection of `--rows` rows written through the storage front; an SSE subscription with
the queries' sort makes the shard load it and index that sort. Then `--queries` one-shot
queries (limit 50, a filter and that sort, every page's cursor followed from the top)
are timed over HTTP twice: with the shard up (answered from memory, checked on the
gateway's `lq_oneshot_queries` metric), then after the shard is stopped (SIGTERM: it
leaves membership at once, so the gateway scans without asking). Both runs must return
the same bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import time
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from cluster.settings import StorageSettings
from gateway.auth import issue_token
from lq.bench._e2e_cluster import running
from lq.bench._table import Row, print_table, quantile
from lq.embedded import redis_or_embedded
from storage import Storage, WriteOp, run_batch

__all__ = ["configure", "run"]

_SECRET = "bench-secret-" + "0123456789abcdef" * 3
_ENTITY = "big"
_QUERY: dict[str, Any] = {
    "where": {"status": {"$in": ["open", "doing"]}, "priority": {"$gte": 2}},
    "sort": ["-priority", "due"],
    "limit": 50,
}
_STATUSES = ["open", "doing", "done", "blocked"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="Redis to use (default: start an embedded one)")
    parser.add_argument("--rows", type=int, default=100_000, help="collection size")
    parser.add_argument("--queries", type=int, default=200, help="queries timed per path")


def _row(rng: random.Random, i: int) -> dict[str, Any]:
    return {"title": f"task {i}", "status": rng.choice(_STATUSES),
            "priority": rng.randint(1, 5),
            "due": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"}


async def _fill(url: str, prefix: str, n: int) -> None:
    front = Storage.open(StorageSettings(redis_url=url, prefix=prefix))
    rng = random.Random(16)
    try:
        for start in range(0, n, 1000):
            ops = [WriteOp("put", _ENTITY, f"r{i:07d}", _row(rng, i))
                   for i in range(start, min(n, start + 1000))]
            await run_batch(front.rows, "bench", ops)
    finally:
        await front.aclose()


async def _timed(http: httpx.AsyncClient, count: int) -> tuple[list[float], list[bytes]]:
    """`count` queries, each the next page (from the top again after the last)."""
    samples: list[float] = []
    bodies: list[bytes] = []
    after = None
    for _ in range(count):
        start = time.perf_counter()
        r = await http.post(f"/v1/entities/{_ENTITY}/query", json={**_QUERY, "after": after})
        samples.append((time.perf_counter() - start) * 1000)
        r.raise_for_status()
        bodies.append(r.content)
        after = orjson.loads(r.content)["next"]
    return samples, bodies


def _memory_answers(metrics: str) -> float:
    return sum(float(v) for v in re.findall(
        r'^lq_oneshot_queries_total\{path="memory",reason=""\} (\S+)$', metrics, re.M))


async def _measure(args: argparse.Namespace, url: str, port: int, prefix: str,
                   shard_pid: int) -> list[Row]:
    await _fill(url, prefix, args.rows)
    token = issue_token(_SECRET, "bench", "lq:read:* lq:write:*", ttl=7200)
    headers = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
        q = quote(orjson.dumps({"entity": _ENTITY, **_QUERY, "limit": 1}).decode())
        async with http.stream("GET", f"/v1/sse?q={q}") as sse:
            async for line in sse.aiter_lines():  # the snapshot: the collection is loaded
                if line.startswith("event: synced"):
                    break
            before = _memory_answers((await http.get("/metrics")).text)
            memory, from_memory = await _timed(http, args.queries)
            answered = _memory_answers((await http.get("/metrics")).text) - before
        os.kill(shard_pid, signal.SIGTERM)  # a child this bench started
        await asyncio.sleep(1.0)
        scan, scanned = await _timed(http, args.queries)
    if scanned != from_memory:
        raise RuntimeError("the memory answers differ from the scan's")
    note = f"{args.rows:,} rows, where + sort, {args.queries} pages"
    return [
        ("memory p50 ms (limit 50)", f"{quantile(memory, 0.5):.1f}", note),
        ("memory p99 ms (limit 50)", f"{quantile(memory, 0.99):.1f}",
         f"{answered:.0f} of {args.queries} answered from memory"),
        ("scan p50 ms (limit 50)", f"{quantile(scan, 0.5):.1f}", "same queries, shard stopped"),
        ("scan p99 ms (limit 50)", f"{quantile(scan, 0.99):.1f}", "same bytes as from memory"),
    ]


def run(args: argparse.Namespace) -> int:
    with redis_or_embedded(args.redis_url) as url, \
            running(url, _SECRET, 1, 1, lambda s: print(s)) as cluster:
        table = asyncio.run(_measure(args, url, cluster.gateway_ports[0], cluster.prefix,
                                     cluster.pids["shard-0"]))
    print_table("lq bench oneshot (one run: memory, then scan)", table)
    return 0
