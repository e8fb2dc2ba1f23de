"""The shard's engine: partitions, the matcher, and what changes them.

Everything that mutates the matcher runs here: claims, control messages, log changes,
and drops. Invariants:
- a collection is loaded with its replay starting at its partition's applied position
  (under the partition lock), so changes the tail re-delivers are all older than what
  the collection holds and deletes among them are remembered (no stale resurrection);
- every snapshot and delta is buffered with the epoch of the claim that produced it, so
  nothing computed under an old epoch can be published under a new one;
- a registration is the truth: subscribe and reanchor re-read it, a missing one means
  drop; handling is idempotent by registry id.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from cluster.errors import LiveQueryError
from cluster.messages import Change, Registration
from cluster.partition import partition_of
from cluster.query import CursorSigner, Query, parse_query
from cluster.settings import QueryLimits
from shard import Matcher, Row
from storage import ChangeLog, Registry

from .events import Events
from .ownership import Ownership
from .partitions import Partition, PartitionState, SubInfo
from .publisher import Publisher

__all__ = ["Engine"]


class Engine:
    def __init__(
        self,
        matcher: Matcher,
        log: ChangeLog,
        registry: Registry,
        ownership: Ownership,
        publisher: Publisher,
        signer: CursorSigner,
        limits: QueryLimits,
        events: Events,
    ) -> None:
        self.matcher = matcher
        self.log = log
        self.registry = registry
        self.ownership = ownership
        self.publisher = publisher
        self.signer = signer
        self.limits = limits
        self.events = events
        self.partitions: dict[int, Partition] = {}
        self.changes_applied = 0
        self.claim_seconds: list[float] = []

    # -- partitions

    def serving_positions(self) -> dict[int, str]:
        return {p: part.position for p, part in self.partitions.items() if part.serving}

    async def claim(self, p: int, epoch: int) -> None:
        """Start serving `p` under `epoch`: every registration gets reset + snapshot."""
        started = time.monotonic()
        part = Partition(p, epoch)
        self.partitions[p] = part
        async with part.lock:
            part.position, _ = await self.log.mark(p)
            regs = await self.registry.by_partition(p)
            for reg in regs.values():
                if self.partitions.get(p) is not part:
                    return  # dropped while claiming
                await self._start(part, reg)
            if self.partitions.get(p) is part:
                part.move(PartitionState.SERVING)
        elapsed = time.monotonic() - started
        self.claim_seconds.append(elapsed)
        if part.subs:
            self.events.info("claimed", p=p, epoch=epoch, subscriptions=len(part.subs),
                             seconds=round(elapsed, 4))

    def drop(self, p: int) -> None:
        """Stop serving `p`: forget its subscriptions and *every* collection of `p`,
        idle ones included (no Redis work). A collection kept past the drop would miss
        the changes made while `p` is served elsewhere, and a later claim would find it
        held and snapshot from it: stale rows."""
        part = self.partitions.pop(p, None)
        if part is None:
            return
        for rid in part.subs:
            self.matcher.unsubscribe(rid)
        for tenant, entity in self.matcher.idle(0.0):  # without views: all of p's now
            if partition_of(tenant, entity) == p:
                self.matcher.evict(tenant, entity)
        part.move(PartitionState.DROPPED)
        self.events.info("dropped", p=p, epoch=part.epoch)

    def wanted(self, tenant: str, entity: str) -> bool:
        """Whether anyone here holds (tenant, entity): the tail skips the rest undecoded."""
        return self.matcher.collection(tenant, entity) is not None

    # -- changes

    def apply(self, part: Partition, changes: Iterable[Change], position: str) -> None:
        """Apply tailed changes of `part` (caller holds its lock) and move its position."""
        for change in changes:
            deltas = self.matcher.apply(change)
            self.changes_applied += 1
            if deltas:
                self.publisher.send(part.p, part.epoch, deltas)
        part.position = position

    # -- subscriptions

    def _query(self, reg: Registration) -> Query | None:
        try:
            return parse_query(reg.query, signer=self.signer, limits=self.limits)
        except LiveQueryError as e:
            self.events.warning("bad_registration", rid=reg.rid, error=str(e))
            return None

    async def _ensure_collection(self, part: Partition, tenant: str, entity: str) -> None:
        if self.matcher.collection(tenant, entity) is not None:
            return
        loaded = await self.log.load_collection(tenant, entity, since=part.position)
        rows = [Row(r.id, r.version, r.values) for r in loaded.rows]
        self.matcher.load(tenant, entity, rows)
        for change in loaded.changes:
            self.matcher.apply(change)

    async def _start(self, part: Partition, reg: Registration) -> None:
        """Subscribe `reg` (caller holds the partition lock) and send its snapshot."""
        query = self._query(reg)
        if query is None:
            return
        await self._ensure_collection(part, reg.tenant, query.entity)
        if self.partitions.get(part.p) is not part:
            return  # dropped while loading
        if reg.rid in part.subs:
            frame = self.matcher.reanchor(reg.rid, query)
        else:
            frame = self.matcher.subscribe(reg.rid, reg.tenant, query, route=reg.gateway)
        part.subs[reg.rid] = SubInfo(reg.tenant, query.entity, reg.gateway)
        # Under the partition lock, so no delta of this view can overtake the snapshot.
        await self.publisher.room(reg.gateway, len(frame.payload))
        self.publisher.send_to(part.p, part.epoch, reg.gateway, (reg.rid,), frame.payload)

    async def subscribe(self, part: Partition, rid: str, *, refresh: bool) -> None:
        """Serve `rid` from its registration. `refresh` (reanchor/resync): snapshot again
        even when it is already served; otherwise a live `rid` is a no-op."""
        async with part.lock:
            if rid in part.subs and not refresh:
                return
            reg = await self.registry.get(part.p, rid)
            if reg is None:
                self._unsubscribe(part, rid)
                return
            if self.partitions.get(part.p) is part:
                await self._start(part, reg)

    async def unsubscribe(self, part: Partition, rid: str) -> None:
        async with part.lock:
            self._unsubscribe(part, rid)

    def _unsubscribe(self, part: Partition, rid: str) -> None:
        if part.subs.pop(rid, None) is not None:
            self.matcher.unsubscribe(rid)

    def gateways(self) -> set[str]:
        """The gateways of the subscriptions served here."""
        return {s.gateway for part in self.partitions.values() for s in part.subs.values()}

    def drop_gateways(self, gateways: set[str]) -> int:
        """Forget every served subscription of gateways that are gone."""
        dropped = 0
        for part in self.partitions.values():
            for rid in [r for r, s in part.subs.items() if s.gateway in gateways]:
                self._unsubscribe(part, rid)
                dropped += 1
        return dropped
