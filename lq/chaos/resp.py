"""A minimal synchronous RESP2 client for administering the Redis servers of a run.

`lq` may not import `redis` (only `storage` does), and the chaos runner needs a handful
of administrative commands (`PING`, `INFO`, `CLUSTER ...`, `REPLICAOF`) on a node it
started itself, so it speaks the protocol directly. Invariant: one command per call on
a fresh loopback connection with a timeout, so a node that was just killed, paused or
restarted can never leave a half-read reply behind for the next command.
"""

from __future__ import annotations

import socket

__all__ = ["RespError", "command", "info", "ping"]

Reply = bytes | int | list["Reply"] | None


class RespError(Exception):
    """The server answered with an error reply, or the connection failed."""


def _encode(args: tuple[object, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RespError("connection closed in the middle of a reply")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RespError("connection closed in the middle of a reply")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self) -> Reply:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exactly(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RespError(f"unknown reply type {line[:20]!r}")


def command(port: int, *args: object, timeout: float = 5.0) -> Reply:
    """Send one command to 127.0.0.1:`port` and return its reply (RespError on an error
    reply or a connection failure)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(_encode(args))
            return _Reader(sock).reply()
    except OSError as e:
        raise RespError(f"127.0.0.1:{port}: {e}") from e


def info(port: int, section: str = "", timeout: float = 5.0) -> dict[str, str]:
    """`INFO [section]` (or `CLUSTER INFO` with section "cluster-state") as a dict."""
    args = ("CLUSTER", "INFO") if section == "cluster-state" else ("INFO", section)
    raw = command(port, *(a for a in args if a), timeout=timeout)
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else ""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            out[key] = value
    return out


def ping(port: int, timeout: float = 0.5) -> bool:
    """True when the server answers PING with PONG (False while loading or down)."""
    try:
        return command(port, "PING", timeout=timeout) == b"PONG"
    except RespError:
        return False
