"""The Python client of lq: live views over one WebSocket, and the HTTP data API.

Importable with the standard library, `websockets` and `httpx` only (nothing of the
server). Invariants:
- one connection carries every subscription of a client; it is owned by the client's
  TaskGroup (`async with LiveClient(...)`), and it reconnects with jittered exponential
  backoff, rotating over the gateway URLs given, and resubscribes every live view, whose
  list then starts over with the server's `reset` + snapshot (`.rows` keeps the last
  known list meanwhile, with `.synced` False);
- every message is applied exactly as PROTOCOL.md section 3 says and checked
  (`ViewState`); a violation starts that subscription over instead of going on with a
  wrong list;
- the token comes from a string or a callback; with a callback it is refreshed over the
  socket before it expires, and fetched again for every reconnect.

Usage: docs/live.md ("Python client").
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import websockets

from ._client_http import HttpApi, LiveError
from ._client_view import ProtocolViolation, Row, ViewState

__all__ = ["LiveClient", "LiveError", "LiveView", "ProtocolViolation", "Row"]

TokenSource = str | Callable[[], str] | Callable[[], Awaitable[str]]
_CHANGES = 10_000  # changes kept for a view's iterator; the oldest go first past that


def token_expiry(token: str) -> float | None:
    """The `exp` of a JWT, read without verifying it (the server verifies)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp")
        return float(exp) if isinstance(exp, int | float) else None
    except (IndexError, ValueError, AttributeError):
        return None


class LiveView:
    """One subscription: `.rows` is the list now; iterate it for every change."""

    def __init__(self, client: LiveClient, sub: str, query: dict[str, Any]) -> None:
        self.client = client
        self.base = sub
        self.sub = sub
        self.query = dict(query)
        mode = query.get("mode", "window")
        self.state = ViewState(mode == "window", query.get("limit"))
        self.changes: asyncio.Queue[dict[str, Any] | LiveError] = asyncio.Queue()
        self.missed = 0
        self.restarts = 0
        self.error: LiveError | None = None
        self.closed = False
        self._synced = asyncio.Event()

    @property
    def rows(self) -> list[Row]:
        return self.state.current()

    @property
    def synced(self) -> bool:
        return self.state.synced

    async def wait_synced(self, timeout: float = 10.0) -> None:
        """Until the list equals the query result (or the server refused it)."""
        await asyncio.wait_for(self._synced.wait(), timeout)
        if self.error is not None and not self.state.synced:
            raise self.error

    def _push(self, item: dict[str, Any] | LiveError) -> None:
        if self.changes.qsize() >= _CHANGES:
            self.changes.get_nowait()
            self.missed += 1
        self.changes.put_nowait(item)

    def _apply(self, message: dict[str, Any]) -> None:
        self.state.apply(message)
        if message.get("op") == "synced":
            self._synced.set()
        self._push(message)

    def _fail(self, error: LiveError) -> None:
        self.error = error
        self._synced.set()
        self._push(error)

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._changes()

    async def _changes(self) -> AsyncIterator[dict[str, Any]]:
        while not self.closed or not self.changes.empty():
            item = await self.changes.get()
            if isinstance(item, LiveError):
                raise item
            yield item

    async def reanchor(self, after: str | None, limit: int | None = None) -> None:
        """Slide the window (window mode); `after=None` goes back to the top."""
        self.query["after"] = after
        if limit is not None:
            self.query["limit"] = limit
            self.state.limit = limit
        message: dict[str, Any] = {"type": "reanchor", "sub": self.sub, "after": after}
        if limit is not None:
            message["limit"] = limit
        self._synced.clear()
        await self.client._send(message)

    async def unsubscribe(self) -> None:
        self.closed = True
        self.client._views.pop(self.sub, None)
        await self.client._send({"type": "unsubscribe", "sub": self.sub})
        self.changes.put_nowait(LiveError("closed", "unsubscribed", self.sub))


