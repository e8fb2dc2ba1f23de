"""`lq bench http`: single-row PUTs through one gateway process against its ceiling.

Both servers run as their own process on a free loopback port: `lq gateway` (auth,
checks, the write script, logs and metrics) and a bare starlette endpoint that does one
`SET` (the framework-plus-Redis ceiling), served by uvicorn the same way. The load is a
small asyncio loop of `--concurrency` keep-alive connections sending the same request
bytes (only the id changes), so the client costs as little as possible; each run sends
`--requests` PUTs (bounded by `--max-seconds`). Medians of `--runs` runs are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from gateway.auth import issue_token
from lq._net import free_port
from lq.bench._table import Row, print_table, quantile
from lq.embedded import redis_or_embedded

__all__ = ["configure", "run"]

_SECRET = "bench-secret-" + "0123456789abcdef" * 3
_BODY = (
    b'{"title":"write the benchmark","status":"open","priority":3,'
    b'"owner":{"name":"ada","team":"core"},"tags":["a","b"]}'
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="Redis to use (default: start an embedded one)")
    parser.add_argument("--runs", type=int, default=3, help="runs per server (default 3)")
    parser.add_argument("--requests", type=int, default=4000, help="PUTs per run (default 4000)")
    parser.add_argument("--concurrency", type=int, default=32, help="connections (default 32)")
    parser.add_argument("--max-seconds", type=float, default=20, help="cap per run (default 20)")
    parser.add_argument(
        "--no-access-log", action="store_true", help="run the gateway without its access log"
    )


@contextmanager
def _server(cmd: list[str], port: int, env: dict[str, str]) -> Iterator[None]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {cmd}") from None
                time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _request(row_id: str, token: str) -> bytes:
    return (
        f"PUT /v1/entities/bench/rows/{row_id} HTTP/1.1\r\nHost: bench\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(_BODY)}\r\n\r\n"
    ).encode() + _BODY


async def _worker(
    port: int, token: str, ids: Iterator[int], latencies: list[float], deadline: float, tag: str
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i in ids:
            if time.perf_counter() > deadline:
                return
            start = time.perf_counter()
            writer.write(_request(f"{tag}-{i}", token))
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer: {head[:80]!r}")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()
        await writer.wait_closed()


Sample = tuple[float, float, float]  # requests/s, p50 ms, p99 ms


async def _load(port: int, args: argparse.Namespace, token: str, tag: str) -> Sample:
    ids = iter(range(args.requests))
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = start + args.max_seconds
    await asyncio.gather(*(
        _worker(port, token, ids, latencies, deadline, tag) for _ in range(args.concurrency)
    ))
    elapsed = time.perf_counter() - start
    p50, p99 = quantile(latencies, 0.5), quantile(latencies, 0.99)
    return len(latencies) / elapsed, p50 * 1000, p99 * 1000


def _measure(args: argparse.Namespace, redis_url: str) -> list[Row]:
    token = issue_token(_SECRET, "bench", "lq:write:bench", ttl=3600)
    env = {**os.environ, "LQ_JWT_SECRET": _SECRET, "LQ_REDIS_URL": redis_url}
    results: dict[str, list[Sample]] = {"gateway": [], "ceiling": []}
    gw_port, ceil_port = free_port(), free_port()
    gw_cmd = [sys.executable, "-m", "lq", "gateway", "--port", str(gw_port)]
    if args.no_access_log:
        gw_cmd.append("--no-access-log")
    ceil_cmd = [sys.executable, "-m", "lq.bench._ceiling_app", str(ceil_port), redis_url]
    with _server(gw_cmd, gw_port, env), _server(ceil_cmd, ceil_port, env):
        warm = argparse.Namespace(**{**vars(args), "requests": 300})
        for port in (gw_port, ceil_port):
            asyncio.run(_load(port, warm, token, "warm"))
        for r in range(args.runs):  # alternate, so drift in machine load hits both alike
            for name, port in (("gateway", gw_port), ("ceiling", ceil_port)):
                results[name].append(asyncio.run(_load(port, args, token, f"{name}{r}")))
    med = {
        n: tuple(statistics.median(x[k] for x in v) for k in range(3))
        for n, v in results.items()
    }
    g, c = med["gateway"], med["ceiling"]
    note = f"{args.concurrency} connections, {args.requests} PUTs a run"
    return [
        ("gateway PUT requests/s", f"{g[0]:,.0f}", note),
        ("gateway PUT p50 / p99 ms", f"{g[1]:.2f} / {g[2]:.2f}", "auth, checks, write script, log"),
        ("ceiling PUT requests/s", f"{c[0]:,.0f}", "bare starlette + one SET"),
        ("ceiling PUT p50 / p99 ms", f"{c[1]:.2f} / {c[2]:.2f}", ""),
        ("gateway / ceiling", f"{g[0] / c[0]:.2f}", "goal >= 0.5"),
    ]


def run(args: argparse.Namespace) -> int:
    with redis_or_embedded(args.redis_url) as url:
        table = _measure(args, url)
    print_table(f"lq bench http (medians of {args.runs} runs)", table)
    return 0
