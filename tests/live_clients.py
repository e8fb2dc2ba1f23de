"""Client-side helpers of the live tests: a raw WebSocket client that applies and checks
every delta (with the Python client's own `ViewState`, which enforces PROTOCOL.md
section 3), an SSE reader, and the oracle: a fresh one-shot query over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx
import websockets
from lq_client.view import Row, ViewState

from tests.gateway_helpers import auth

__all__ = ["SseReader", "Ws", "fresh", "new_tenant", "rows_of", "wait_for"]

Message = dict[str, Any]


def new_tenant() -> str:
    return f"t{secrets.token_hex(4)}"


def rows_of(rows: list[Row]) -> list[tuple[str, int, Any]]:
    return [(r.id, r.version, r.values) for r in rows]


async def fresh(
    http: httpx.AsyncClient, tok: str, query: dict[str, Any]
) -> list[tuple[str, int, Any]]:
    """The oracle: the first `limit` rows of the query, read now over HTTP."""
    body = {k: v for k, v in query.items() if k not in ("entity", "mode")}
    r = await http.post(f"/v1/entities/{query['entity']}/query", json=body, headers=auth(tok))
    assert r.status_code == 200, r.text
    return [(x["id"], x["version"], x["row"]) for x in r.json()["rows"]]


async def wait_for(check: Callable[[], Any], timeout: float = 10.0, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)


class Ws:
    """A websockets client: every frame is split, deltas are applied to their view."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.views: dict[str, ViewState] = {}
        self.messages: list[Message] = []  # everything but deltas, in order
        self.deltas: list[Message] = []
        self.frames = 0

    @classmethod
    async def connect(cls, url: str, tok: str | None = None, query_token: bool = False,
                      **kw: Any) -> Ws:
        headers = {}
        if tok is not None and not query_token:
            headers = auth(tok)
        elif tok is not None:
            url = f"{url}?token={tok}"
        ws = await websockets.connect(url, additional_headers=headers, **kw)
        return cls(ws)

    async def close(self) -> None:
        await self.ws.close()

    async def send(self, obj: Any) -> None:
        await self.ws.send(obj if isinstance(obj, str | bytes) else json.dumps(obj))

    async def read(self, timeout: float = 5.0) -> list[Message]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        self.frames += 1
        data = json.loads(raw)
        out = data if isinstance(data, list) else [data]
        for m in out:
            if m.get("type") == "delta":
                self.deltas.append(m)
                view = self.views.setdefault(m["sub"], ViewState(True, None))
                view.apply(m)
            else:
                self.messages.append(m)
        return out

    async def until(self, pred: Callable[[Message], bool], timeout: float = 10.0) -> Message:
        """Read until a message satisfies `pred` (also among those read before)."""
        for m in self.messages:
            if pred(m):
                self.messages.remove(m)
                return m
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no such message in time; others: {self.messages[-5:]}")
            for m in await self.read(left):
                if pred(m):
                    if m in self.messages:
                        self.messages.remove(m)
                    return m

    async def error(self, sub: str | None = None, timeout: float = 10.0) -> Message:
        return await self.until(lambda m: m.get("type") == "error" and m.get("sub") == sub,
                                timeout)

    async def subscribe(self, sub: str, query: dict[str, Any], timeout: float = 10.0) -> ViewState:
        window = query.get("mode", "window") == "window"
        self.views[sub] = ViewState(window, query.get("limit"))
        await self.send({"type": "subscribe", "sub": sub, "query": query})
        await self.synced(sub, timeout)
        return self.views[sub]

    async def synced(self, sub: str, timeout: float = 10.0) -> None:
        await self.settle(lambda: self.views[sub].synced, timeout)

    async def settle(self, check: Callable[[], bool], timeout: float = 10.0) -> None:
        """Read until `check()` holds."""
        deadline = time.monotonic() + timeout
        while not check():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("not settled in time")
            try:
                await self.read(min(left, 0.5))
            except TimeoutError:
                pass

    async def converge(self, http: httpx.AsyncClient, tok: str, sub: str,
                       query: dict[str, Any], timeout: float = 10.0) -> None:
        """Read until the view equals a fresh query (re-queried while waiting)."""
        deadline = time.monotonic() + timeout
        while True:
            want = await fresh(http, tok, query)
            view = self.views[sub]
            if view.synced and rows_of(view.current()) == want:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"view {rows_of(view.current())} != query {want}")
            try:
                await self.read(min(left, 0.2))
            except TimeoutError:
                pass


class SseReader:
    """Reads `text/event-stream` events from an httpx streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.comments = 0
        self.event: dict[str, str] = {}

    async def _next(self) -> dict[str, str]:
        async for line in self.lines:
            if not line:
                event, self.event = self.event, {}
                if "data" in event:  # a `retry:` alone is no event
                    return event
            elif line.startswith(":"):
                self.comments += 1
            else:
                name, _, value = line.partition(":")
                self.event[name] = value[1:] if value.startswith(" ") else value
        raise EOFError("the stream ended")

    async def next(self, timeout: float = 10.0) -> dict[str, str]:
        return await asyncio.wait_for(self._next(), timeout)
