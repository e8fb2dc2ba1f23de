"""A connection's outbound queue, bounded in messages and bytes, numbered on the way out.

Invariants:
- Entries wait without a `seq`; `take` has each delta numbered by its subscription (the
  one owner of `seq`) as it hands it to the transport, so dropping queued deltas never
  shows the client a gap: `seq` grows by exactly 1 per message the client receives.
- Overflow policy: one subscription's group of messages (one shard frame's worth, or a
  catch-up snapshot) is admitted whole while the queue is under both bounds; otherwise
  that subscription's queued deltas are dropped and it falls behind (it says so itself,
  `Queued.fell_behind`). Its mirror keeps applying deltas; once the queue has drained
  below half its bounds, each subscription waiting for room (in the order they fell
  behind) is asked what to send (`Queued.caught_up`: `reset` + its mirror's window +
  `synced`, or nothing when the shard is asked to resync). So the queue holds at most
  its bounds plus one group, and nothing is lost silently.
- The byte bound counts what waits below the queue too (`below`: the frame being
  written and what the transport and the kernel hold for the connection, an upper bound
  kept by its `backlog.Backlog`; 0 where no one keeps it). When `below` is what would
  refuse a group or hold back a catch-up, it is read again first (`reread`), so both
  decide on a fresh reading: a client that stops reading fills the stack first, then
  overflows here, so the connection holds at most the byte bound plus one group plus
  one frame.
- Messages without `seq` (subscribed, pong, errors) are never dropped; past twice the
  bounds `push_control` refuses, and the transport closes the connection (overloaded).
- The outbox only queues: a subscription's counts (`seq`, `queued`) and whether it is
  behind are the subscription's, changed through the `Queued` methods it implements.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from .wire import compose

__all__ = ["Outbox", "Queued", "Taken"]

Taken = tuple[str | None, int, bytes]
"""(op, or the event name given to a message without seq; seq, 0 for those; the bytes)."""

_OVERHEAD = 48  # bytes a subscriber's `sub` and `seq` add to a shared delta body


class Queued(Protocol):
    """What the outbox needs of a subscription (`Subscription` implements it)."""

    @property
    def sub_json(self) -> bytes: ...  # its client-side name, JSON-encoded

    @property
    def queued(self) -> int: ...  # its deltas in this outbox now

    def enqueued(self, count: int) -> None:
        """`count` of its deltas were queued."""

    def numbered(self) -> int:
        """One of its queued deltas leaves for the client: its `seq`."""

    def unqueued(self) -> None:
        """Its queued deltas were dropped (none was numbered)."""

    def fell_behind(self) -> bool:
        """Its deltas no longer fit: True if it was not behind already."""

    def caught_up(self) -> list[tuple[str, bytes]] | None:
        """There is room again: what to send it, as (op, body), or None."""


class Outbox:
    __slots__ = (
        "below", "max_bytes", "max_messages", "messages", "on_overflow", "queue", "reread",
        "size", "waiting", "wake",
    )

    def __init__(
        self,
        max_messages: int,
        max_bytes: int,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.on_overflow = on_overflow
        self.queue: deque[tuple[Queued | None, str | None, bytes]] = deque()
        self.messages = 0
        self.size = 0
        self.below = 0  # bytes queued for the connection below this queue (see `Backlog`)
        self.reread: Callable[[], object] | None = None  # reads `below` again, if kept
        # subscriptions to ask `caught_up` when there is room, oldest first (a set
        # ordered by insertion); whether each is behind is its own fact
        self.waiting: dict[Queued, None] = {}
        self.wake = asyncio.Event()

    def __len__(self) -> int:
        return self.messages

    def push_control(self, data: bytes, event: str | None = None) -> bool:
        """Queue a message without seq (`event` names it for SSE); False when the queue
        is past twice its bounds."""
        if self.messages >= 2 * self.max_messages or self.size >= 2 * self.max_bytes:
            return False
        self.queue.append((None, event, data))
        self.messages += 1
        self.size += len(data)
        self.wake.set()
        return True

    def push_deltas(self, sub: Queued, ops: Sequence[str], bodies: Sequence[bytes]) -> bool:
        """Queue one group of `sub`'s deltas whole, or overflow `sub` (False)."""
        if (self.messages >= self.max_messages or self.size + self.below >= self.max_bytes
                ) and not self._room(1):
            self.overflow(sub)
            return False
        queue = self.queue
        count = len(bodies)
        if count == 1:  # most groups: one update for each of thousands of subscribers
            body = bodies[0]
            queue.append((sub, ops[0], body))
            size = len(body) + _OVERHEAD
        else:
            size = 0
            for op, body in zip(ops, bodies, strict=True):
                queue.append((sub, op, body))
                size += len(body) + _OVERHEAD
        self.messages += count
        self.size += size
        sub.enqueued(count)
        self.wake.set()
        return True

    def overflow(self, sub: Queued) -> None:
        """Drop `sub`'s queued deltas; it falls behind and waits for room."""
        self.drop(sub)
        if sub.fell_behind():
            self.waiting[sub] = None
            if self.on_overflow is not None:
                self.on_overflow()

    def wait_for_room(self, sub: Queued) -> None:
        """Ask `sub` what to send as soon as the queue is below half its bounds (now,
        if it is): how a new subscription starts, once `subscribed` is queued."""
        self.waiting[sub] = None
        self.catch_up()

    def drop(self, sub: Queued) -> None:
        """Remove `sub`'s queued deltas (it overflowed or ended); seq is not consumed."""
        if sub.queued:
            kept: deque[tuple[Queued | None, str | None, bytes]] = deque()
            messages = size = 0
            for entry in self.queue:
                if entry[0] is not sub:
                    kept.append(entry)
                    messages += 1
                    size += len(entry[2]) + (_OVERHEAD if entry[0] is not None else 0)
            self.queue, self.messages, self.size = kept, messages, size
            sub.unqueued()

    def forget(self, sub: Queued) -> None:
        """`sub` ended: nothing of it is sent any more."""
        self.drop(sub)
        self.waiting.pop(sub, None)

    def take(self, max_messages: int, max_bytes: int, stop_at_synced: bool = False) -> list[Taken]:
        """Up to the given amounts of queued messages, deltas numbered; then catch up."""
        out: list[Taken] = []
        queue = self.queue
        size = 0
        while queue and len(out) < max_messages and size < max_bytes:
            sub, op, body = queue.popleft()
            if sub is None:
                data = body
                out.append((op, 0, data))
                self.size -= len(body)
            else:
                seq = sub.numbered()
                data = compose(sub.sub_json, seq, body)
                out.append((op, seq, data))
                self.size -= len(body) + _OVERHEAD
            self.messages -= 1
            size += len(data)
            if stop_at_synced and op == "synced":
                break
        if not queue:
            self.size = 0
        self.catch_up()
        if not queue:
            self.wake.clear()
        return out

    def _room(self, share: int) -> bool:
        """Whether the queue is under `1/share` of its bounds, `below` read again first
        when it is what stands in the way."""
        if self.messages * share >= self.max_messages:
            return False
        if (self.size + self.below) * share < self.max_bytes:
            return True
        if self.reread is None or not self.below:
            return False
        self.reread()
        return (self.size + self.below) * share < self.max_bytes

    def catch_up(self) -> None:
        """Serve waiting subscriptions while the queue is below half its bounds."""
        while self.waiting and self._room(2):
            sub = next(iter(self.waiting))
            del self.waiting[sub]
            snapshot = sub.caught_up()
            if snapshot is not None:
                ops = [op for op, _ in snapshot]
                bodies = [body for _, body in snapshot]
                self.push_deltas(sub, ops, bodies)
