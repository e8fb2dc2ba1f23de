"""`lq bench scaling`'s gateway sweep: one gateway process against N WebSocket connections.

Real processes on loopback, started and stopped by `lq bench http`'s `_server` (by the
pid it started): one `lq shard` for the whole sweep, and for every point (a connection
count, one repetition) a fresh `lq gateway` and a fresh bare starlette broadcast
(`_broadcast_app`) on the same stack. The measures are `lq bench gateway`'s own
(`Bench`, `_wsload`), in this order, so the first memory figure is a fresh process's
growth:
1. idle: RSS growth per idle, authenticated connection, gateway and bare broadcast
   (`Bench.idle`);
2. subscribed: N connections each subscribed to one window (limit 10) of one entity;
   RSS growth of the gateway over its fresh RSS (read before step 1), per connection,
   and its whole RSS; RSS does not shrink when step 1's connections close, so this
   is the high-water mark of holding N subscribed connections;
3. delta throughput: `writes` single-row updates in one batch, each one delta to every
   subscriber; messages delivered per second until the last subscriber has them all.
   `writes` = `max_messages` // N, clamped to 3..200, so the count stays bounded;
4. fan-out: one write seen by N fresh subscribers, p50 / p99 per subscriber from the
   start of its PUT, and the bare broadcast's (`Bench.fanout`, one warm-up write, one
   timed).
Every figure of a point comes from one repetition; the caller takes medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack

from lq._net import free_port
from lq._serving import split_stack
from lq.bench.gateway import _SECRET, Bench, _pid_on, _rss_kib, _until_ready
from lq.bench.http import _server

__all__ = ["KEYS", "sweep", "writes_for"]

KEYS = ("held", "idle_kb", "bare_kb", "sub_kb", "rss_mb", "writes", "msgs_s",
        "fan_p50", "fan_p99", "bare_p50", "bare_p99")
"""The figures of one point (KB per connection, MB, messages/s, ms)."""

_ROW = {"title": "write the benchmark", "status": "open", "priority": 3}


def writes_for(n: int, max_messages: int) -> int:
    """Writes per throughput run at `n` subscribers: about `max_messages` deliveries."""
    return max(3, min(200, max_messages // max(1, n)))


def _env(redis_url: str) -> dict[str, str]:
    """The processes' environment: the caps raised past the sweep's sizes, pings off."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("LQ_")},
            "LQ_REDIS_URL": redis_url, "LQ_PREFIX": f"lqs{secrets.token_hex(3)}",
            "LQ_JWT_SECRET": _SECRET, "LQ_ACCESS_LOG": "false",
            "LQ_WS_PING_INTERVAL": "300", "LQ_MAX_CONNECTIONS": "50000",
            "LQ_MAX_SUBSCRIPTIONS": "200000"}


async def _point(n: int, gw_port: int, bare_port: int, max_messages: int) -> dict[str, float]:
    gw_pid = _pid_on(gw_port)
    bench = Bench(argparse.Namespace(runs=1), gw_port, bare_port, gw_pid)
    try:
        await _until_ready(bench.http)
        fresh = _rss_kib(gw_pid)
        await bench.idle(n)
        entity = f"scale{n}"
        await bench._seed(entity)
        conns = await bench._subscribed(n, entity)
        try:
            await asyncio.sleep(0.5)
            rss = _rss_kib(gw_pid)
            k = writes_for(n, max_messages)
            ops = [{"op": "put", "entity": entity, "id": f"r{i % 10}",
                    "row": {**_ROW, "priority": i % 10, "n": i}} for i in range(k)]

            async def write() -> None:
                (await bench.http.post("/v1/batch", json={"ops": ops})).raise_for_status()

            rate = await bench._rate(conns, write, k)
        finally:
            for conn in conns:
                conn.close()
        await bench.fanout(n)  # the gateway's and the bare broadcast's, same run
    finally:
        await bench.http.aclose()
    f = bench.figures
    return {"held": f["held"][0], "idle_kb": f["idle"][0], "bare_kb": f["idle"][1],
            "sub_kb": (rss - fresh) / n, "rss_mb": rss / 1024, "writes": k, "msgs_s": rate,
            "fan_p50": f[f"fan{n}"][0], "fan_p99": f[f"fan{n}"][1],
            "bare_p50": f[f"bare{n}"][0], "bare_p99": f[f"bare{n}"][1]}


def sweep(sizes: list[int], repeat: int, redis_url: str, stack: str, max_messages: int,
          timeout: float, progress: Callable[[str], None]) -> dict[int, list[dict[str, float]]]:
    """Every point's figures by connection count, `repeat` each (see the module doc);
    RuntimeError when a point outlives `timeout` seconds or a process does not start."""
    env = _env(redis_url)
    server, ws_impl = split_stack(stack)
    shard_port = free_port()
    out: dict[int, list[dict[str, float]]] = {n: [] for n in sizes}
    with ExitStack() as shard:
        shard.enter_context(_server([sys.executable, "-m", "lq", "shard"], shard_port,
                                    {**env, "LQ_SHARD_ID": "scale-0",
                                     "LQ_HTTP_PORT": str(shard_port)}))
        for run in range(repeat):
            for n in sizes:
                progress(f"gateway: {n:,} connections, run {run + 1}/{repeat}")
                gw_port, bare_port = free_port(), free_port()
                started = time.monotonic()
                with ExitStack() as servers:
                    servers.enter_context(_server(
                        [sys.executable, "-m", "lq", "gateway", "--port", str(gw_port)],
                        gw_port, {**env, "LQ_SERVER": server, "LQ_WS_IMPL": ws_impl}))
                    servers.enter_context(_server(
                        [sys.executable, "-m", "lq.bench._broadcast_app", str(bare_port),
                         stack], bare_port, env))
                    try:
                        figures = asyncio.run(asyncio.wait_for(
                            _point(n, gw_port, bare_port, max_messages), timeout))
                    except TimeoutError:
                        raise RuntimeError(f"gateway point at {n:,} connections took over "
                                           f"{timeout:.0f} s") from None
                out[n].append(figures)
                progress(f"gateway: {n:,} connections done in "
                         f"{time.monotonic() - started:.0f} s")
    return out
