"""`lq bench gateway`: fan-out, connections and delivery rate of one gateway process,
on each server stack side by side.

Real processes on loopback: an embedded Redis (or `--redis-url`), one `lq shard`, and for
each stack of `--stacks` in turn (`lq._serving.STACKS`: uvicorn with each of its
WebSocket implementations, granian) a fresh `lq gateway` and a bare starlette WebSocket
broadcast (`_broadcast_app`, the floor) served by that stack. The clients are minimal
asyncio protocols (`_wsload`), so the bench process measures the servers rather than
itself. Printed are medians of `--runs`:
- fan-out: one write seen by N subscribers of one query on one gateway: time until the
  last has it, and p50 / p99 per subscriber (from the start of the write's HTTP PUT),
  against the bare broadcast to N, interleaved repeat by repeat (the ratio is the median
  of the repeats' p99 ratios);
- connections: memory per idle, authenticated connection (RSS growth of a fresh
  gateway process / connections), and the same for the bare broadcast;
- delivery (first stack only): messages/s to `--throughput-subs` subscribers for a batch
  of writes, against the bare broadcast of as many messages of the same size (ratio);
- slow reader (first stack only): the fan-out p50 / p99 to `--stalled-subs` subscribers
  with one stalled WebSocket reader on the gateway against none, same run (`_stalled`).
Then one table of every stack: fan-out against its floor, memory against its floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from gateway.auth import issue_token
from lq._net import free_port
from lq._serving import STACKS, missing, split_stack
from lq.bench._stalled import stalled_reader
from lq.bench._table import Row, print_table, quantile
from lq.bench._wait import until
from lq.bench._wsload import WsConn, open_many
from lq.bench.http import _server
from lq.embedded import redis_or_embedded
from lq.gateway_cmd import raise_fd_limit

__all__ = ["configure", "run"]

_SECRET = "bench-secret-" + "0123456789abcdef" * 3
_MARK = b'"op":"update"'
_ROW = {"title": "write the benchmark", "status": "open", "priority": 3}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="Redis to use (default: start an embedded one)")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (default 3)")
    parser.add_argument("--fanout", default="1000,5000",
                        help="subscriber counts for the fan-out (default 1000,5000)")
    parser.add_argument("--connections", type=int, default=5000,
                        help="idle connections held for the memory measure (default 5000)")
    parser.add_argument("--throughput-subs", type=int, default=500,
                        help="subscribers in the delivery-rate measure (default 500)")
    parser.add_argument("--throughput-writes", type=int, default=200,
                        help="writes (messages per subscriber) per delivery run (default 200)")
    parser.add_argument("--stalled-subs", type=int, default=500,
                        help="reading subscribers in the stalled-reader case (default 500; "
                        "0 skips it)")
    parser.add_argument("--stacks", default=None,
                        help="servers to compare, comma-separated, from "
                        f"{', '.join(STACKS)} (default: every one installed); the first "
                        "also gets the delivery and stalled-reader measures")
    parser.add_argument("--stalled-probes", type=int, default=30,
                        help="timed writes per stalled-reader case (default 30)")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _fan_once(conns: list[WsConn], fire: Callable[[], Awaitable[None]]
                    ) -> tuple[float, float, float, float]:
    """(last, p50, p99, first) ms from `fire` until each of `conns` has one more
    message."""
    counts = [c.count for c in conns]
    start = time.perf_counter()
    await fire()
    await until(lambda: all(c.count > k for c, k in zip(conns, counts, strict=True)),
                 30, "the fan-out")
    lat = [(c.changed_at - start) * 1000 for c in conns]
    return max(lat), quantile(lat, 0.5), quantile(lat, 0.99), min(lat)


class Bench:
    def __init__(self, args: argparse.Namespace, gw_port: int, bare_port: int,
                 gw_pid: int) -> None:
        self.bare_pid = _pid_on(bare_port)
        self.args = args
        self.gw_port = gw_port
        self.bare_port = bare_port
        self.gw_pid = gw_pid
        self.tenant = f"bench{secrets.token_hex(3)}"
        self.token = issue_token(_SECRET, self.tenant, "lq:read:* lq:write:*", ttl=7200)
        self.auth = {"Authorization": f"Bearer {self.token}"}
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw_port}", timeout=60,
                                      headers=self.auth)
        self.figures: dict[str, tuple[float, float]] = {}  # for the stacks' table

    async def _subscribed(self, n: int, entity: str) -> list[WsConn]:
        conns = await open_many(n, "127.0.0.1", self.gw_port, "/v1/ws", self.auth, _MARK)
        query = {"entity": entity, "sort": ["-priority"], "limit": 10}
        message = json.dumps({"type": "subscribe", "sub": "s", "query": query}).encode()
        for conn in conns:
            conn.send(message)
        await until(lambda: all(c.synced for c in conns), 120, "subscriptions to sync")
        return conns

    async def _seed(self, entity: str) -> None:
        ops = [{"op": "put", "entity": entity, "id": f"r{i}", "row": {**_ROW, "priority": i}}
               for i in range(10)]
        r = await self.http.post("/v1/batch", json={"ops": ops})
        r.raise_for_status()

    async def fanout(self, n: int) -> list[Row]:
        """One write seen by `n` subscribers, against the bare broadcast of one message to
        `n` connections, interleaved repeat by repeat (both audiences held all along), so
        load that comes and goes on the machine weighs on both sides alike."""
        entity = f"fan{n}"
        await self._seed(entity)
        conns = await self._subscribed(n, entity)
        bare_conns: list[WsConn] = []
        gw: list[tuple[float, float, float, float]] = []
        bare: list[tuple[float, float, float, float]] = []
        ratios: list[float] = []
        spreads: list[float] = []  # (p99 - first): the fan-out itself, past the write path
        bare_http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.bare_port}",
                                      timeout=60)
        try:
            bare_conns = await open_many(n, "127.0.0.1", self.bare_port, "/ws", {}, _MARK)
            for run in range(self.args.runs + 1):  # the first run warms up

                async def write(run: int = run) -> None:
                    r = await self.http.put(f"/v1/entities/{entity}/rows/r9",
                                            json={**_ROW, "priority": 9, "run": run})
                    r.raise_for_status()

                async def broadcast() -> None:
                    (await bare_http.post("/broadcast", params={"n": "1"})).raise_for_status()

                g = await _fan_once(conns, write)
                await asyncio.sleep(0.1)
                b = await _fan_once(bare_conns, broadcast)
                await asyncio.sleep(0.1)
                if run:
                    gw.append(g)
                    bare.append(b)
                    ratios.append(g[2] / b[2])
                    spreads.append((g[2] - g[3]) / max(b[2] - b[3], 0.001))
        finally:
            for conn in [*conns, *bare_conns]:
                conn.close()
            await bare_http.aclose()
        last, p50, p99, first = (statistics.median(x[k] for x in gw) for k in range(4))
        b_last, b50, b99, b_first = (statistics.median(x[k] for x in bare) for k in range(4))
        ratio, spread = statistics.median(ratios), statistics.median(spreads)
        self.figures[f"fan{n}"] = (p50, p99)
        self.figures[f"bare{n}"] = (b50, b99)
        self.figures[f"ratio{n}"] = (ratio, spread)
        self.figures[f"first{n}"] = (first, b_first)
        goal = "goal p99 <= 100 ms" if n >= 5000 else ""
        return [
            (f"fan-out to {n:,} subscribers: last has it", f"{last:.1f} ms", "from the PUT"),
            (f"fan-out to {n:,}: p50 / p99 per subscriber", f"{p50:.1f} / {p99:.1f} ms", goal),
            (f"bare broadcast to {n:,}: last / p99", f"{b_last:.1f} / {b99:.1f} ms",
             "the framework's floor for the same fan-out, interleaved"),
            (f"fan-out to {n:,}: gateway / bare p99", f"{ratio:.2f}",
             "median of the repeats' ratios; goal <= 1.3"),
            (f"fan-out to {n:,}: first has it, gateway / bare", f"{first:.1f} / {b_first:.1f} ms",
             "the write's path to the gateway (PUT, Redis, shard, delta stream)"),
            (f"fan-out to {n:,}: p99 - first, gateway / bare", f"{spread:.2f}",
             "the fan-out alone, past the first delivery: median of the repeats' ratios"),
        ]

    async def idle(self, n: int) -> list[Row]:
        per_conn: list[float] = []
        alive = 0
        for port, pid, path, headers in ((self.gw_port, self.gw_pid, "/v1/ws", self.auth),
                                         (self.bare_port, self.bare_pid, "/ws", {})):
            before = _rss_kib(pid)
            conns = await open_many(n, "127.0.0.1", port, path, headers, _MARK)
            await asyncio.sleep(0.5)
            alive = alive or sum(1 for c in conns if not c.closed)
            per_conn.append((_rss_kib(pid) - before) / n)
            for conn in conns:
                conn.close()
        self.figures["idle"] = (per_conn[0], per_conn[1])
        self.figures["held"] = (float(alive), 0.0)
        return [("concurrent connections held", f"{alive:,}", "authenticated, idle"),
                ("memory per idle connection", f"{per_conn[0]:.1f} KB", "goal <= 20 KB"),
                ("bare broadcast: memory per connection", f"{per_conn[1]:.1f} KB",
                 "uvicorn + websockets + starlette alone")]

    async def _rate(self, conns: list[WsConn], fire: Callable[[], Any], k: int) -> float:
        counts = [c.count for c in conns]
        start = time.perf_counter()
        await fire()
        await until(lambda: all(c.count >= n + k for c, n in zip(conns, counts, strict=True)),
                     120, "the deliveries")
        elapsed = max(c.changed_at for c in conns) - start
        return len(conns) * k / elapsed

    async def delivery(self) -> list[Row]:
        s, k = self.args.throughput_subs, self.args.throughput_writes
        entity = "rate"
        await self._seed(entity)
        gw = await self._subscribed(s, entity)
        bare = await open_many(s, "127.0.0.1", self.bare_port, "/ws", {}, _MARK)
        bare_http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.bare_port}", timeout=120)
        ops = [{"op": "put", "entity": entity, "id": f"r{i % 10}",
                "row": {**_ROW, "priority": i % 10, "n": i}} for i in range(k)]

        async def write() -> None:
            (await self.http.post("/v1/batch", json={"ops": ops})).raise_for_status()

        async def broadcast() -> None:
            (await bare_http.post("/broadcast", params={"n": str(k)})).raise_for_status()

        rates: dict[str, list[float]] = {"gateway": [], "bare": []}
        try:
            for run in range(self.args.runs + 1):
                g = await self._rate(gw, write, k)
                b = await self._rate(bare, broadcast, k)
                if run:
                    rates["gateway"].append(g)
                    rates["bare"].append(b)
        finally:
            for conn in [*gw, *bare]:
                conn.close()
            await bare_http.aclose()
        g, b = statistics.median(rates["gateway"]), statistics.median(rates["bare"])
        note = f"{s} subscribers x {k} writes"
        return [
            ("gateway delivered messages/s", f"{g:,.0f}", note),
            ("bare broadcast messages/s", f"{b:,.0f}", "starlette, one send per message"),
            ("gateway / bare", f"{g / b:.2f}", "goal >= 0.5"),
        ]


async def _measure(args: argparse.Namespace, gw_port: int, bare_port: int, gw_pid: int,
                   full: bool) -> tuple[list[Row], dict[str, tuple[float, float]]]:
    """One stack's rows (all of them when `full`, else the idle and fan-out ones) and
    its figures for the stacks' table."""
    bench = Bench(args, gw_port, bare_port, gw_pid)
    try:
        await _until_ready(bench.http)
        table = await bench.idle(args.connections)  # first: a fresh process's growth
        for n in _fanouts(args):
            table += await bench.fanout(n)
        if full:
            table += await bench.delivery()
            if args.stalled_subs > 0:
                table += await stalled_reader(bench.http, gw_port, bench.auth,
                                              args.stalled_subs, args.stalled_probes)
        return table, bench.figures
    finally:
        await bench.http.aclose()


