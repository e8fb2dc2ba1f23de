"""The WebSocket clients of a chaos run, and what every client shares.

A client holds some subscriptions (`check.SubCheck`) of one tenant, talks to one
gateway at a time, and moves to the next gateway of its list when its connection
fails (a killed or draining gateway). Invariants:
- every live message is checked as it arrives, with the wall-clock time of its arrival;
- a subscription found broken is started over at once under a new wire name (a new
  life), as a careful application would, so the run goes on checking it; after a
  reconnect, a window list that was synced declares itself (a state-diff resume);
- reconnects are bounded: a pause of 0.2 s doubling to 2 s between tries, and every
  loop ends when the run's `stop` event is set;
- the slow-consumer fault closes the `reading` gate, until it opens again: a WebSocket
  client then stops reading its socket (the backlog piles up in the kernel buffers and
  the gateway's queue, and is delivered when it reads again: on loopback the buffers
  hold megabytes, so this proves the backlog's replay more than the overflow), a
  long-polling client stops polling (its handle's bounded backlog overflows on the
  gateway, and the next reply starts with `reset`: the overflow path).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from lq.chaos.check import SubCheck

__all__ = ["Client", "WsClient"]

_RCVBUF = 4096  # small, so a paused reader's backlog moves to the gateway


class Client:
    """What the runner sees of any client: its subscriptions, gateway and errors."""

    transport = ""

    def __init__(self, name: str, tenant: str, token: str, urls: list[str],
                 subs: list[SubCheck], first: int) -> None:
        self.name = name
        self.tenant = tenant
        self.token = token
        self.urls = urls
        self.subs = subs
        self.gateway = first  # the index of the gateway it uses (or tries) now
        self.connects = 0
        self.errors: list[str] = []  # error messages the server sent
        self.reading = asyncio.Event()
        self.reading.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, serve, reconnect, until `stop`."""
        pause = 0.2
        while not stop.is_set():
            served = await self._session(self.urls[self.gateway % len(self.urls)], stop)
            if stop.is_set():
                return
            pause = 0.2 if served else min(2.0, pause * 2)
            self.gateway += 1  # next time, another gateway
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)

    async def _session(self, url: str, stop: asyncio.Event) -> bool:
        raise NotImplementedError

    def note_error(self, m: dict[str, Any]) -> None:
        if len(self.errors) < 100:
            self.errors.append(f"{time.time():.3f} {m.get('code')}: {m.get('message')}")


class WsClient(Client):
    """All its subscriptions over one WebSocket."""

    transport = "ws"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ws: ClientConnection | None = None
        self.wire: dict[str, SubCheck] = {}

    @staticmethod
    def _wire_name(sub: SubCheck) -> str:
        return f"{sub.name}.{sub.lives}"

    async def _subscribe(self, ws: ClientConnection, sub: SubCheck) -> None:
        """A new life; it declares the list when that is synced and trusted."""
        message = sub.subscribe_message(f"{sub.name}.{sub.lives + 1}")
        sub.new_life(keep="resume" in message)
        self.wire[self._wire_name(sub)] = sub
        await ws.send(orjson.dumps(message).decode())

    async def _session(self, url: str, stop: asyncio.Event) -> bool:
        host, port = url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        sock.setblocking(False)
        served = False
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(
                sock, (host, int(port))), 3.0)
            async with connect(f"ws://{host}:{port}/v1/ws", sock=sock, open_timeout=5,
                               additional_headers={"Authorization": f"Bearer {self.token}"},
                               max_queue=4, max_size=None, ping_interval=None,
                               compression=None, close_timeout=2) as ws:
                self.ws, self.wire = ws, {}
                self.connects += 1
                served = True
                for sub in self.subs:
                    await self._subscribe(ws, sub)
                async with asyncio.TaskGroup() as group:
                    reader = group.create_task(self._read(ws))
                    stopper = group.create_task(stop.wait())
                    await asyncio.wait([reader, stopper], return_when=asyncio.FIRST_COMPLETED)
                    reader.cancel()
                    stopper.cancel()
        except* (OSError, TimeoutError, WebSocketException):
            pass  # a refused or broken connection: the next gateway
        finally:
            self.ws = None
            sock.close()
        return served

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(WebSocketException):
            async for raw in ws:
                await self.reading.wait()
                now = time.time()
                data = orjson.loads(raw)
                for m in data if isinstance(data, list) else [data]:
                    await self._dispatch(ws, m, now)

    async def _dispatch(self, ws: ClientConnection, m: dict[str, Any], now: float) -> None:
        kind = m.get("type")
        sub = self.wire.get(m.get("sub") or "")
        if kind == "error":
            self.note_error(m)
            if sub is not None and m.get("code") in ("overloaded", "internal"):
                await asyncio.sleep(0.2)  # a subscribe refused for now: ask again
                await self._subscribe(ws, sub)
            return
        if kind != "delta" or sub is None:
            return
        sub.apply(m, now)
        if sub.broken:  # start it over, as an application would
            self.wire.pop(self._wire_name(sub), None)
            await ws.send(orjson.dumps({"type": "unsubscribe",
                                        "sub": self._wire_name(sub)}).decode())
            await self._subscribe(ws, sub)
