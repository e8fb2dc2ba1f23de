"""`LiveClient`: live views over one WebSocket, and the HTTP data API (`http.HttpApi`).

Imports nothing of the server. Invariants:
- one connection carries every view of a client; it is owned by the client's TaskGroup
  (`async with LiveClient(...)`) and its task is the only writer of the connection's
  state (`_link.Link`). It tries the URLs given in turn, at once while some URL has not
  failed in this outage, then with capped, jittered backoff (`backoff.Backoff`; at once
  after a 1001 drain), and resubscribes every view declaring its synced window (a
  state-diff resume), else to a `reset` + snapshot (`.rows` keeps the last list meanwhile);
- errors reach the caller at once, typed (`errors`): `subscribe()` raises `Unavailable`
  as soon as every URL has failed, `Unauthorized`/`Forbidden` as soon as the token is
  refused (HTTP 401/403, close 4401/4403/4408), and the refusal of its query. A refused
  token is tried again only when the token callback then returns a different one, and
  a fresh token refused right away ends the connection for good (FAILED: every view
  ends with that error);
- every message is applied exactly as PROTOCOL.md section 3 says and checked
  (`view.ViewState`); a violation starts that subscription over instead of going on
  with a wrong list;
- with a token callback, a fresh token is sent over the socket before the current one
  expires, and asked for at every reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    WebSocketException,
)

from ._link import Link, LinkState
from ._token import TokenSource, token_expiry
from .backoff import Backoff
from .errors import CLOSE_CODES, LiveError, Unauthorized, Unavailable, error_for
from .http import HttpApi
from .live_view import LiveView
from .view import DigestMismatch, ProtocolViolation

__all__ = ["LiveClient"]

# a refused subscribe with one of these codes is final; with others it is asked again
_ENDS_A_VIEW = frozenset({"forbidden", "invalid_query", "too_many_subscriptions",
                          "duplicate_subscription", "invalid_message", "unauthorized"})
_REFUSALS = frozenset({4401, 4403, 4408})  # close codes that refuse the token
_DRAIN = 1001
_BACKOFF = Backoff()  # frozen: one default serves every client


@dataclass(slots=True)
class _Attempt:
    """How one connection attempt ended."""

    token: str | None = None  # the last token sent on it
    opened: bool = False  # `ready` arrived
    code: int | None = None  # the close code (None: no WebSocket, or no close frame)
    error: LiveError | None = None  # why it failed, or the connection-level error sent


class LiveClient(HttpApi):
    """Live views and the HTTP data API of one or more gateways of one cluster."""

    def __init__(
        self,
        urls: str | Sequence[str],
        token: TokenSource,
        *,
        backoff: Backoff | tuple[float, float] = _BACKOFF,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
    ) -> None:
        super().__init__([urls] if isinstance(urls, str) else list(urls), token, timeout,
                         connect_timeout)
        self.backoff = backoff if isinstance(backoff, Backoff) else Backoff(*backoff)
        self.connects = 0  # connections that got to `ready`
        self.attempts = 0  # connections tried
        self.last_error: LiveError | None = None  # the last connection-level error
        self._link = Link()
        self._views: dict[str, LiveView] = {}
        self._pending: set[LiveView] = set()  # views whose subscribe() is waiting
        self._ws: ClientConnection | None = None
        self._counter = 0
        self._group: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None

    @property
    def state(self) -> LinkState:
        """The connection's state now."""
        return self._link.state

    async def __aenter__(self) -> LiveClient:
        await super().__aenter__()
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._runner = self._group.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            self._runner.cancel()
        if self._group is not None:
            await self._group.__aexit__(None, None, None)
        if self._link.state is not LinkState.CLOSED:
            self._link.move(LinkState.CLOSED)
        for view in {*self._views.values(), *self._pending}:
            view._end()
        self._views.clear()
        await super().__aexit__(*exc)

    async def subscribe(self, query: dict[str, Any], *, wait: float | None = 10.0,
                        check: int | None = None) -> LiveView:
        """A live view of `query`. With `wait` (seconds), returns once its list is synced
        and raises at once what stops that: the query's refusal (`InvalidQuery`,
        `Forbidden`, ...), a refused token (`Unauthorized`), no gateway reachable
        (`Unavailable`); `Unavailable` too past `wait`. With `wait=None` it returns the
        view at once (it syncs whenever the connection is up; refusals come from its
        iterator). `check` (seconds, window mode) asks the server for a `check` of the
        list's digest that often; a digest that differs starts the view over and counts
        in `view.digest_mismatches`."""
        if self._runner is None or self._link.state is LinkState.CLOSED:
            raise RuntimeError("use the client as `async with LiveClient(...) as client`")
        link = self._link
        if link.state is LinkState.FAILED or (wait is not None and link.state is LinkState.DOWN):
            assert link.error is not None
            raise link.error
        self._counter += 1
        view = LiveView(self, f"v{self._counter}", query, check=check)
        self._views[view.sub] = view
        if self._ws is not None:
            await self._send(view._subscribe_message())
        if wait is None:
            return view
        self._pending.add(view)
        try:
            await view.wait_synced(wait)
        except BaseException:
            if not view.closed:
                await view.unsubscribe()
            raise
        finally:
            self._pending.discard(view)
        return view

    async def keep_alive(self, entity: str, row_id: str, row: dict[str, Any], ttl: float) -> None:
        """Write `row` with `ttl` seconds now and again at half its TTL, until cancelled
        (a presence row that disappears within `ttl` once its writer stops). Refusals
        (4xx) are raised; while the cluster is unavailable it retries sooner."""
        while True:
            try:
                await self.put(entity, row_id, row, ttl=ttl)
                pause = ttl / 2
            except LiveError as e:
                if not isinstance(e, Unavailable) and e.status is not None and e.status < 500:
                    raise
                pause = min(1.0, ttl / 10)
            await asyncio.sleep(pause)

    # -- what the views need (`live_view.ViewOwner`)

    async def _send(self, message: dict[str, Any]) -> None:
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(orjson.dumps(message).decode())

    def _forget(self, view: LiveView) -> None:
        if self._views.get(view.sub) is view:
            del self._views[view.sub]

    # -- the connection

    async def _run(self) -> None:
        """Connect, serve, and reconnect until closed or the token is refused for good."""
        failed: set[int] = set()  # the URLs that failed in this outage
        index, retry = 0, 0
        refused: _Attempt | None = None  # the last refusal, while no token was accepted
        while True:
            attempt = await self._attempt(self.urls[index % len(self.urls)],
                                          refused.token if refused else None)
            if attempt.opened:
                failed.clear()
                retry, refused = 0, None
                self._link.move(LinkState.CONNECTING)
            if attempt.code in _REFUSALS:
                if refused is not None or isinstance(self.token_source, str):
                    told = attempt.error or (refused.error if refused else None)
                    self._fail(told or Unauthorized("unauthorized", "the token was refused"))
                    return
                refused = attempt  # ask the callback again and retry this URL at once
                continue
            if attempt.opened:
                pause, retry = (0.0 if attempt.code == _DRAIN else self.backoff.delay(0)), 1
            else:
                failed.add(index % len(self.urls))
                pause = 0.0
                if len(failed) == len(self.urls):
                    self._down(attempt.error or Unavailable("unavailable", "no gateway answered"))
                    pause, retry = self.backoff.delay(retry), retry + 1
            index += 1  # the next try goes to the next gateway
            await asyncio.sleep(pause)

    async def _attempt(self, url: str, refused: str | None) -> _Attempt:
        """One connection to `url`, served until it closes."""
        self.attempts += 1
        attempt = _Attempt()
        try:
            token = attempt.token = await self.token()
        except Exception as e:  # the callback failed: like a gateway that did not answer
            attempt.error = Unavailable("unavailable", f"the token callback failed: {e!r}")
            return attempt
        if token == refused:  # the callback has nothing new: do not knock again
            attempt.code = 4401
            return attempt
        ws_url = url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/v1/ws"
        try:
            async with connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"},
                               open_timeout=self.connect_timeout, max_size=None) as ws:
                await self._session(ws, attempt, url)
        except InvalidStatus as e:
            status = e.response.status_code
            attempt.code = {401: 4401, 403: 4403}.get(status)
            attempt.error = error_for(None, f"{url}: HTTP {status} to the WebSocket handshake",
                                      status=status)
            if attempt.code is None:
                attempt.error = Unavailable("unavailable", f"{url}: not an lq gateway "
                                            f"(HTTP {status} to the WebSocket handshake)")
        except InvalidHandshake as e:
            attempt.error = Unavailable("unavailable", f"{url}: not an lq gateway ({e})")
        except (OSError, TimeoutError, WebSocketException) as e:
            attempt.error = Unavailable("unavailable", f"{url}: {e or type(e).__name__}")
        except Exception as e:  # a bug or a broken server: start over, never give up
            attempt.error = Unavailable("unavailable", f"{url}: {e!r}")
        finally:
            self._ws = None
            for view in self._views.values():
                view.state.synced = False
        return attempt

    async def _session(self, ws: ClientConnection, attempt: _Attempt, url: str) -> None:
        """Subscribe every view, then apply what arrives until the connection closes."""
        self._ws = ws
        for view in list(self._views.values()):
            view._restart()
            await self._send(view._subscribe_message())
        assert self._group is not None
        refresher: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(self.connect_timeout) as until_ready:
                async for raw in ws:
                    data = orjson.loads(raw)
                    for message in data if isinstance(data, list) else [data]:
                        if message.get("type") == "ready" and not attempt.opened:
                            until_ready.reschedule(None)
                            self._opened(attempt)
                            refresher = self._group.create_task(self._refresh(ws, attempt))
                        await self._dispatch(message, attempt)
        except ConnectionClosed:
            pass
        except TimeoutError:
            attempt.error = Unavailable("unavailable", f"{url}: no `ready` within "
                                        f"{self.connect_timeout} s (not an lq gateway?)")
            return
        finally:
            if refresher is not None:
                refresher.cancel()
        frame = ws.protocol.close_rcvd
        attempt.code = frame.code if frame is not None else None
        if attempt.code in CLOSE_CODES:
            told = attempt.error  # the connection-level error sent before the close
            if told is None or told.code != CLOSE_CODES[attempt.code]:
                reason = frame.reason if frame is not None and frame.reason else "closed"
                attempt.error = error_for(CLOSE_CODES[attempt.code], f"{url}: {reason}")
        elif not attempt.opened:
            attempt.error = Unavailable("unavailable", f"{url}: closed before it was ready")

    def _opened(self, attempt: _Attempt) -> None:
        attempt.opened = True
        attempt.error = None
        self.connects += 1
        self._link.move(LinkState.OPEN)

    def _down(self, error: LiveError) -> None:
        """Every URL failed: the waiting `subscribe()` calls raise it now."""
        self._link.move(LinkState.DOWN, error)
        for view in list(self._pending):
            self._forget(view)
            view._end(error)

    def _fail(self, error: LiveError) -> None:
        """The token was refused for good: every view ends with that error."""
        self._link.move(LinkState.FAILED, error)
        for view in {*self._views.values(), *self._pending}:
            self._forget(view)
            view._end(error)

    async def _refresh(self, ws: ClientConnection, attempt: _Attempt) -> None:
        """Send a fresh token (from the callback) before the current one expires."""
        if isinstance(self.token_source, str) or attempt.token is None:
            return
        token = attempt.token
        try:
            while (exp := token_expiry(token)) is not None:
                await asyncio.sleep(max(0.5, (exp - time.time()) * 0.8))
                token = await self.token()
                await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
                attempt.token = token
        except ConnectionClosed:
            return
        except Exception as e:  # the callback failed; at expiry the server closes with 4401
            self.last_error = Unauthorized("unauthorized", f"the token callback failed: {e!r}")

    async def _dispatch(self, message: dict[str, Any], attempt: _Attempt) -> None:
        kind, sub = message.get("type"), message.get("sub")
        if kind == "error" and sub is None:  # about the connection; a close may follow
            attempt.error = self.last_error = error_for(
                message.get("code"), str(message.get("message", "")))
            return
        view = self._views.get(sub) if isinstance(sub, str) else None
        if view is None:
            return
        if kind == "subscribed":
            view.acked, view.refusals = True, 0
        elif kind == "delta":
            try:
                view._apply(message)
            except DigestMismatch:
                view.digest_mismatches += 1  # the list diverged: a fresh snapshot repairs it
                await self._start_over(view)
            except (ProtocolViolation, KeyError, TypeError, ValueError):
                await self._start_over(view)
        elif kind == "error":
            error = error_for(message.get("code"), str(message.get("message", "")),
                              sub=view.sub)
            await self._view_error(view, error)

    async def _view_error(self, view: LiveView, error: LiveError) -> None:
        if not view.acked and view.declared and error.code == "invalid_message":
            # a gateway older than state-diff resume refuses the field: subscribe again
            # at once without it (a snapshot), rather than end the view
            view.state.resumable = False
            await self._send(view._subscribe_message())
            return
        if not view.acked:  # the subscribe was refused: the server holds nothing for it
            if view in self._pending or error.code in _ENDS_A_VIEW:
                self._forget(view)
                view._end(error)
            else:  # a resubscribe refused for now (overloaded): ask again after a pause
                assert self._group is not None
                self._group.create_task(self._resubscribe_later(view, self._ws))
        elif error.code == "forbidden":  # a refreshed token lost the scope: it has ended
            self._forget(view)
            view._end(error)
        else:  # a refused reanchor (the old window stays) or a dropped message
            view._refused(error)

    async def _resubscribe_later(self, view: LiveView, ws: ClientConnection | None) -> None:
        await asyncio.sleep(self.backoff.delay(view.refusals))
        view.refusals += 1
        if self._ws is ws and ws is not None and self._views.get(view.sub) is view:
            view._restart()
            await self._send(view._subscribe_message())

    async def _start_over(self, view: LiveView) -> None:
        """A protocol violation: subscribe again under a new name (a fresh reset)."""
        view.restarts += 1
        self._forget(view)
        await self._send({"type": "unsubscribe", "sub": view.sub})
        view.sub = f"{view.base}.{view.restarts}"
        view._restart(keep=False)
        self._views[view.sub] = view
        await self._send(view._subscribe_message())
