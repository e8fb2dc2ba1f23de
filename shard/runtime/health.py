"""The shard's small HTTP port: `/healthz`, `/readyz`, `/metrics`.

A deliberately tiny HTTP/1.0 responder on asyncio streams (GET only, one request per
connection, bounded request size and time) so the shard needs no web framework.
Metrics are read from the running engine at scrape time by a custom collector.
`/readyz` answers 503 with `error.message` saying why (`unready()`: a partition it owns
not leased and served, or the tail past its bound), else 200.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["HealthServer", "ShardCollector"]

_MAX_REQUEST = 8192


class ShardCollector:
    """Reads gauges and counters from a callable returning {name: (kind, help, value)}."""

    def __init__(self, read: Callable[[], dict[str, tuple[str, str, float]]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        for name, (kind, text, value) in self.read().items():
            family: Metric
            if kind == "counter":
                family = CounterMetricFamily(f"lq_shard_{name}", text, value=value)
            else:
                family = GaugeMetricFamily(f"lq_shard_{name}", text, value=value)
            yield family


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        unready: Callable[[], str | None],
        status: Callable[[], dict[str, Any]],
        registry: CollectorRegistry,
    ) -> None:
        self.host = host
        self.port = port
        self.unready = unready
        self.status = status
        self.registry = registry
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen; the bound port (useful with port 0)."""
        self.server = await asyncio.start_server(self._serve, self.host, self.port)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def _route(self, path: str) -> tuple[int, str, bytes]:
        if path == "/healthz":
            return 200, "application/json", b'{"ok":true}'
        if path == "/readyz":
            reason = self.unready()
            out: dict[str, Any] = {"ready": reason is None, **self.status()}
            if reason is not None:
                out["error"] = {"code": "unavailable", "message": reason}
            return (200 if reason is None else 503), "application/json", orjson.dumps(out)
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4", generate_latest(self.registry)
        return 404, "application/json", b'{"error":"not found"}'

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            if len(head) > _MAX_REQUEST:
                return
            method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if method != "GET":
                status, kind, body = 405, "application/json", b'{"error":"GET only"}'
            else:
                status, kind, body = self._route(path)
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}.get(
                status, "Service Unavailable"
            )
            writer.write(
                f"HTTP/1.0 {status} {reason}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass
        finally:
            writer.close()
