"""TCP proxies between shards and Redis, in a process of their own, that can cut,
blackhole or slow one shard's link: a network partition the shard survives (the
process keeps running and reconnects later), which SIGSTOP does not model.

`ProxyProcess` (runner side) starts `python -m lq.chaos.proxy` and talks to it with one
JSON line per command on its stdin, one JSON reply per line on its stdout:
`{"op": "add", "name", "target"}` -> `{"port"}`; `{"op": "mode", "name", "mode",
"delay_ms"}` -> `{"ok": true}`. The proxy process ends when its stdin closes (and dies
with the runner, `lq._orphan_guard`). Modes of one proxy:

- `pass`: bytes flow both ways;
- `cut`: every open connection is closed and new ones are closed at once (the shard
  sees resets and refused reconnects);
- `blackhole`: connections stay open but every byte is dropped, both ways (the shard
  sees timeouts); going back to `pass` closes the connections that lost bytes, as a
  real network's dead connections would time out;
- `slow`: bytes flow in order, each chunk `delay_ms` late.

Invariants: only 127.0.0.1; a connection never delivers a byte after one of its bytes
was dropped; every task belongs to the proxy's task group.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from lq._orphan_guard import guarded

__all__ = ["MODES", "ProxyProcess"]

MODES = ("pass", "cut", "blackhole", "slow")
_CHUNK = 65536


@dataclass(eq=False)
class _Link:
    """One proxied connection: its two writers, and whether it lost bytes."""

    writers: tuple[asyncio.StreamWriter, asyncio.StreamWriter]
    dropped: bool = False

    def close(self) -> None:
        for w in self.writers:
            w.close()


@dataclass
class _Proxy:
    target: int
    mode: str = "pass"
    delay_s: float = 0.0
    links: set[_Link] = field(default_factory=set)


class _Server:
    def __init__(self, group: asyncio.TaskGroup) -> None:
        self.group = group
        self.proxies: dict[str, _Proxy] = {}

    async def add(self, name: str, target: int) -> int:
        proxy = _Proxy(target)
        self.proxies[name] = proxy

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(proxy, reader, writer)

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        self.group.create_task(server.serve_forever())
        return int(server.sockets[0].getsockname()[1])

    def mode(self, name: str, mode: str, delay_ms: float) -> None:
        proxy = self.proxies[name]
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        if mode == "cut" or (mode == "pass" and proxy.mode == "blackhole"):
            for link in list(proxy.links):
                if mode == "cut" or link.dropped:
                    link.close()
        proxy.mode, proxy.delay_s = mode, delay_ms / 1000

    async def _serve(self, proxy: _Proxy, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        if proxy.mode == "cut":
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", proxy.target)
        except OSError:
            writer.close()
            return
        link = _Link((writer, up_writer))
        proxy.links.add(link)
        try:
            async with asyncio.TaskGroup() as pair:
                pair.create_task(self._pump(proxy, link, reader, up_writer))
                pair.create_task(self._pump(proxy, link, up_reader, writer))
        except* (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            proxy.links.discard(link)
            link.close()

    async def _pump(self, proxy: _Proxy, link: _Link, src: asyncio.StreamReader,
                    dst: asyncio.StreamWriter) -> None:
        while data := await src.read(_CHUNK):
            if proxy.mode == "blackhole" or link.dropped:
                link.dropped = True
                continue
            if proxy.mode == "slow" and proxy.delay_s > 0:
                await asyncio.sleep(proxy.delay_s)
            dst.write(data)
            await dst.drain()
        link.close()  # one side closed: close both


async def _main() -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    async with asyncio.TaskGroup() as group:
        server = _Server(group)
        while line := await stdin.readline():
            cmd = orjson.loads(line)
            reply: dict[str, Any]
            try:
                if cmd["op"] == "add":
                    reply = {"port": await server.add(cmd["name"], int(cmd["target"]))}
                else:
                    server.mode(cmd["name"], cmd["mode"], float(cmd.get("delay_ms", 0)))
                    reply = {"ok": True}
            except (KeyError, ValueError) as e:
                reply = {"error": str(e)}
            sys.stdout.buffer.write(orjson.dumps(reply) + b"\n")
            sys.stdout.flush()
        raise SystemExit(0)  # stdin closed: the runner is done


class ProxyProcess:
    """The runner's handle on the proxy process (synchronous, one command at a time)."""

    def __init__(self, log: Path) -> None:
        with open(log, "ab") as errors:
            self.proc = subprocess.Popen(
                guarded([sys.executable, "-m", "lq.chaos.proxy"]), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=errors, start_new_session=True)
        self.ports: dict[str, int] = {}
        self.modes: dict[str, str] = {}

    def _ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(orjson.dumps(cmd) + b"\n")
        self.proc.stdin.flush()
        reply: dict[str, Any] = orjson.loads(self.proc.stdout.readline())
        if "error" in reply:
            raise RuntimeError(f"proxy: {reply['error']}")
        return reply

    def add(self, name: str, target: int) -> int:
        """A new proxy to 127.0.0.1:`target`; the port it listens on."""
        port = int(self._ask({"op": "add", "name": name, "target": target})["port"])
        self.ports[name], self.modes[name] = port, "pass"
        return port

    def set_mode(self, name: str, mode: str, delay_ms: float = 0.0) -> None:
        self._ask({"op": "mode", "name": name, "mode": mode, "delay_ms": delay_ms})
        self.modes[name] = mode

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())
