"""A minimal WebSocket load client for `lq bench gateway`: thousands of connections, each
an asyncio Protocol (no task, no frame parsing), so the client costs as little as
possible and measures the server rather than itself.

Each connection does the HTTP upgrade, sends masked text frames, and counts occurrences
of a marker in the bytes it receives (keeping a short tail, so a marker split across
reads is still seen once), recording when the count last changed. That is enough to
time a fan-out (first marker after a write) and to count delivered messages. A subclass
that needs the messages themselves overrides `received` (the bytes after the upgrade)
and is opened with `open_one`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["WsConn", "frame", "open_many", "open_one"]


C = TypeVar("C", bound="WsConn")


def frame(text: bytes, opcode: int = 0x1) -> bytes:
    """One masked client frame (text by default)."""
    mask = os.urandom(4)
    n = len(text)
    head = bytes([0x80 | opcode]) + (
        bytes([0x80 | n]) if n < 126
        else bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536
        else bytes([0x80 | 127]) + struct.pack(">Q", n)
    )
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(text))
    return head + mask + body


class WsConn(asyncio.Protocol):
    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.transport: asyncio.Transport | None = None
        self.upgraded = asyncio.get_running_loop().create_future()
        self.head = b""
        self.tail = b""
        self.count = 0
        self.changed_at = 0.0
        self.synced = False  # a `synced` delta arrived
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed during the upgrade"))

    def data_received(self, data: bytes) -> None:
        if not self.upgraded.done():
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            status, data = self.head[:end], self.head[end + 4:]
            if b" 101 " not in status.split(b"\r\n", 1)[0]:
                self.upgraded.set_exception(ConnectionError(status[:200].decode()))
                return
            self.upgraded.set_result(None)
            if not data:
                return
        self.received(data)

    def received(self, data: bytes) -> None:
        """Bytes from the server after the upgrade: count the marker."""
        chunk = self.tail + data
        if not self.synced and b'"op":"synced"' in chunk:
            self.synced = True
        found = chunk.count(self.marker)
        if found:
            self.count += found
            self.changed_at = time.perf_counter()
        self.tail = chunk[-16:]

    def send(self, text: bytes) -> None:
        assert self.transport is not None
        self.transport.write(frame(text))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_one(factory: Callable[[], C], host: str, port: int, path: str,
                   headers: dict[str, str], rcvbuf: int | None = None) -> C:
    """One connection made by `factory`, upgraded (with a receive buffer of `rcvbuf`
    bytes, set before connecting, when given: a client that stops reading then holds
    little in its own kernel buffers)."""
    loop = asyncio.get_running_loop()
    if rcvbuf is None:
        _, conn = await loop.create_connection(factory, host, port)
    else:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        _, conn = await loop.create_connection(factory, sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{extra}\r\n"
    )
    assert conn.transport is not None
    conn.transport.write(request.encode())
    await asyncio.wait_for(conn.upgraded, 30)
    return conn


async def open_many(n: int, host: str, port: int, path: str, headers: dict[str, str],
                    marker: bytes, concurrency: int = 200, tries: int = 3) -> list[WsConn]:
    """`n` upgraded connections, opened `concurrency` at a time; an upgrade that fails
    (a loaded server closing it) is tried again, up to `tries` times in all, and then
    raises."""
    conns: list[WsConn] = []
    for i in range(0, n, concurrency):
        want = min(concurrency, n - i)
        for attempt in range(tries):
            batch = [open_one(lambda: WsConn(marker), host, port, path, headers)
                     for _ in range(want)]
            opened = await asyncio.gather(*batch, return_exceptions=True)
            failed = [c for c in opened if isinstance(c, BaseException)]
            conns += [c for c in opened if isinstance(c, WsConn)]
            want = len(failed)
            if not failed:
                break
            if attempt == tries - 1:
                for conn in conns:
                    conn.close()
                raise failed[0]
            await asyncio.sleep(0.5)
    return conns

