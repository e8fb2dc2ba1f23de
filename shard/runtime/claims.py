"""Claims under way: each a task of the shard's task group, a few at a time.

Invariants:
- `epoch_of(p)` is the epoch of a claim of `p` started and not yet finished; a claim
  that ends forgets only its own entry (a later claim of `p` may have replaced it);
- a claim runs only while its lease is still served under its epoch, and at most
  `concurrency` claims load at once (each loads collections from Redis);
- a failed claim drops what it built under its epoch and gives the lease up, so the
  next ownership pass re-takes it under a new epoch and claims again with a reset;
  that retry's resets keep the failed claim's reason (a reload after a trimmed log
  whose load was trimmed again is still `trimmed`, not a `failover`: no shard
  died), unless the partition went to another shard meanwhile (`forget`);
- every claim task belongs to the task group given at construction (`tasks` lists the
  live ones, so a drain can cancel them).
"""

from __future__ import annotations

import asyncio

from .engine import Engine
from .events import Events
from .ownership import Ownership

__all__ = ["Claims"]


class Claims:
    def __init__(
        self,
        engine: Engine,
        ownership: Ownership,
        group: asyncio.TaskGroup,
        concurrency: int,
        events: Events,
    ) -> None:
        self._engine = engine
        self._ownership = ownership
        self._group = group
        self._slots = asyncio.Semaphore(concurrency)
        self._events = events
        self._claiming: dict[int, int] = {}  # partition -> epoch of the claim under way
        self._failed: dict[int, str] = {}  # partition -> reason of its failed last claim
        self.tasks: set[asyncio.Task[None]] = set()

    def under_way(self, p: int) -> bool:
        return p in self._claiming

    def start(self, p: int, epoch: int, reason: str = "failover") -> None:
        """Claim `p` (its lease just taken under `epoch`) in a task of its own; its
        resets say `reason`, or, for a plain `failover`, the reason of the claim of `p`
        that failed here last (this one retries it)."""
        retried = self._failed.pop(p, None)
        if retried is not None and reason == "failover":
            reason = retried
        self._claiming[p] = epoch
        task = self._group.create_task(self._claim(p, epoch, reason))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def forget(self, p: int) -> None:
        """`p` went to another shard: a later claim of it here is a plain failover."""
        self._failed.pop(p, None)

    def reclaim(self, p: int) -> None:
        """Reload and reset a partition (its log position was trimmed away), under the
        epoch of its lease, unless a claim of it is already under way."""
        epoch = self._ownership.epoch(p)
        self._engine.drop(p)
        if epoch is not None and p not in self._claiming:
            self.start(p, epoch, "trimmed")

    async def _claim(self, p: int, epoch: int, reason: str) -> None:
        try:
            async with self._slots:
                if self._ownership.serving(p, epoch):
                    await self._engine.claim(p, epoch, reason)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._events.error("claim_failed", p=p, error=repr(e))
            if self._ownership.epoch(p) == epoch:
                self._failed[p] = reason
                self._engine.drop(p, epoch)
                await self._ownership.release([p])
        finally:
            if self._claiming.get(p) == epoch:
                del self._claiming[p]