def _fanouts(args: argparse.Namespace) -> list[int]:
    return [int(x) for x in args.fanout.split(",") if x.strip()]


async def _until_ready(http: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            body = (await http.get("/readyz")).json()
            if body.get("live_shards", 0) >= 1:
                await asyncio.sleep(1.5)  # the shard claims its partitions
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway or the shard did not get ready")
        await asyncio.sleep(0.1)


def _run_with(args: argparse.Namespace, redis_url: str,
              stacks: list[str]) -> tuple[list[Row], dict[str, dict[str, tuple[float, float]]]]:
    """The full rows of the first stack, and every stack's figures, from one run: one
    shard, then for each stack in turn a fresh gateway and bare broadcast served by it."""
    prefix = f"lqb{secrets.token_hex(3)}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LQ_")},
           "LQ_REDIS_URL": redis_url, "LQ_PREFIX": prefix, "LQ_JWT_SECRET": _SECRET,
           "LQ_ACCESS_LOG": "false", "LQ_WS_PING_INTERVAL": "300",
           "LQ_MAX_CONNECTIONS": "50000", "LQ_MAX_SUBSCRIPTIONS": "200000"}
    shard_port = free_port()
    shard_env = {**env, "LQ_SHARD_ID": "bench-0", "LQ_HTTP_PORT": str(shard_port)}
    rows: list[Row] = []
    figures: dict[str, dict[str, tuple[float, float]]] = {}
    with ExitStack() as shard:
        shard.enter_context(_server([sys.executable, "-m", "lq", "shard"], shard_port,
                                    shard_env))
        for i, stack in enumerate(stacks):
            server, ws_impl = split_stack(stack)
            gw_port, bare_port = free_port(), free_port()
            with ExitStack() as servers:
                gw_cmd = [sys.executable, "-m", "lq", "gateway", "--port", str(gw_port)]
                servers.enter_context(_server(gw_cmd, gw_port, {
                    **env, "LQ_SERVER": server, "LQ_WS_IMPL": ws_impl}))
                bare_cmd = [sys.executable, "-m", "lq.bench._broadcast_app", str(bare_port),
                            stack]
                servers.enter_context(_server(bare_cmd, bare_port, env))
                print(f"lq bench gateway: measuring {stack}", file=sys.stderr, flush=True)
                try:
                    table, figures[stack] = asyncio.run(
                        _measure(args, gw_port, bare_port, _pid_on(gw_port), full=i == 0))
                except Exception as e:  # one stack failing leaves the others' figures
                    figures[stack] = {}
                    table = [(f"{stack}: FAILED", repr(e)[:80], "")]
                    print(f"lq bench gateway: {stack} failed: {e!r}", file=sys.stderr)
                if i == 0:
                    rows = table
    return rows, figures


