"""Partition leases with fencing epochs (DESIGN.md section 2).

`lq:lease:{p}` holds `<shard>:<epoch>` while a shard serves `p`. Invariants: a lease is
taken only when free, and each take advances `lq:epoch:{p}` to
max(counter + 1, Redis time in µs), so epochs strictly grow across holders, releases
and Redis crashes; renew and release act only while the stored value is the caller's
whole value, so a restarted process with the same shard id (another epoch) cannot
touch its predecessor's lease.

Deadlines: a lease renewed with `ttl_ms` is certainly held until (the time the renewal
was *sent*) + ttl. The caller records `time.monotonic()` *before* calling `renew` /
`renew_many` / `acquire*` and, on success, computes `lease_deadline(sent_at, ttl_ms, margin_ms)`
from it; a reply that arrives late then only shortens the believed hold, never lengthens it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cluster.keys import Keys

from . import _lua
from ._lua import Script
from .connection import RedisClient, is_cluster

__all__ = ["Lease", "Leases", "lease_deadline", "lease_value"]

_ACQUIRE = _lua.load("lease_acquire")
_RENEW = _lua.load("lease_renew")
_RELEASE = _lua.load("lease_release")


def lease_value(shard_id: str, epoch: int) -> str:
    """The value a lease holds: `<shard>:<epoch>`."""
    return f"{shard_id}:{epoch}"


def lease_deadline(sent_at: float, ttl_ms: int, margin_ms: int) -> float:
    """The monotonic time until which a lease renewed (or taken) at `sent_at` is held."""
    return sent_at + (ttl_ms - margin_ms) / 1000.0


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds a partition, under which epoch."""

    shard: str
    epoch: int

    @property
    def value(self) -> str:
        return lease_value(self.shard, self.epoch)

    @classmethod
    def parse(cls, raw: bytes | str | None) -> Lease | None:
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else raw
        shard, _, epoch = text.rpartition(":")
        return cls(shard, int(epoch))


class Leases:
    """Lease operations on one key prefix; the `*_many` forms take one round trip."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.cluster = is_cluster(client)

    async def acquire(self, p: int, shard_id: str, ttl_ms: int) -> int | None:
        """Take `p`'s lease if free: its new epoch, or None when anyone holds it."""
        epoch = await _ACQUIRE(
            self.client, [self.keys.lease(p), self.keys.epoch(p)], [shard_id, ttl_ms]
        )
        return None if epoch is None else int(epoch)

    async def renew(self, p: int, value: str, ttl_ms: int) -> bool:
        """Extend `p`'s lease to `ttl_ms` from now if it still holds `value`."""
        return bool(await _RENEW(self.client, [self.keys.lease(p)], [value, ttl_ms]))

    async def release(self, p: int, value: str) -> bool:
        """Free `p`'s lease if it still holds `value`."""
        return bool(await _RELEASE(self.client, [self.keys.lease(p)], [value]))

    async def holder(self, p: int) -> Lease | None:
        return Lease.parse(await self.client.get(self.keys.lease(p)))

    async def _many(self, script: Script, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run one script per call in one pipeline (EVAL on Cluster: see `storage._lua`)."""
        if not calls:
            return []
        pipe: Any = self.client.pipeline(transaction=False)
        skip = script.prepare(pipe, self.cluster)
        for keys, args in calls:
            script.queue(pipe, keys, args, self.cluster)
        replies: list[Any] = await pipe.execute()
        return replies[skip:]

    async def acquire_many(
        self, ps: Iterable[int], shard_id: str, ttl_ms: int
    ) -> dict[int, int | None]:
        """`acquire` for each partition, in one round trip."""
        order = list(ps)
        calls = [([self.keys.lease(p), self.keys.epoch(p)], [shard_id, ttl_ms]) for p in order]
        replies = await self._many(_ACQUIRE, calls)
        return {p: None if r is None else int(r) for p, r in zip(order, replies, strict=True)}

    async def renew_many(self, values: Mapping[int, str], ttl_ms: int) -> dict[int, bool]:
        """`renew` for each partition -> its value, in one round trip."""
        order = list(values)
        calls = [([self.keys.lease(p)], [values[p], ttl_ms]) for p in order]
        replies = await self._many(_RENEW, calls)
        return {p: bool(r) for p, r in zip(order, replies, strict=True)}

    async def release_many(self, values: Mapping[int, str]) -> dict[int, bool]:
        """`release` for each partition -> its value, in one round trip."""
        order = list(values)
        calls: list[tuple[list[str], list[Any]]] = [
            ([self.keys.lease(p)], [values[p]]) for p in order
        ]
        replies = await self._many(_RELEASE, calls)
        return {p: bool(r) for p, r in zip(order, replies, strict=True)}

    async def holders(self, ps: Iterable[int]) -> dict[int, Lease | None]:
        """The holder of each partition's lease, in one round trip."""
        order = list(ps)
        if not order:
            return {}
        pipe: Any = self.client.pipeline(transaction=False)
        for p in order:
            pipe.get(self.keys.lease(p))
        replies = await pipe.execute()
        return {p: Lease.parse(r) for p, r in zip(order, replies, strict=True)}
