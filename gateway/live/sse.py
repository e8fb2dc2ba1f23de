"""`GET /v1/sse?q=<query>`: Server-Sent Events, one subscription per stream (PROTOCOL.md 5).

Invariants: the token, the query, the scope and a `resume` declaration's shape are
checked before the stream starts, so every refusal is a 4xx JSON error; a `Last-Event-ID`
that can be continued wins over `resume`, which otherwise makes the stream (started over
or new) begin with a state-diff resume; once started, each live message is one event
(`event: <op>`, `id: <stream>.<seq>`, `data: <message>`), a comment goes out whenever
nothing was written for `sse_keepalive` seconds (at most 15), the token's expiry ends the
stream with a `token_expired` event (then `error`, for older clients), and drain ends it.
The response owns one task (the disconnect watcher) in its TaskGroup.
"""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from ..errors import Overloaded
from ..routing import RawRoute
from . import wire
from .backlog import Backlog
from .inputs import caller, check_live_params, query_param, resume_param
from .outbox import Taken
from .service import LiveService
from .sse_streams import SseStream, SseStreams, new_name

__all__ = ["SSE_PATH", "sse_routes"]

SSE_PATH = "/v1/sse"
_PARAMS = frozenset({"q", "token", "ticket", "last_event_id", "resume"})
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def _event(taken: Taken, name: str) -> bytes:
    op, seq, data = taken
    kind = (op or "message").encode()
    if seq:
        return b"event: %s\nid: %s.%d\ndata: %s\n\n" % (kind, name.encode(), seq, data)
    return b"event: %s\ndata: %s\n\n" % (kind, data)


class SseResponse(Response):
    """Streams one `SseStream` until disconnect, expiry or drain."""

    def __init__(self, streams: SseStreams, stream: SseStream, replay: list[bytes],
                 expires_at: float) -> None:
        super().__init__(status_code=200)
        self.streams = streams
        self.stream = stream
        self.replay = replay
        self.expires_at = expires_at
        self.ended = asyncio.Event()
        self.keepalive = min(15.0, streams.live.config.sse_keepalive)
        self.backlog = Backlog(stream.outbox, None)  # its outbox (the stack is not read)

    def end(self) -> None:
        self.ended.set()
        self.stream.outbox.wake.set()

    def close(self, code: int, reason: str) -> None:
        """Drain: the response ends (SSE has no close code; the client reconnects)."""
        self.end()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        self.stream.end_response = self.end
        self.stream.detached_at = None
        live = self.streams.live
        live.connected(self)
        try:
            async with asyncio.TaskGroup() as group:
                watcher = group.create_task(self._watch(receive))
                try:
                    await self._stream(send)
                finally:
                    watcher.cancel()
        finally:
            live.disconnected(self)
            if self.stream.end_response == self.end:
                self.streams.detached(self.stream)
        try:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.end()

    async def _stream(self, send: Send) -> None:
        stream, outbox = self.stream, self.stream.outbox
        first = b"retry: 1000\n\n" + b"".join(self.replay)
        await send({"type": "http.response.body", "body": first, "more_body": True})
        last_write = time.monotonic()
        while not self.ended.is_set():
            left = self.expires_at - time.time()
            if left <= 0:
                error = wire.error("unauthorized", "the token has expired", stream.name)
                # `token_expired` first (a browser cannot confuse it with EventSource's
                # own `error`), then `error` for clients older than that name
                body = _event(("token_expired", 0, error), stream.name) + _event(
                    ("error", 0, error), stream.name)
                await send({"type": "http.response.body", "body": body, "more_body": True})
                return
            wait = min(self.keepalive - (time.monotonic() - last_write), left)
            if not outbox.queue:
                try:
                    await asyncio.wait_for(outbox.wake.wait(), max(0.0, wait))
                except TimeoutError:
                    pass
                outbox.wake.clear()
            if self.ended.is_set():
                return
            taken = outbox.take(256, 256 * 1024)
            if taken:
                events = []
                for item in taken:
                    event = _event(item, stream.name)
                    if item[1]:
                        stream.remember(item[1], event)
                    events.append(event)
                body = b"".join(events)
            elif time.monotonic() - last_write >= self.keepalive:
                body = b": keep-alive\n\n"
            else:
                continue
            await send({"type": "http.response.body", "body": body, "more_body": True})
            last_write = time.monotonic()


def sse_routes(live: LiveService, streams: SseStreams) -> list[BaseRoute]:
    async def sse(request: Request) -> Response:
        check_live_params(request, _PARAMS)
        who, expires_at = await caller(live.auth, live.tickets, request)
        q, raw = query_param(request)
        resume = resume_param(request)
        if live.draining:
            raise Overloaded("the gateway is shutting down; reconnect to another")
        last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        found = streams.find(last, who.tenant, q, resume) if last else None
        if found is not None:
            stream, replay = found
            return SseResponse(streams, stream, replay, expires_at)
        if not streams.room():
            raise Overloaded("this gateway holds its maximum of streams; try later")
        live.check_room(0)
        stream = SseStream(new_name(), who.tenant, q, live.new_outbox())
        stream.sub = await live.open(who, stream.name, raw, stream.outbox, resume=resume)
        streams.add(stream)
        stream.outbox.push_control(
            wire.control({"type": "subscribed", "sub": stream.name}), "subscribed"
        )
        live.announce(stream.sub)
        stream.detached_at = time.monotonic()  # lingers from now if the client never reads
        return SseResponse(streams, stream, [], expires_at)

    return [RawRoute(SSE_PATH, sse, methods=["GET"])]