def _stack_rows(args: argparse.Namespace,
                figures: dict[str, dict[str, tuple[float, float]]]) -> list[Row]:
    """One row per (stack, measure): gateway, its bare floor, and their ratio."""
    rows: list[Row] = []
    for stack, f in figures.items():
        if not f:
            rows.append((f"{stack}: FAILED", "see the error above", ""))
            continue
        for n in _fanouts(args):
            (gp50, gp99), (bp50, bp99) = f[f"fan{n}"], f[f"bare{n}"]
            rows.append((f"{stack}: fan-out to {n:,} p50 / p99",
                         f"{gp50:.1f} / {gp99:.1f} ms",
                         f"bare {bp50:.1f} / {bp99:.1f} ms; p99 ratio {f[f'ratio{n}'][0]:.2f};"
                         f" past the first {f[f'ratio{n}'][1]:.2f}"))
        gw, bare = f["idle"]
        rows.append((f"{stack}: per idle connection", f"{gw:.1f} KB",
                     f"bare {bare:.1f} KB; {int(f['held'][0]):,} held; ratio "
                     f"{gw / bare if bare > 0 else float('nan'):.2f}"))
    return rows


def _pid_on(port: int) -> int:
    """The pid of the process listening on `port` (Linux /proc)."""
    hex_port = f"{port:04X}"
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(":" + hex_port) and fields[3] == "0A":
            inodes.add(fields[9])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(pid)
        except OSError:
            continue
    raise RuntimeError(f"no process listens on {port}")


def _stacks(args: argparse.Namespace) -> list[str]:
    """The stacks asked for (default: every one that can run here); ValueError when one
    asked for is unknown or cannot run here."""
    if args.stacks is None:
        return [s for s in STACKS if missing(*split_stack(s)) is None]
    stacks = [s.strip() for s in args.stacks.split(",") if s.strip()]
    if not stacks:
        raise ValueError("--stacks: name at least one")
    for stack in stacks:
        need = missing(*split_stack(stack))
        if need is not None:
            raise ValueError(need)
    return stacks


def run(args: argparse.Namespace) -> int:
    try:
        stacks = _stacks(args)
    except ValueError as e:
        print(f"lq bench gateway: {e}", file=sys.stderr)
        return 2
    raise_fd_limit()
    with redis_or_embedded(args.redis_url) as url:
        table, figures = _run_with(args, url, stacks)
    print_table(f"lq bench gateway on {stacks[0]} (medians of {args.runs} runs)", table)
    print()
    print_table(f"lq bench gateway: stacks side by side (same run, medians of {args.runs})",
                _stack_rows(args, figures), ("stack: measure", "gateway", "floor and ratio"))
    return 0 if all(figures.values()) else 1
