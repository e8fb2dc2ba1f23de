"""The `check` messages of the subscriptions that asked for them (PROTOCOL.md section 3).

Invariants: a subscription is here from its `subscribed` until it is closed (dropped at
its next due time after that), so the heap holds at most one entry per live subscription
that asked; each due subscription gets at most one `check` per interval, queued in its
outbox like a delta (numbered there, so it follows every delta its mirror has applied
and carries the digest of the client's list at its `seq`), and none while it is not live,
is behind, or its mirror cannot vouch for the list (`Subscription.check`). One small
message per interval per subscription: the loop's cost is the due entries only.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time

from .stats import LiveStats
from .subscription import Subscription

__all__ = ["Checks"]


class Checks:
    def __init__(self, stats: LiveStats, tick_s: float = 0.25) -> None:
        self.stats = stats
        self.tick_s = tick_s
        self._heap: list[tuple[float, int, Subscription]] = []
        self._order = itertools.count()  # ties never compare subscriptions

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, sub: Subscription) -> None:
        """Start `sub`'s checks (if it asked for them): the first one interval from now."""
        if sub.check_s is not None:
            due = time.monotonic() + sub.check_s
            heapq.heappush(self._heap, (due, next(self._order), sub))

    def due(self, now: float) -> int:
        """Queue the checks due at `now`; how many were queued."""
        heap, sent = self._heap, 0
        while heap and heap[0][0] <= now:
            _, _, sub = heapq.heappop(heap)
            if sub.closed or sub.check_s is None:
                continue
            if sub.check():
                self.stats.checked()
                sent += 1
            heapq.heappush(heap, (now + sub.check_s, next(self._order), sub))
        return sent

    async def once(self) -> None:
        """One turn of the loop: wait a tick, then queue what is due."""
        await asyncio.sleep(self.tick_s)
        self.due(time.monotonic())
