"""Which partitions this shard serves: leases held, and the deadlines that fence them.

Invariant: `serving(p)` is true only while the lease of `p` is held under the epoch we
took *and* our own monotonic deadline has not passed. The deadline is computed from the
time a renewal was *sent* (`lease_deadline`), so a process paused past its lease
(SIGSTOP) finds every deadline passed when it wakes and publishes nothing until it has
re-taken a lease under a new epoch.

A lapse is sticky: once `serving(p)` has answered no because the deadline passed, the
partition stays fenced under that epoch even if a late renewal then succeeds, and the
next `renew` gives the lease up (reporting `p` as lost) so that it is claimed again
under a new epoch, with a `reset`. Otherwise a delta refused during the lapse would be
lost silently: nothing else tells the gateway that a frame is missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from storage import Leases, lease_deadline, lease_value

__all__ = ["Held", "Ownership"]


@dataclass(slots=True)
class Held:
    epoch: int
    value: str
    deadline: float
    lapsed: bool = False


class Ownership:
    def __init__(
        self,
        shard_id: str,
        leases: Leases,
        ttl_ms: int,
        margin_ms: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shard_id = shard_id
        self.leases = leases
        self.ttl_ms = ttl_ms
        self.margin_ms = margin_ms
        self.clock = clock
        self.held: dict[int, Held] = {}
        self.lapses = 0  # leases given up because their deadline passed (a stall)
        self.lapsed: set[int] = set()  # of the partitions the last `renew` lost

    def serving(self, p: int, epoch: int | None = None) -> bool:
        """Held, not past its deadline, and (if given) still under `epoch`."""
        h = self.held.get(p)
        if h is None:
            return False
        if not h.lapsed and self.clock() >= h.deadline:
            h.lapsed = True  # fenced for good under this epoch: see the module docstring
        if h.lapsed:
            return False
        return epoch is None or h.epoch == epoch

    def epoch(self, p: int) -> int | None:
        h = self.held.get(p)
        return None if h is None else h.epoch

    async def renew(self) -> set[int]:
        """Renew every held lease; the partitions lost (renewal refused, or lapsed: then
        the lease is released, to be claimed again under a new epoch) are forgotten."""
        if not self.held:
            return set()
        sent = self.clock()
        values = {p: h.value for p, h in self.held.items()}
        results = await self.leases.renew_many(values, self.ttl_ms)
        lost: set[int] = set()
        lapsed: dict[int, str] = {}
        for p, ok in results.items():
            h = self.held.get(p)
            if h is None or h.value != values[p]:
                continue
            if ok and not h.lapsed:
                h.deadline = lease_deadline(sent, self.ttl_ms, self.margin_ms)
                continue
            lost.add(p)
            del self.held[p]
            if ok:
                lapsed[p] = h.value
        self.lapsed = set(lapsed)
        self.lapses += len(lapsed)
        if lapsed:
            await self.leases.release_many(lapsed)
        return lost

    async def acquire(self, ps: Iterable[int]) -> dict[int, int]:
        """Take the free leases among `ps`; the epochs of those taken."""
        wanted = [p for p in ps if p not in self.held]
        if not wanted:
            return {}
        sent = self.clock()
        results = await self.leases.acquire_many(wanted, self.shard_id, self.ttl_ms)
        taken: dict[int, int] = {}
        for p, epoch in results.items():
            if epoch is not None:
                deadline = lease_deadline(sent, self.ttl_ms, self.margin_ms)
                self.held[p] = Held(epoch, lease_value(self.shard_id, epoch), deadline)
                taken[p] = epoch
        return taken

    def forget(self, p: int) -> Held | None:
        return self.held.pop(p, None)

    async def release(self, ps: Iterable[int]) -> None:
        """Give up leases (only ours are touched by the script)."""
        values = {p: h.value for p in ps if (h := self.held.pop(p, None)) is not None}
        if values:
            await self.leases.release_many(values)
