"""The subscribers of `lq bench e2e`: real WebSocket and SSE clients of real gateways.

Each client holds one window subscription (`sort: ["slot"]`, `limit` = the rows of its
collection) on its own collection, so every write to that collection is exactly one
`update` on exactly one client. The WebSocket clients are asyncio protocols on
`_wsload`'s upgrade (frames parsed here, pings answered); the SSE clients read
`/v1/sse` with httpx. Both hand every message to one `Deliveries`.

Invariants: a write's latency is taken once, at the first `update` carrying its `n`,
as this process's `time.monotonic()` when the bytes arrived minus the `t` the writer
put in the row (one clock for all processes on Linux); messages are only read, never
applied (the bench checks delivery, not the window: the suite's protocol tests do that).
Every SSE reader is a task `Clients` owns and cancels in `close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from lq.bench._wsload import WsConn, frame, open_one

__all__ = ["Clients", "Deliveries", "query_of"]

_OP_TEXT, _OP_CLOSE, _OP_PING, _OP_PONG = 0x1, 0x8, 0x9, 0xA


def query_of(collection: int, slots: int) -> dict[str, Any]:
    """The query of the client of collection `collection`."""
    return {"entity": f"e{collection}", "sort": ["slot"], "limit": slots}


class Deliveries:
    """What reached the clients: per transport, write `n` -> latency in ms; resets and
    syncs per subscription. `clear` starts a new step."""

    def __init__(self) -> None:
        self.latency: dict[str, dict[int, float]] = {"ws": {}, "sse": {}}
        self.resets = 0  # every reset seen, the first one of each subscription included
        self.synced: set[int] = set()  # collections whose subscription is synced

    def clear(self) -> None:
        for seen in self.latency.values():
            seen.clear()

    def on_message(self, kind: str, collection: int, msg: Any, now: float) -> None:
        if not isinstance(msg, dict) or msg.get("type") != "delta":
            return
        op = msg.get("op")
        if op == "update":
            row = msg.get("row") or {}
            n, t = row.get("n"), row.get("t")
            if isinstance(n, int) and isinstance(t, float):
                self.latency[kind].setdefault(n, (now - t) * 1000)
        elif op == "synced":
            self.synced.add(collection)
        elif op == "reset":
            self.resets += 1
            self.synced.discard(collection)


class WsReader(WsConn):
    """One WebSocket: server frames parsed, text messages (or arrays of them) handed on."""

    def __init__(self, on_message: Callable[[Any, float], None]) -> None:
        super().__init__(b"")
        self.on_message = on_message
        self.buf = bytearray()
        self.parts = bytearray()  # a fragmented message's earlier frames

    def received(self, data: bytes) -> None:
        now = time.monotonic()
        self.buf += data
        while (frame_ := self._next()) is not None:
            opcode, fin, payload = frame_
            if opcode == _OP_PING:
                assert self.transport is not None
                self.transport.write(frame(payload, _OP_PONG))
            elif opcode == _OP_CLOSE:
                self.close()
            elif opcode in (_OP_TEXT, 0x0):
                self.parts += payload
                if fin:
                    msg = orjson.loads(self.parts)
                    self.parts.clear()
                    for one in msg if isinstance(msg, list) else [msg]:
                        self.on_message(one, now)

    def _next(self) -> tuple[int, bool, bytes] | None:
        """The next whole frame taken off the buffer (server frames are not masked)."""
        buf = self.buf
        if len(buf) < 2:
            return None
        length, at = buf[1] & 0x7F, 2
        if length == 126:
            if len(buf) < 4:
                return None
            length, at = struct.unpack_from(">H", buf, 2)[0], 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length, at = struct.unpack_from(">Q", buf, 2)[0], 10
        if len(buf) < at + length:
            return None
        payload = bytes(buf[at:at + length])
        opcode, fin = buf[0] & 0x0F, bool(buf[0] & 0x80)
        del buf[:at + length]
        return opcode, fin, payload


class Clients:
    """`ws` WebSocket and `sse` SSE clients, alternating over the gateways' ports;
    client `k` subscribes to collection `k` (the WebSocket clients first)."""

    def __init__(self, ports: list[int], token: str, ws: int, sse: int, slots: int) -> None:
        self.ports = ports
        self.headers = {"Authorization": f"Bearer {token}"}
        self.ws, self.sse, self.slots = ws, sse, slots
        self.deliveries = Deliveries()
        self.conns: list[WsReader] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30, read=None),
                                      headers=self.headers)

    def kind_of(self, collection: int) -> str:
        return "ws" if collection < self.ws else "sse"

    async def open(self) -> None:
        for k in range(self.ws):
            conn = await open_one(lambda k=k: WsReader(self._handler("ws", k)),  # type: ignore[misc]
                                  "127.0.0.1", self.ports[k % len(self.ports)], "/v1/ws",
                                  self.headers)
            self.conns.append(conn)
            conn.send(orjson.dumps({"type": "subscribe", "sub": "s",
                                    "query": query_of(k, self.slots)}))
        for k in range(self.ws, self.ws + self.sse):
            opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.tasks.append(asyncio.create_task(self._sse(k, opened), name=f"sse-{k}"))
            await opened

    def _handler(self, kind: str, collection: int) -> Callable[[Any, float], None]:
        deliveries = self.deliveries

        def handle(msg: Any, now: float) -> None:
            deliveries.on_message(kind, collection, msg, now)

        return handle

    async def _sse(self, collection: int, opened: asyncio.Future[None]) -> None:
        port = self.ports[collection % len(self.ports)]
        q = json.dumps(query_of(collection, self.slots))
        url = f"http://127.0.0.1:{port}/v1/sse"
        handle = self._handler("sse", collection)
        try:
            async with self.http.stream("GET", url, params={"q": q}) as reply:
                reply.raise_for_status()
                opened.set_result(None)
                async for line in reply.aiter_lines():
                    if line.startswith("data: "):
                        handle(orjson.loads(line[6:]), time.monotonic())
        except Exception as e:
            if not opened.done():
                opened.set_exception(e)
            raise

    async def wait_synced(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        want = self.ws + self.sse
        while len(self.deliveries.synced) < want:
            self.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.deliveries.synced)} of {want} subscriptions "
                                   f"synced after {timeout:g} s")
            await asyncio.sleep(0.02)

    def check(self) -> None:
        """Raise if a client's connection has ended."""
        closed = sum(1 for c in self.conns if c.closed)
        if closed:
            raise ConnectionError(f"{closed} WebSocket client(s) were disconnected")
        for task in self.tasks:
            if task.done():
                task.result()  # its error, if any
                raise ConnectionError(f"{task.get_name()}: the SSE stream ended")

    async def close(self) -> None:
        for conn in self.conns:
            conn.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.http.aclose()
