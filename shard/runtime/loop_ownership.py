"""The ownership loop: heartbeat, live set, leases, claims and drops; and the notices
that wake it early.

One pass (`once`): heartbeat (which also reads Redis's clock), notice a Redis restart
(a changed run id: drop everything and give every lease up, so all partitions are
re-claimed with resets now rather than after the TTL), read the live shards, renew the
leases (drop what was lost or lapsed), drop and release partitions that HRW gives to
another shard and those whose deadline passed, then take the free leases of the
partitions HRW gives to us and start their claims. Passes run every heartbeat, sooner
while a wanted lease is still held elsewhere, just after another shard's membership is
due to expire, and at once when a membership notice arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from cluster.partition import owned_partitions
from storage import Membership

from .claims import Claims
from .clock import RedisClock
from .engine import Engine
from .events import Events
from .ownership import Ownership

__all__ = ["Notices", "OwnershipLoop"]

_RETRY_S = 0.1  # ownership pass period while a wanted lease is still held elsewhere
_EXPIRY_SLACK_S = 0.01  # look just after another shard's membership expires


class OwnershipLoop:
    def __init__(
        self,
        *,
        shard_id: str,
        heartbeat_ms: int,
        member_ttl_ms: int,
        membership: Membership,
        ownership: Ownership,
        engine: Engine,
        claims: Claims,
        clock: RedisClock,
        run_id: Callable[[], Awaitable[str | None]],
        status: Callable[[], bytes],
        events: Events,
    ) -> None:
        self._shard_id = shard_id
        self._heartbeat_s = heartbeat_ms / 1000
        self._member_ttl_ms = member_ttl_ms
        self._membership = membership
        self._ownership = ownership
        self._engine = engine
        self._claims = claims
        self._clock = clock
        self._run_id = run_id
        self._status = status
        self._events = events
        self._notice = asyncio.Event()
        self._desired: frozenset[int] = frozenset()
        self._server: str | None = None  # Redis's run id at the last pass
        self._restarted: set[int] = set()  # held at a Redis restart, not re-claimed yet
        self._checking = asyncio.Lock()  # one run id check at a time
        self._next_check_s = self._heartbeat_s
        self.live: list[str] = []  # live shard ids (this one included), sorted

    @property
    def ready(self) -> bool:
        """Every partition this shard should own is claimed and served."""
        return self.unready() is None

    def unready(self) -> str | None:
        """Why not every partition it owns is leased and served (None: all are)."""
        if not self.live:
            return "not a live member yet"
        missing = self._engine.unserved(self._desired)
        if not missing:
            return None
        return (f"{len(missing)} of the {len(self._desired)} partitions it owns are not"
                f" leased and served yet (first: {missing[:5]})")

    def wake(self) -> None:
        """Run the next pass now (a shard joined or left)."""
        self._notice.set()

    async def tick(self) -> None:
        """One pass, then wait for the next one to be due."""
        # Cleared *before* the pass: a notice arriving during it (the second notice of a
        # draining shard, after its release) must wake the next pass, not be lost.
        self._notice.clear()
        await self.once()
        try:
            async with asyncio.timeout(self._next_check_s):
                await self._notice.wait()
        except TimeoutError:
            pass

    async def once(self) -> None:
        own, engine = self._ownership, self._engine
        now_ms, _ = await self._membership.heartbeat("shard", self._shard_id,
                                                     self._member_ttl_ms, self._status())
        self._clock.observe(now_ms)
        await self.check_restart()
        expiries = await self._membership.expiries("shard")
        live = [i for i, t in expiries.items() if t > now_ms]
        self.live = sorted(set(live) | {self._shard_id})
        for p in await own.renew():
            self._events.warning("lease_lapsed" if p in own.lapsed else "lease_lost", p=p)
            engine.drop(p)
        desired = owned_partitions(self._shard_id, self.live)
        lost = sorted(set(own.held) - desired)
        for p in lost:
            engine.drop(p)
            self._claims.forget(p)
        if lost:
            await own.release(lost)
        stale = [p for p in engine.held()
                 if not own.serving(p) and not self._claims.under_way(p)]
        for p in stale:
            engine.drop(p)  # deadline passed without a renewal
        if stale:
            await own.release(stale)  # ours, if still held: re-taken at once
        gained = desired - set(own.held)
        restarted = self._restarted
        for p, epoch in (await own.acquire(sorted(gained))).items():
            if p in restarted:
                restarted.discard(p)
                self._claims.start(p, epoch, "redis_restart")
            else:
                self._claims.start(p, epoch)
        self._desired = desired
        self._next_check_s = self._next_check(now_ms, expiries,
                                              waiting=bool(desired - set(own.held)))

    def _next_check(self, now_ms: int, expiries: dict[str, int], *, waiting: bool) -> float:
        """Seconds to the next pass: a heartbeat; sooner while a wanted lease is still
        held elsewhere (its holder is releasing it, or it is about to expire); and just
        after the next expiry of another shard's membership, so a dead shard's
        partitions are taken over at its TTL, not up to a heartbeat later."""
        delay = self._heartbeat_s
        if waiting:
            delay = min(delay, _RETRY_S)
        others = [t for i, t in expiries.items() if i != self._shard_id and t > now_ms]
        if others:
            delay = min(delay, (min(others) - now_ms) / 1000 + _EXPIRY_SLACK_S)
        return max(delay, 0.005)

    async def check_restart(self) -> None:
        """Notice a Redis restart (a changed run id): drop everything and give every
        lease up. Each pass calls it, and so does the control loop before it serves a
        batch: otherwise a subscribe that comes in just after a restart, before the next
        pass, is answered from state read from the old server, and then reset again by
        the re-claim (a resumed client would get its whole window twice). One check at a
        time, so a restart is handled once and its partitions all say `redis_restart`."""
        async with self._checking:
            run_id = await self._run_id()
            if self._server is not None and run_id is not None and run_id != self._server:
                self._events.warning("redis_restarted", partitions=len(self._engine.held()))
                self._restarted = set(self._ownership.held)  # their claims: redis_restart
                self._engine.drop_all()
                # Give our leases up (the restarted Redis may still hold them, from its
                # AOF): re-taken at once under new epochs, every partition is re-claimed
                # with resets now rather than after the TTL.
                await self._ownership.release(list(self._ownership.held))
            self._server = run_id


class Notices:
    """Tails the membership notices from `after` (an entry id); a join or leave of
    another shard wakes the ownership loop (`wake`)."""

    def __init__(self, membership: Membership, shard_id: str, after: str,
                 wake: Callable[[], None]) -> None:
        self._membership = membership
        self._shard_id = shard_id
        self._after = after
        self._wake = wake

    async def once(self) -> None:
        found, self._after = await self._membership.notices(self._after, block_ms=1000)
        if any(n.kind == "shard" and n.id != self._shard_id for n in found):
            self._wake()
