"""The shard's engine: partitions, the matcher, and what changes them.

Everything that mutates the matcher or the partition table runs here: claims, control
messages, log changes, drops, evictions. The loops call these methods and never touch
the parts (partitions, matcher, sink) themselves. Storage is reached only through the
ports (`ports.RowSource`, `ports.Registrations`, `ports.DeltaSink`). Invariants:
- a collection is loaded with its replay starting at its partition's applied position
  (under the partition lock), so changes the tail re-delivers are all older than what
  the collection holds and deletes among them are remembered (no stale resurrection);
- every snapshot and delta is handed to the sink with the epoch of the claim that
  produced it, so nothing computed under an old epoch can be published under a new one;
- a registration is the truth: subscribe and reanchor re-read it, a missing one means
  drop; handling is idempotent by registry id;
- a `Partition` handle names one claim: after a drop (or a re-claim, even under the
  same epoch) calls with the old handle change nothing;
- a changes-mode `synced` names the partition's applied position (`Partition.position`
  and `version`), at or before what its snapshot holds; a subscribe that names a log
  position is answered by a log-position resume (`Matcher.resume`) only when the log
  still holds that very entry and at most `resume_max_entries` after it, read under the
  partition lock up to the log's end (so past anything the collection holds), else by a
  snapshot saying `resume_miss`. Claims, resyncs and reanchors never resume.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from cluster import logpos
from cluster.errors import LiveQueryError
from cluster.messages import Change, Registration
from cluster.partition import partition_of
from cluster.query import CursorSigner, Mode, Query, parse_query
from cluster.settings import QueryLimits
from shard import Collection, Matcher, Row

from .events import Events
from .heap import Heap
from .partitions import Partition, PartitionState, SubInfo
from .ports import DeltaSink, Registrations, RowSource

__all__ = ["Engine"]

Spent = defaultdict[str, float]
"""A claim's seconds by phase (and `rows`, the rows it loaded)."""


