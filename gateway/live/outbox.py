"""A connection's outbound queue, bounded in messages and bytes, numbered on the way out.

Invariants:
- Entries wait without a `seq`; `take` numbers each delta with its subscription's next
  `seq` as it hands it to the transport, so dropping queued deltas never shows the
  client a gap: `seq` grows by exactly 1 per message the client receives.
- Overflow policy: one subscription's group of messages (one shard frame's worth, or a
  catch-up snapshot) is admitted whole while the queue is under both bounds; otherwise
  that subscription's queued deltas are dropped and it is marked *behind*. Its mirror
  keeps applying deltas; once the queue has drained below half its bounds, a behind
  subscription gets `reset` + its mirror's window + `synced` (or, when the mirror cannot
  serve, the shard is asked to resync). So the queue holds at most its bounds plus one
  group, and nothing is lost silently.
- Messages without `seq` (subscribed, pong, errors) are never dropped; past twice the
  bounds `push_control` refuses, and the transport closes the connection (overloaded).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .wire import compose

if TYPE_CHECKING:
    from .subscription import Subscription

__all__ = ["Outbox", "Taken"]

Taken = tuple[str | None, int, bytes]
"""(op, or the event name given to a message without seq; seq, 0 for those; the bytes)."""

_OVERHEAD = 48  # bytes a subscriber's `sub` and `seq` add to a shared delta body


class Outbox:
    __slots__ = (
        "behind", "max_bytes", "max_messages", "messages", "on_overflow", "queue", "size", "wake",
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
        self.queue: deque[tuple[Subscription | None, str | None, bytes]] = deque()
        self.messages = 0
        self.size = 0
        self.behind: dict[Subscription, None] = {}  # insertion-ordered set
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

    def push_deltas(self, sub: Subscription, ops: Sequence[str], bodies: Sequence[bytes]) -> bool:
        """Queue one group of `sub`'s deltas whole, or overflow `sub` (False)."""
        if self.messages >= self.max_messages or self.size >= self.max_bytes:
            self.overflow(sub)
            return False
        queue = self.queue
        size = 0
        for op, body in zip(ops, bodies, strict=True):
            queue.append((sub, op, body))
            size += len(body) + _OVERHEAD
        self.messages += len(bodies)
        self.size += size
        sub.queued += len(bodies)
        self.wake.set()
        return True

    def overflow(self, sub: Subscription) -> None:
        """Drop `sub`'s queued deltas and mark it behind (caught up later)."""
        self.drop(sub)
        if sub not in self.behind:
            self.behind[sub] = None
            sub.behind = True
            if self.on_overflow is not None:
                self.on_overflow()

    def drop(self, sub: Subscription) -> None:
        """Remove `sub`'s queued deltas (it overflowed or ended); seq is not consumed."""
        if sub.queued:
            kept: deque[tuple[Subscription | None, str | None, bytes]] = deque()
            messages = size = 0
            for entry in self.queue:
                if entry[0] is not sub:
                    kept.append(entry)
                    messages += 1
                    size += len(entry[2]) + (_OVERHEAD if entry[0] is not None else 0)
            self.queue, self.messages, self.size = kept, messages, size
            sub.queued = 0

    def forget(self, sub: Subscription) -> None:
        """`sub` ended: nothing of it is sent any more."""
        self.drop(sub)
        self.behind.pop(sub, None)

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
                sub.seq += 1
                sub.queued -= 1
                data = compose(sub.sub_json, sub.seq, body)
                out.append((op, sub.seq, data))
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

    def catch_up(self) -> None:
        """Serve behind subscriptions while the queue is below half its bounds."""
        while (
            self.behind
            and self.messages * 2 < self.max_messages
            and self.size * 2 < self.max_bytes
        ):
            sub = next(iter(self.behind))
            del self.behind[sub]
            snapshot = sub.caught_up()
            if snapshot is not None:
                ops = [op for op, _ in snapshot]
                bodies = [body for _, body in snapshot]
                self.push_deltas(sub, ops, bodies)