class LiveClient(HttpApi):
    """Live views and the HTTP data API of one or more gateways of one cluster."""

    def __init__(
        self,
        urls: str | Sequence[str],
        token: TokenSource,
        *,
        backoff: tuple[float, float] = (0.1, 5.0),
        timeout: float = 10.0,
    ) -> None:
        super().__init__([urls] if isinstance(urls, str) else list(urls), timeout)
        self.token_source = token
        self.backoff = backoff
        self.connects = 0
        self._views: dict[str, LiveView] = {}
        self._ws: Any = None
        self._connected = asyncio.Event()
        self._counter = 0
        self._group: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self.last_error: Exception | None = None

    async def token(self) -> str:
        source = self.token_source
        if isinstance(source, str):
            return source
        value = source()
        return await value if inspect.isawaitable(value) else value

    async def __aenter__(self) -> LiveClient:
        await super().__aenter__()
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._runner = self._group.create_task(self._run())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._closing = True
        if self._runner is not None:
            self._runner.cancel()
        if self._group is not None:
            await self._group.__aexit__(None, None, None)
        await super().__aexit__(*exc)

    async def subscribe(self, query: dict[str, Any], *, wait: float | None = 10.0) -> LiveView:
        """A live view of `query`; with `wait`, returns once its list is synced (raises
        LiveError when the server refuses the query)."""
        self._counter += 1
        view = LiveView(self, f"v{self._counter}", query)
        self._views[view.sub] = view
        if self._ws is not None:
            await self._send({"type": "subscribe", "sub": view.sub, "query": view.query})
        if wait is not None:
            await view.wait_synced(wait)
        return view

    async def keep_alive(self, entity: str, row_id: str, row: dict[str, Any], ttl: float) -> None:
        """Write `row` with `ttl` seconds now and again at half its TTL, until cancelled
        (a presence row that disappears within `ttl` once its writer stops)."""
        while True:
            try:
                await self.put(entity, row_id, row, ttl=ttl)
                pause = ttl / 2
            except (LiveError, OSError) as e:
                if isinstance(e, LiveError) and e.status is not None and e.status < 500:
                    raise
                pause = min(1.0, ttl / 10)
            await asyncio.sleep(pause)

    # -- the connection

    async def _send(self, message: dict[str, Any]) -> None:
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(json.dumps(message))

    async def _run(self) -> None:
        delay, index = self.backoff[0], 0
        while not self._closing:
            url = self.urls[index % len(self.urls)]
            ws_url = url.replace("http://", "ws://").replace("https://", "wss://") + "/v1/ws"
            try:
                token = await self.token()
                headers = {"Authorization": f"Bearer {token}"}
                async with websockets.connect(ws_url, additional_headers=headers,
                                              open_timeout=self.timeout, max_size=None) as ws:
                    delay = self.backoff[0]
                    await self._session(ws, token)
                    code = ws.close_code
            except (OSError, TimeoutError, websockets.WebSocketException) as e:
                code = getattr(getattr(e, "rcvd", None), "code", None)
            except Exception as e:  # a bug or a broken server: start over, never give up
                self.last_error = e
                code = None
            finally:
                self._ws = None
                self._connected.clear()
                for view in self._views.values():
                    view.state.synced = False
            if self._closing:
                return
            index += 1  # the next try goes to the next gateway (1001: this one drains)
            pause = 0.0 if code == 1001 else delay * (0.5 + random.random())
            delay = min(self.backoff[1], delay * 2)
            await asyncio.sleep(pause)

    async def _session(self, ws: Any, token: str) -> None:
        self._ws = ws
        self.connects += 1
        for view in list(self._views.values()):
            view.state.restart()
            await ws.send(json.dumps({"type": "subscribe", "sub": view.sub, "query": view.query}))
        self._connected.set()
        async with asyncio.TaskGroup() as group:
            refresher = group.create_task(self._refresh(ws, token))
            try:
                async for raw in ws:
                    data = json.loads(raw)
                    for message in data if isinstance(data, list) else [data]:
                        await self._dispatch(message)
            except websockets.ConnectionClosed:
                pass  # the caller reads the close code and reconnects
            finally:
                refresher.cancel()

    async def _refresh(self, ws: Any, token: str) -> None:
        """Send a fresh token (from the callback) before the current one expires."""
        if isinstance(self.token_source, str):
            return
        while True:
            exp = token_expiry(token)
            if exp is None:
                return
            await asyncio.sleep(max(0.5, (exp - time.time()) * 0.8))
            token = await self.token()
            try:
                await ws.send(json.dumps({"type": "auth", "token": token}))
            except websockets.ConnectionClosed:
                return

    async def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        view = self._views.get(message.get("sub") or "")
        if view is None:
            return
        if kind == "delta":
            try:
                view._apply(message)
            except ProtocolViolation as e:
                await self._start_over(view, str(e))
        elif kind == "error":
            error = LiveError(message.get("code", "internal"), message.get("message", ""),
                              view.sub)
            if error.code in ("invalid_query", "forbidden", "too_many_subscriptions",
                              "duplicate_subscription") and not view.state.synced:
                self._views.pop(view.sub, None)
                view.closed = True
            view._fail(error)

    async def _start_over(self, view: LiveView, why: str) -> None:
        """A protocol violation: subscribe again under a new name (a fresh reset)."""
        view.restarts += 1
        self._views.pop(view.sub, None)
        await self._send({"type": "unsubscribe", "sub": view.sub})
        view.sub = f"{view.base}.{view.restarts}"
        view.state.restart()
        self._views[view.sub] = view
        await self._send({"type": "subscribe", "sub": view.sub, "query": view.query})
