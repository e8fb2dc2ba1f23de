"""`GET /v1/ws`: the WebSocket transport (PROTOCOL.md section 4).

One connection, two tasks: the endpoint reads (size check, rate limit, then the
session acts), and a writer owned by the endpoint's TaskGroup drains the outbox, one
frame per batch of ready messages (a JSON array when there are several), and enforces
the deadlines: authentication within `auth_timeout` (else 4408) and the token's expiry
(4401 unless refreshed). Close codes: 1001 drain, 1009 message too large, 1013
overloaded, 4400 a binary frame, 4401/4403 bad or expired token. WebSocket pings are
the server's (`lq gateway` configures uvicorn: every `ws_ping_interval`, closing after
two intervals without a pong).

Slow readers: only this connection's writer ever awaits its `send` (the demux queues
into outboxes without awaiting), so a client that stops reading stalls its own writer
and no one else's. What the stack holds for it counts against its outbox's byte bound
(`backlog.Backlog`, read after every send); while one of its subscriptions waits for
room that only the stack holds up, the idle writer reads the stack again (`_RECHECK_S`:
soon, then backing off to once a second), since a draining socket tells no one.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.types import Send
from starlette.websockets import WebSocket

from cluster.errors import LiveQueryError, Unauthorized

from ..auth import Principal
from ..credentials import credentials
from ..errors import CLOSE_CODES
from ..ratelimit import TokenBucket
from . import wire
from .backlog import Backlog
from .flush import Flusher, Resumed, Wake, send_now
from .service import LiveService
from .stack import SEND_KEY, Stack
from .ws_session import WsSession

__all__ = ["WS_PATH", "TokenBucket", "ws_routes"]

WS_PATH = "/v1/ws"
_BATCH_MESSAGES = 256  # a frame batches what is ready, up to this many messages
_BATCH_BYTES = 64 * 1024  # or about this many bytes
_RECHECK_S = (0.05, 1.0)  # a stalled connection's stack is read again after the first,
# then twice as long each time up to the second, while its socket does not drain


class WsConnection:
    """The endpoint's side of one connection (also what drain closes)."""

    __slots__ = ("auth_deadline", "backlog", "bucket", "closing", "counted", "done", "live",
                 "max_bytes", "outbox", "parked", "pending", "recheck", "send", "session",
                 "timer", "ws")

    def __init__(self, live: LiveService, websocket: WebSocket,
                 flusher: Flusher | None = None) -> None:
        g = live.config
        self.live = live
        self.ws = websocket
        # data frames go straight to the server's `send` (stack.SEND_KEY)
        self.send: Send = websocket.scope.get(SEND_KEY) or websocket.send
        self.outbox = live.new_outbox()
        self.session = WsSession(live, self.outbox)
        stack = Stack.of(websocket.scope)
        self.backlog = Backlog(self.outbox, stack)
        self.counted: Callable[[], None] | None = None  # the outbox's overflow count
        # under uvicorn (its transport found) the flusher writes for a parked writer
        if flusher is not None and stack is not None:
            self.outbox.wake = Wake(flusher, self)
            # an overflow must reach the writer even while it is parked: it rereads
            # the stack until there is room (`_idle`), which the flusher never does
            self.counted = self.outbox.on_overflow
            self.outbox.on_overflow = self._overflowed
        self.parked = False  # the writer waits in `_idle`
        self.pending: Resumed | None = None  # a send the flusher started, not finished
        self.bucket = TokenBucket(g.ws_rate, g.ws_burst)
        self.max_bytes = g.ws_max_message_bytes
        self.auth_deadline = time.time() + g.auth_timeout
        self.closing: tuple[int, str] | None = None
        self.done = False
        self.timer: asyncio.TimerHandle | None = None
        self.recheck = _RECHECK_S[0]

    def close(self, code: int, reason: str) -> None:
        if self.closing is None:
            self.closing = (code, reason)
        self._wake_writer()

    def _overflowed(self) -> None:
        if self.counted is not None:
            self.counted()
        self._wake_writer()

    def _wake_writer(self) -> None:
        wake = self.outbox.wake
        if isinstance(wake, Wake):
            wake.wake_writer()
        else:
            wake.set()

    def can_flush(self) -> bool:
        """`flush.Inline`: the writer is parked, no send in flight, nothing to close, and
        the token has not expired (past it, the writer closes the connection first)."""
        if not (self.parked and self.pending is None and self.closing is None
                and not self.done):
            return False
        s = self.session
        return s.principal is not None and time.time() < s.expires_at

    def flush_now(self) -> None:
        """`flush.Inline`: write one batch from the flusher's callback; a send that
        cannot finish now, or more than a batch, is handed to the writer."""
        outbox, backlog = self.outbox, self.backlog
        taken = outbox.take(_BATCH_MESSAGES, _BATCH_BYTES)
        if taken:
            frame = wire.batch([data for _, _, data in taken])
            backlog.sending(len(frame))
            try:
                self.pending = send_now(self.send({"type": "websocket.send",
                                                   "text": frame.decode()}))
            except Exception:
                self.done = True  # gone: the writer stops; the reader sees the disconnect
                self._wake_writer()
                return
            if self.pending is None:
                backlog.sent()
        if self.pending is not None or outbox.queue or outbox.waiting:
            self._wake_writer()

    def _arm(self) -> None:
        """Wake the writer at the next deadline (authentication or token expiry)."""
        if self.timer is not None:
            self.timer.cancel()
        s = self.session
        deadline = self.auth_deadline if s.principal is None else s.expires_at
        if not math.isinf(deadline):
            delay = max(0.0, deadline - time.time()) + 0.01
            self.timer = asyncio.get_running_loop().call_later(delay, self._wake_writer)

    async def run(self) -> None:
        live, ws = self.live, self.ws
        found: tuple[Principal, float] | None = None
        refused = unavailable = ""
        try:
            found = await credentials(live.auth, live.tickets, ws.headers, ws.query_params)
        except Unauthorized as e:
            refused = str(e)
        except LiveQueryError as e:  # Redis away while redeeming a ticket
            unavailable = str(e)
        await ws.accept()
        if unavailable:
            await ws.close(CLOSE_CODES["overloaded"], "try again later")
            return
        if live.draining:
            await ws.close(CLOSE_CODES["going_away"], "the gateway is shutting down")
            return
        if live.full():
            await ws.close(CLOSE_CODES["overloaded"], "the gateway is at its connection limit")
            return
        if refused or (found is not None and not self.session.admit(*found)):
            if refused:
                self.session.error("unauthorized", refused)
            self.close(CLOSE_CODES["unauthorized"], "unauthorized")
        live.connected(self)
        try:
            self._arm()
            async with asyncio.TaskGroup() as group:
                writer = group.create_task(self._write())
                try:
                    await self._read()
                finally:
                    self.done = True
                    writer.cancel()
        finally:
            if self.timer is not None:
                self.timer.cancel()
            live.disconnected(self)
            await self.session.end()

    async def _read(self) -> None:
        session = self.session
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if self.closing is not None:
                continue
            text = message.get("text")
            if text is None:
                self.close(CLOSE_CODES["protocol"], "send JSON messages as text frames")
                continue
            if len(text) * 4 > self.max_bytes and len(text.encode()) > self.max_bytes:
                self.close(CLOSE_CODES["too_big"], f"messages are at most {self.max_bytes} bytes")
                continue
            if not self.bucket.take():
                session.error("rate_limited", "too many messages; this one was dropped")
            else:
                authed = session.principal
                await session.handle(text)
                if session.principal is not authed:
                    self._arm()
            if session.overloaded:
                self.close(CLOSE_CODES["overloaded"], "the connection is not reading its messages")

    def _deadline_passed(self) -> None:
        s, now = self.session, time.time()
        if s.principal is None and now >= self.auth_deadline:
            s.error("unauthorized", "no authentication within the time allowed")
            self.close(CLOSE_CODES["auth_timeout"], "no authentication in time")
        elif s.principal is not None and now >= s.expires_at:
            s.error("unauthorized", "the token has expired; reconnect with a fresh one")
            self.close(CLOSE_CODES["unauthorized"], "the token has expired")

    async def _write(self) -> None:
        outbox, backlog = self.outbox, self.backlog
        try:
            while not self.done:
                if not outbox.queue and self.closing is None and self.pending is None:
                    self.parked = True
                    try:
                        await self._idle()
                    finally:
                        self.parked = False
                if self.pending is not None:  # a send the flusher could not finish
                    await self.pending
                    self.pending = None
                    backlog.sent()
                self._deadline_passed()
                if self.closing is not None:
                    await self._flush_and_close()
                    return
                await self._send_batch()
        except Exception:
            return  # the connection is gone; the reader sees the disconnect

    async def _send_batch(self) -> None:
        """Send one frame of what is queued. Its own frame, so that its bytes are
        dropped once sent: a parked writer holds no frame."""
        taken = self.outbox.take(_BATCH_MESSAGES, _BATCH_BYTES)
        if taken:
            frame = wire.batch([data for _, _, data in taken])
            self.backlog.sending(len(frame))
            await self.send({"type": "websocket.send", "text": frame.decode()})
            self.backlog.sent()

    async def _idle(self) -> None:
        """Wait for messages. While a subscription waits for room that the stack holds
        up, read the stack again (backing off while it does not drain) and catch up what
        fits."""
        outbox = self.outbox
        if outbox.waiting:  # (also with the stack read empty: it may have drained since)
            try:
                async with asyncio.timeout(self.recheck):
                    await outbox.wake.wait()
            except TimeoutError:
                below = outbox.below
                self.backlog.refresh()
                outbox.catch_up()
                drained = outbox.below < below or not outbox.waiting
                self.recheck = _RECHECK_S[0] if drained else min(_RECHECK_S[1],
                                                                 self.recheck * 2)
        else:
            self.recheck = _RECHECK_S[0]
            await outbox.wake.wait()
        outbox.wake.clear()

    async def _flush_and_close(self) -> None:
        assert self.closing is not None
        code, reason = self.closing
        taken = [d for _, seq, d in self.outbox.take(_BATCH_MESSAGES, _BATCH_BYTES) if not seq]
        try:
            if taken:
                frame = wire.batch(taken).decode()
                await asyncio.wait_for(self.ws.send({"type": "websocket.send", "text": frame}), 1)
            await asyncio.wait_for(self.ws.close(code, reason), 1)
        except Exception:
            return


def ws_routes(live: LiveService) -> list[BaseRoute]:
    flusher = Flusher()  # one per app: its callback runs in the app's loop

    async def endpoint(websocket: WebSocket) -> None:
        await WsConnection(live, websocket, flusher).run()

    return [WebSocketRoute(WS_PATH, endpoint)]
