"""Frames for idle WebSocket connections written once per loop turn, from one callback,
instead of one task wake-up per connection.

A fan-out queues one message into thousands of outboxes (the demux, synchronously).
Waking each connection's writer task to send it costs more than the send itself (a
future, a scheduled callback and a task step per connection). So a connection whose
writer is parked lets its outbox's `wake` mark it in the gateway's `Flusher` instead;
once the loop turn is over, the flusher asks each marked connection to write what is
queued itself (`WsConnection.flush_now`), calling the server's ASGI `send` and stepping
the coroutine by hand (`send_now`).

Through ASGI this is as far as it goes: `send` is a coroutine per connection and per
frame; no ASGI server takes one frame's bytes for many connections. What can be saved is
our task wake-up per connection: uvicorn's WebSocket `send` runs to its end without
suspending while the transport accepts writes (below its high-water mark), so stepping it
once writes the frame. When it does suspend (the transport is paused: a slow reader),
the started send is handed to the connection's writer (`Resumed`), which finishes it
inside its task like any await; the callback never waits, so a slow reader slows no one
else. Only connections whose transport `gateway.front.Front` found (uvicorn's) are flushed
here; under another server (granian) every frame goes through the writer task.

Invariants:
- a connection's frames leave in queue order: only one of the writer task and the
  flusher sends for a connection at a time (the flusher acts only while the writer is
  parked with no send in flight; a send it started and could not finish is the writer's
  to finish before it takes anything else);
- each connection is in the dirty list at most once per turn (`Wake.marked`), so the
  list is bounded by the number of connections; the callback runs once per turn that
  marked something, and every marked connection is either flushed or its writer woken
  (an unexpected error in one is logged and leaves it to its writer);
- `Wake.set` never wakes the writer of a connection the flusher can serve; `wake_writer`
  always does (closing, deadlines, and what the flusher hands over).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, Protocol

from cluster.logfmt import emit

__all__ = ["Flusher", "Inline", "Resumed", "Wake", "send_now"]

log = logging.getLogger("lq.gateway")


class Inline(Protocol):
    """What the flusher needs of a connection."""

    def can_flush(self) -> bool:
        """Whether the writer is parked with no send in flight (the flusher may send)."""

    def flush_now(self) -> None:
        """Write what is queued, from the flusher's callback."""


class Resumed:
    """A send that suspended when stepped by hand: awaiting it finishes it (in the
    awaiting task), forwarding what it waits on to that task's loop."""

    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, None], yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    def __await__(self) -> Generator[Any, None, None]:
        coro, yielded = self.coro, self.yielded
        while True:
            try:
                sent = yield yielded
            except BaseException as e:  # cancellation: passed into the send
                try:
                    yielded = coro.throw(e)
                except StopIteration:
                    return
                continue
            try:
                yielded = coro.send(sent)
            except StopIteration:
                return


def send_now(send: Awaitable[None] | Coroutine[Any, Any, None]) -> Resumed | None:
    """Step `send` (a fresh coroutine) once: None when it finished, else the `Resumed`
    that finishes it. Its own exceptions propagate."""
    if not isinstance(send, Coroutine):  # not steppable by hand: let a task await it
        async def later() -> None:
            await send
        return Resumed(later(), None)
    try:
        yielded = send.send(None)
    except StopIteration:
        return None
    return Resumed(send, yielded)


class Wake(asyncio.Event):
    """An outbox's `wake` for a connection the flusher serves: `set` marks it for the
    flusher while its writer is parked, and wakes the writer otherwise."""

    def __init__(self, flusher: Flusher, conn: Inline) -> None:
        super().__init__()
        self.flusher = flusher
        self.conn = conn
        self.marked = False

    def set(self) -> None:
        if self.conn.can_flush():
            self.flusher.mark(self)
        else:
            super().set()

    def wake_writer(self) -> None:
        super().set()


class Flusher:
    """The gateway's marked connections, flushed by one callback per loop turn."""

    __slots__ = ("dirty", "scheduled")

    def __init__(self) -> None:
        self.dirty: list[Wake] = []  # each connection at most once (Wake.marked)
        self.scheduled = False

    def mark(self, wake: Wake) -> None:
        if wake.marked:
            return
        if not self.scheduled:  # marked only once a flush is sure to come
            asyncio.get_running_loop().call_soon(self.flush)
            self.scheduled = True
        wake.marked = True
        self.dirty.append(wake)

    def flush(self) -> None:
        """Each marked connection writes what it has (or hands it to its writer); one
        that this flush did not reach (it was interrupted) is handed to its writer."""
        self.scheduled = False
        dirty, self.dirty = self.dirty, []
        done = 0  # the index being flushed; all of them once the loop ends
        try:
            for done, wake in enumerate(dirty):  # noqa: B007 (read in finally)
                wake.marked = False
                try:
                    if wake.conn.can_flush():
                        wake.conn.flush_now()
                        continue
                except Exception as e:  # a bug, not the connection: its writer takes over
                    emit(log, logging.ERROR, msg="inline flush failed", error=repr(e))
                wake.wake_writer()
            done = len(dirty)
        finally:
            for wake in dirty[done:]:  # only after an interruption: in no list any more
                wake.marked = False
                wake.wake_writer()
