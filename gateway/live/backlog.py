"""Everything queued for one connection, wherever it waits, and the gateway's totals.

A connection's bytes wait in its outbox (`outbox.Outbox.size`), in its writer's hands
(the frame whose `send` has not returned: the stack refused more), and in the stack
below the app (`stack.Stack`: the transport's write buffer and the kernel's send queue).

Invariants:
- the outbox's admission and catch-up count what is below it: `Backlog` keeps
  `outbox.below` = the frame being written + the stack's bytes as last read + the
  frames sent since (`unread`). Nothing but our sends adds to the stack (the client's
  reading only drains it), so `below` is an upper bound; the outbox reads the stack
  again (`Outbox.reread` = `refresh`) before `below` makes it refuse a group or hold
  back a catch-up, so it decides on a fresh reading, and the connection holds at most
  the outbox's byte bound plus one group plus one frame. A send is not followed by a
  reading: a reader that keeps up costs one reading per byte bound's worth of frames
  (or per gauge pass), not one per frame;
- reading is cheap and never blocks (one `ioctl` per read); the writer is the only one
  that sets `writing`;
- the gauges (`totals`, read by `LiveService.counters` at every heartbeat and scrape)
  read the stack again only where it can hold bytes (`may_hold`: a frame being written,
  frames sent since the last reading, or bytes at it); a connection whose last reading
  was empty and that sent nothing since still holds nothing there, so its cached reading
  is exact. (The one exception: control frames that the server writes by itself, pings
  and the answers to the client's pings, a few bytes that the peer's acknowledgment
  clears.) So a heartbeat costs one `ioctl` per connection that sent or holds bytes,
  not one per connection.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from .outbox import Outbox
from .stack import Stack

__all__ = ["Backlog", "Held", "totals"]


class Held(NamedTuple):
    """Bytes queued for one connection, by where they wait."""

    outbox: int
    writing: int  # the frame whose send has not returned
    transport: int  # the transport's write buffer
    kernel: int  # the socket's send queue

    @property
    def total(self) -> int:
        return self.outbox + self.writing + self.transport + self.kernel

    @property
    def below(self) -> int:
        """What waits below the outbox."""
        return self.writing + self.transport + self.kernel


class Backlog:
    """One connection's queued bytes (its outbox, and its stack when known)."""

    __slots__ = ("outbox", "stack", "stack_bytes", "unread", "writing")

    def __init__(self, outbox: Outbox, stack: Stack | None) -> None:
        self.outbox = outbox
        self.stack = stack
        self.writing = 0
        self.stack_bytes = 0  # at the last reading
        self.unread = 0  # bytes of the frames sent since the last reading
        if stack is not None:
            outbox.reread = self.refresh

    def sending(self, size: int) -> None:
        """The writer took a frame of `size` bytes and calls `send`."""
        self.writing = size
        self.outbox.below = size + self.stack_bytes + self.unread

    def sent(self) -> None:
        """`send` returned: the frame is in the stack (or sent), counted there until the
        next reading (where no stack is known, nothing is counted below the outbox)."""
        if self.stack is not None:
            self.unread += self.writing
        self.writing = 0
        self.outbox.below = self.stack_bytes + self.unread

    def refresh(self) -> Held:
        """Read the stack now (and keep `outbox.below` up to date)."""
        stack = self.stack
        transport = kernel = 0
        if stack is not None:
            transport, kernel = stack.read()
        self.stack_bytes = transport + kernel
        self.unread = 0
        self.outbox.below = self.writing + self.stack_bytes
        return Held(self.outbox.size, self.writing, transport, kernel)

    @property
    def may_hold(self) -> bool:
        """Whether the stack can hold bytes now (a frame being written, frames sent
        since the last reading, or bytes at it); if not, it holds none: nothing but a
        send of ours can fill it."""
        return bool(self.writing or self.unread or self.stack_bytes)

    def held(self) -> Held:
        """What is queued now: the stack read again only where it `may_hold` bytes."""
        if self.may_hold:
            return self.refresh()
        return Held(self.outbox.size, 0, 0, 0)

    @property
    def behind(self) -> bool:
        """Whether a subscription of this connection waits for room (it overflowed)."""
        return bool(self.outbox.waiting)


def totals(backlogs: Iterable[Backlog]) -> dict[str, int]:
    """The gateway's gauges over its connections (`Backlog.held`: exact, reading the
    stack only where it can hold bytes): bytes queued in all and
    below the outboxes, the largest connection's, connections that hold at least half their byte
    bound (`slow`: the level under which an overflowed subscription is caught up, so a
    reader that keeps up never reaches it) and connections with a subscription
    waiting for room (`behind`, overflowed and not caught up yet)."""
    queued = below = largest = slow = behind = 0
    for backlog in backlogs:  # once a second over every connection: kept lean
        outbox = backlog.outbox
        if backlog.may_hold:  # `Backlog.held`, without a `Held` per quiet connection
            held = backlog.refresh()
            total, under = held.total, held.below
        else:
            total, under = outbox.size, 0
        queued += total
        below += under
        if total > largest:
            largest = total
        if total * 2 >= outbox.max_bytes:
            slow += 1
        if outbox.waiting:  # `Backlog.behind`
            behind += 1
    return {
        "queued_bytes": queued,
        "stack_bytes": below,
        "queued_bytes_max": largest,
        "slow_connections": slow,
        "behind_connections": behind,
    }