class Engine:
    def __init__(
        self,
        matcher: Matcher,
        rows: RowSource,
        registry: Registrations,
        sink: DeltaSink,
        signer: CursorSigner,
        limits: QueryLimits,
        events: Events,
        resume_max_entries: int = 5000,
        heap: Heap | None = None,
    ) -> None:
        self._matcher = matcher
        self._heap = heap if heap is not None else Heap(freeze=False)
        self._resume_max = resume_max_entries
        self._rows = rows
        self._registry = registry
        self._sink = sink
        self._signer = signer
        self._limits = limits
        self._events = events
        self._partitions: dict[int, Partition] = {}
        self.changes_applied = 0
        self.resets: Counter[str] = Counter()  # snapshots sent, by their reset's reason
        self.resumes = 0  # subscribes answered by a log-position resume (no snapshot)
        self.claim_seconds: list[float] = []

    # -- what is held

    def held(self) -> list[int]:
        """Every partition with state here (claiming or serving)."""
        return list(self._partitions)

    def serving(self) -> list[int]:
        return [p for p, part in self._partitions.items() if part.serving]

    def serves_all(self, ps: Iterable[int]) -> bool:
        return not self.unserved(ps)

    def unserved(self, ps: Iterable[int]) -> list[int]:
        """Those of `ps` this shard does not serve (no lease held, or not claimed yet)."""
        parts = self._partitions
        return sorted(p for p in ps if p not in parts or not parts[p].serving)

    def serving_now(self, p: int) -> Partition | None:
        """`p`'s claim if it is served here now (never waits for a claim under way)."""
        part = self._partitions.get(p)
        return part if part is not None and part.serving else None

    def collection(self, tenant: str, entity: str) -> Collection | None:
        """The collection held in memory, if any (read only: for one-shot queries)."""
        return self._matcher.collection(tenant, entity)

    def serving_positions(self) -> dict[int, str]:
        return {p: part.position for p, part in self._partitions.items() if part.serving}

    def wanted(self, tenant: str, entity: str) -> bool:
        """Whether anyone here holds (tenant, entity): the tail skips the rest undecoded."""
        return self._matcher.collection(tenant, entity) is not None

    def gateways(self) -> set[str]:
        """The gateways of the subscriptions served here."""
        return {s.gateway for part in self._partitions.values() for s in part.subs.values()}

    def stats(self) -> dict[str, Any]:
        """The matcher's counts, plus partitions served and changes applied."""
        out: dict[str, Any] = dict(self._matcher.stats())
        out.update(partitions=len(self.serving()), changes=self.changes_applied,
                   resets=dict(self.resets), resumes=self.resumes)
        return out

    # -- partitions

    async def claim(self, p: int, epoch: int, reason: str = "failover") -> None:
        """Start serving `p` under `epoch`: every registration gets reset + snapshot,
        the reset saying `reason` (failover, redis_restart, trimmed)."""
        started = time.monotonic()
        part = Partition(p, epoch)
        self._partitions[p] = part
        spent: Spent = defaultdict(float)  # seconds by phase, for the `claimed` event
        async with part.lock:
            part.position, part.version = await self._rows.end(p)
            regs = await self._registry.by_partition(p)
            spent["registry"] = time.monotonic() - started
            for reg in regs.values():
                # A turn of the loop between snapshots: building a view over a large
                # collection is a long synchronous stretch, and a claim that chains
                # them would hold off lease renewals for their sum.
                await asyncio.sleep(0)
                if self._partitions.get(p) is not part:
                    return  # dropped while claiming
                await self._start(part, reg, reason, spent=spent)
            if self._partitions.get(p) is part:
                part.move(PartitionState.SERVING)
        elapsed = time.monotonic() - started
        self.claim_seconds.append(elapsed)
        if part.subs:
            # Phases are wall time inside this claim: with claims running concurrently
            # they include the other claims' turns of the event loop.
            self._events.info("claimed", p=p, epoch=epoch, subscriptions=len(part.subs),
                              seconds=round(elapsed, 4), rows=int(spent["rows"]),
                              **{f"{k}_s": round(v, 4) for k, v in spent.items()
                                 if k != "rows"})

    async def settled(self, p: int) -> Partition | None:
        """`p` once a claim under way has finished, if it is then served here."""
        part = self._partitions.get(p)
        if part is not None and part.state is PartitionState.CLAIMING:
            await part.claimed.wait()
            part = self._partitions.get(p)
        return part if part is not None and part.serving else None

    def drop(self, p: int, epoch: int | None = None) -> None:
        """Stop serving `p` (only if held under `epoch`, when given): forget its
        subscriptions and *every* collection of `p`, idle ones included (no Redis work).
        A collection kept past the drop would miss the changes made while `p` is served
        elsewhere, and a later claim would find it held and snapshot from it: stale rows."""
        part = self._partitions.get(p)
        if part is None or (epoch is not None and part.epoch != epoch):
            return
        del self._partitions[p]
        for rid in part.subs:
            self._matcher.unsubscribe(rid)
        for tenant, entity in self._matcher.idle(0.0):  # without views: all of p's now
            if partition_of(tenant, entity) == p:
                self._matcher.evict(tenant, entity)
        part.move(PartitionState.DROPPED)
        self._heap.released()
        self._events.info("dropped", p=p, epoch=part.epoch)

    def drop_all(self) -> int:
        """Drop every partition held here; how many there were."""
        held = self.held()
        for p in held:
            self.drop(p)
        return len(held)

    # -- changes

    async def advance(self, p: int, since: str, changes: Iterable[Change], position: str,
                      version: int = 0) -> None:
        """Apply tailed changes of `p`, read from `since`, and move it to `position`
        (whose entry logged `version`); nothing when `p` was dropped, re-claimed or moved
        since the read was built."""
        part = self._partitions.get(p)
        if part is None or not part.serving or part.position != since:
            return  # the next read starts over from the current position
        async with part.lock:
            # re-checked under the lock: a drop (or a re-claim) may have happened while
            # a collection load held it
            if self._partitions.get(p) is part and part.serving and part.position == since:
                for change in changes:
                    deltas = self._matcher.apply(change)
                    self.changes_applied += 1
                    if deltas:
                        self._sink.send(p, part.epoch, deltas)
                part.moved(position, version)

    async def caught_up(self, part: Partition, position: str, timeout_s: float) -> bool:
        """Whether `part` (still this claim, serving) has applied its log up to the entry
        `position`, waiting up to `timeout_s` for the tail to get there."""
        target = logpos.sid_key(position)
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while self._partitions.get(part.p) is part and part.serving:
            if logpos.sid_key(part.position) >= target:
                return True
            left = end - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(part.advanced.wait(), left)
            except TimeoutError:
                return False
        return False

    async def flush(self) -> None:
        """Publish what the changes and snapshots so far produced."""
        await self._sink.flush()

    # -- subscriptions

    async def subscribe(self, part: Partition, rid: str, *, refresh: bool,
                        reason: str = "subscribe", pos: str | None = None) -> None:
        """Serve `rid` from its registration. `refresh` (reanchor/resync): snapshot again
        even when it is already served; otherwise a live `rid` is a no-op. `reason` is
        its reset's (the control op). `pos`: a subscribe's log position to resume from."""
        async with part.lock:
            if rid in part.subs and not refresh:
                return
            reg = await self._registry.get(part.p, rid)
            if reg is None:
                self._unsubscribe(part, rid)
                return
            if self._partitions.get(part.p) is part:
                await self._start(part, reg, reason, None if refresh else pos)

    async def unsubscribe(self, part: Partition, rid: str) -> None:
        async with part.lock:
            self._unsubscribe(part, rid)

    def drop_gateways(self, gateways: set[str]) -> int:
        """Forget every served subscription of gateways that are gone; how many."""
        dropped = 0
        for part in self._partitions.values():
            for rid in [r for r, s in part.subs.items() if s.gateway in gateways]:
                self._unsubscribe(part, rid)
                dropped += 1
        return dropped

    def evict_idle(self, grace_s: float) -> int:
        """Evict the collections without views for `grace_s`; how many."""
        idle = self._matcher.idle(grace_s)
        for tenant, entity in idle:
            self._matcher.evict(tenant, entity)
        if idle:
            self._heap.released()
        return len(idle)

    def _unsubscribe(self, part: Partition, rid: str) -> None:
        if part.subs.pop(rid, None) is not None:
            self._matcher.unsubscribe(rid)

    def _query(self, reg: Registration) -> Query | None:
        try:
            return parse_query(reg.query, signer=self._signer, limits=self._limits)
        except LiveQueryError as e:
            self._events.warning("bad_registration", rid=reg.rid, error=str(e))
            return None

    async def _ensure_collection(self, part: Partition, tenant: str, entity: str,
                                 spent: Spent) -> None:
        """Load (tenant, entity) unless held; `spent` gains the seconds of the Redis
        load (`load`), of filling the matcher (`fill`) and the rows loaded (`rows`)."""
        if self._matcher.collection(tenant, entity) is not None:
            return
        started = time.monotonic()
        loaded = await self._rows.load_collection(tenant, entity, since=part.position)
        if self._partitions.get(part.p) is not part:
            # Dropped while loading: the drop has evicted p's collections already, and
            # one filled now would never be kept current; a later claim would find it
            # held and snapshot stale rows from it.
            return
        loaded_at = time.monotonic()
        self._matcher.load(tenant, entity, [Row(r.id, r.version, r.values) for r in loaded.rows])
        for change in loaded.changes:
            self._matcher.apply(change)
        self._heap.loaded()
        spent["load"] += loaded_at - started
        spent["fill"] += time.monotonic() - loaded_at
        spent["rows"] += len(loaded.rows)
        await asyncio.sleep(0)  # a turn of the loop between the fill and the first view

    async def _changed_since(self, part: Partition, reg: Registration, query: Query,
                             pos: str) -> list[tuple[str, int]] | None:
        """The log's changes of the collection after `pos`, if it can be resumed from."""
        named = logpos.decode(pos)
        if named is None or query.mode is not Mode.CHANGES:
            return None
        sid, version = named
        if logpos.sid_key(sid) > logpos.sid_key(part.position):
            return None  # past what this shard applied: not a position it can vouch for
        return await self._rows.changed_since(
            part.p, sid, version, reg.tenant, query.entity, self._resume_max)

    async def _start(self, part: Partition, reg: Registration, reason: str,
                     pos: str | None = None, spent: Spent | None = None) -> None:
        """Subscribe `reg` (caller holds the partition lock) and send its snapshot, its
        reset saying `reason`; or, given the `pos` of a new changes-mode subscription,
        its log-position resume when it can (else the snapshot says `resume_miss`).
        `spent` (a claim's) gains the seconds by phase: `load`, `fill` (see
        `_ensure_collection`), `snapshot` (view, index and frame) and `send`."""
        spent = defaultdict(float) if spent is None else spent
        query = self._query(reg)
        if query is None:
            return
        await self._ensure_collection(part, reg.tenant, query.entity, spent)
        started = time.monotonic()
        changed = None
        if pos is not None and reg.rid not in part.subs:
            changed = await self._changed_since(part, reg, query, pos)
        if self._partitions.get(part.p) is not part:
            return  # dropped while loading
        now_pos = logpos.encode(part.position, part.version)
        resumed = None
        if reg.rid in part.subs:
            frame = self._matcher.reanchor(reg.rid, query)
        elif changed is not None and pos is not None:
            resumed = self._matcher.resume(reg.rid, reg.tenant, query, reg.gateway, pos,
                                           changed, now_pos)
            frame = resumed if resumed is not None else self._matcher.snapshot(reg.rid)
        else:
            frame = self._matcher.subscribe(reg.rid, reg.tenant, query, route=reg.gateway)
        if resumed is not None:
            self.resumes += 1
        else:
            if pos is not None:
                reason = "resume_miss"
            changes = query.mode is Mode.CHANGES
            frame = frame.because(reason, now_pos if changes else None)
            self.resets[reason] += 1
        part.subs[reg.rid] = SubInfo(reg.tenant, query.entity, reg.gateway)
        made = time.monotonic()
        spent["snapshot"] += made - started
        # Under the partition lock, so no delta of this view can overtake the snapshot.
        await self._sink.room(reg.gateway, len(frame.payload))
        self._sink.send_to(part.p, part.epoch, reg.gateway, (reg.rid,), frame.payload)
        spent["send"] += time.monotonic() - made
