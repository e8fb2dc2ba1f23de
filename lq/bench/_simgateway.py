"""A simulated gateway, for `lq bench cluster` and the shard tests.

`SimGateway` plays a gateway on the internal wire (DESIGN.md 5b, PROTOCOL.md
section 3): it creates its delta stream, registers subscriptions and sends `subscribe`
to the HRW owner (re-sending to a recomputed owner when no `reset` comes in time), reads
the frames on a blocking client of its own (both from one `storage.Storage` front, opened
from the storage settings the shards read) and applies them per subscription exactly as
a gateway plus a client would:

- fence every subscription, count every incarnation's frames and answer gaps with the
  shipped gateway's rules, by calling them: `gateway.live.delivery` (`SubFence`,
  `FrameCounters`, `gap_targets`), so the shard tests prove the shard against the
  rules users run. Where the sim differs from the gateway it says so: it re-sends
  `resync` (not `reanchor`) for an unanswered reanchor (both load the registration);
- number messages with `seq` and apply them to a list (window mode) or a set (changes
  mode), recording every protocol violation (`from` pointing at another id, a list
  longer than `limit`, a version going backwards, `synced` with a wrong count...).

Nothing here raises on a violation: each `SimSub` collects its `errors` and each
gateway its `anomalies`, for the caller to assert on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from cluster.messages import Registration
from cluster.partition import owner, partition_of
from cluster.settings import StorageSettings
from gateway.live.delivery import (
    FrameCounters,
    FrameVerdict,
    Phase,
    Verdict,
    gap_targets,
    starts,
)
from lq.bench._fleet import cancel_all, cancelling
from lq.bench._simsub import Decoded, SimSub
from storage import BlockingReads, DeltaFrame, DeltaStreamGone, DeltaTrimmed, Storage

__all__ = ["FrameRecord", "SimGateway", "taken_over"]

@dataclass(frozen=True, slots=True)
class FrameRecord:
    """One frame as read, in stream order: enough to check fencing afterwards."""

    t: float
    shard: str
    inc: str
    n: int
    p: int
    epoch: int
    resets: tuple[str, ...]  # registry ids this frame resets


class SimGateway:
    """A gateway on the internal wire; see the module docstring."""

    def __init__(
        self,
        storage: StorageSettings,
        gateway_id: str = "gw-sim",
        *,
        resend_s: float = 2.0,
        stream_ttl_s: int = 86_400,
        heartbeat_ms: int = 1000,
        journal: bool = True,
        on_frame: Callable[[DeltaFrame, list[Decoded], float], None] | None = None,
    ) -> None:
        self.storage = storage
        self.id = gateway_id
        self.resend_s = resend_s
        self.stream_ttl_s = stream_ttl_s
        self.heartbeat_ms = heartbeat_ms
        self.keep_journal = journal
        self.on_frame = on_frame
        self.front: Storage | None = None  # opened by start(), closed by close()
        self.reader: BlockingReads | None = None
        self.subs: dict[str, SimSub] = {}
        self.counters = FrameCounters()
        self.journal: list[FrameRecord] = []
        self.anomalies: list[str] = []
        self.gaps = 0
        self.read_errors = 0
        self.frames = 0
        self.sent: list[tuple[str, str, str, str]] = []  # (shard, op, rid, entry id)
        self.position = "0-0"
        self._counter = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._live: list[str] = []
        self._live_at = 0.0

    # -- lifecycle

    async def start(self) -> None:
        front = self.front = Storage.open(self.storage)
        self.reader = front.blocking()
        self.position = await front.deltas.create(self.id, self.stream_ttl_s)
        await self._heartbeat()
        self._tasks = [asyncio.create_task(self._read_loop()),
                       asyncio.create_task(self._ask_loop())]
        if self.heartbeat_ms > 0:
            self._tasks.append(asyncio.create_task(self._heartbeat_loop()))

    async def _heartbeat(self) -> None:
        """Gateway liveness (shards drop what a gateway gone past their grace held)."""
        ttl = max(self.heartbeat_ms * 3, 1000)
        await self._f().membership.heartbeat("gateway", self.id, ttl, b"{}")

    async def _heartbeat_loop(self) -> None:
        while not cancelling():
            await asyncio.sleep(self.heartbeat_ms / 1000)
            try:
                await self._heartbeat()
            except Exception as e:  # Redis away: try again on the next beat
                self.anomalies.append(f"heartbeat: {e!r}")

    async def close(self) -> None:
        await cancel_all(self._tasks)
        if self.front is not None:
            await self.front.aclose()

    async def __aenter__(self) -> SimGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _f(self) -> Storage:
        assert self.front is not None, "start() first"
        return self.front

    # -- ownership as a gateway computes it

    async def live(self, max_age: float = 0.05) -> list[str]:
        now = time.monotonic()
        if now - self._live_at > max_age:
            self._live, _ = await self._f().membership.live("shard")
            self._live_at = now
        return self._live

    async def owner(self, p: int) -> str | None:
        return owner(p, await self.live())

    # -- subscriptions

    async def subscribe(self, tenant: str, query: dict[str, Any], *,
                        target: str | None = None) -> SimSub:
        """Register (gwsubs entry, then registration), then `subscribe` to the owner
        (or to `target`: a stale view of the cluster, say; re-sends go to the owner)."""
        rid = f"{self.id}.{next(self._counter)}"
        p = partition_of(tenant, str(query["entity"]))
        sub = SimSub(rid, p, tenant, dict(query), time.monotonic())
        sub.asked_at = sub.created_at  # not due for a re-send while it is being sent
        self.subs[rid] = sub
        await self._f().registry.put(p, Registration(rid, tenant, self.id, query))
        await self._send(sub, "subscribe", target)
        return sub

    async def reanchor(self, rid: str, query: dict[str, Any]) -> None:
        """Rewrite the registration with the new window, then `reanchor` to the owner;
        frames of the old window that arrive before the `reset` are dropped."""
        sub = self.subs[rid]
        # As on the gateway, deltas of the old window go on until the reanchor's reset
        # (PROTOCOL.md: "deltas of the old window may come before that reset").
        sub.asking = True
        sub.refresh = True
        sub.asked_at = time.monotonic()  # not due for a re-send yet
        sub.query = dict(query)
        sub.next_limit = query.get("limit")
        registration = Registration(rid, sub.tenant, self.id, query)
        await self._f().registry.put(sub.p, registration)
        await self._send(sub, "reanchor")

    async def unsubscribe(self, rid: str) -> None:
        sub = self.subs[rid]
        sub.active = False
        await self._f().registry.delete(sub.p, rid, self.id)
        target = await self.owner(sub.p)
        if target is not None:
            await self._f().control.send(target, "unsubscribe", sub.p, rid, self.id)

    async def _send(self, sub: SimSub, op: str, target: str | None = None) -> None:
        sub.asking = True
        sub.asked_at = time.monotonic()
        sub.asks += 1
        if target is None:
            target = await self.owner(sub.p)
        if target is not None:
            entry = await self._f().control.send(target, op, sub.p, sub.rid, self.id)
            self.sent.append((target, op, sub.rid, entry))

    def _ask(self, sub: SimSub) -> None:
        """Want a fresh reset for `sub` now: its fence waits for one, and the ask loop
        sends `resync` (even when another request is out: it may be what was lost)."""
        sub.fence.lost()
        sub.asking = True
        sub.refresh = True
        sub.asked_at = 0.0  # due now
        sub.resyncs += 1

    async def _ask_loop(self) -> None:
        """Send due resyncs, and re-send subscribe/resync that got no reset in time."""
        while not cancelling():
            await asyncio.sleep(0.05)
            with contextlib.suppress(Exception):  # Redis away: keep the last view
                await self.live(max_age=0.2)  # fresh enough for the gap rule
            now = time.monotonic()
            for sub in list(self.subs.values()):
                if not (sub.active and sub.asking):
                    continue
                due = sub.asked_at == 0.0 or now - sub.asked_at >= self.resend_s
                if due:
                    op = "resync" if sub.refresh or sub.fence.phase is not Phase.PENDING \
                        else "subscribe"
                    try:
                        await self._send(sub, op)
                    except Exception as e:  # Redis away: try again on the next pass
                        self.anomalies.append(f"send {op} {sub.rid}: {e!r}")
                        sub.asked_at = 0.0
                        break

    # -- reading

    async def _read_loop(self) -> None:
        assert self.reader is not None
        deltas = self.reader.deltas
        while not cancelling():
            try:
                got = await deltas.read(self.id, self.position, count=500, block_ms=200)
            except (DeltaStreamGone, DeltaTrimmed) as e:
                self.anomalies.append(f"delta stream: {e!r}")
                with contextlib.suppress(Exception):
                    self.position = await self._f().deltas.create(self.id, self.stream_ttl_s)
                    for sub in self.subs.values():
                        self._ask(sub)
                await asyncio.sleep(0.05)
                continue
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis restarting: keep the position, try again
                self.read_errors += 1
                await asyncio.sleep(0.05)
                continue
            now = time.monotonic()
            for frame in got.frames:
                self.frames += 1
                self._frame(frame, now)
            self.position = got.position

    def _frame(self, f: DeltaFrame, now: float) -> None:
        key = (f.shard, f.inc)
        expected = self.counters.expected(key)
        if self.counters.check(key, f.n) is FrameVerdict.GAP:
            self.gaps += 1
            self.anomalies.append(f"{key}: gap, n {expected - 1} -> {f.n}")
            active = (s for s in self.subs.values() if s.active)
            for hit in gap_targets(key, active, lambda p: owner(p, self._live)):
                self._ask(hit)
        decoded: list[Decoded] = [(rids, orjson.loads(raw)) for rids, raw in f.groups]
        if self.on_frame is not None:
            self.on_frame(f, decoded, now)
        if self.keep_journal:
            resets = tuple(r for rids, msgs in decoded if msgs and msgs[0].get("op") == "reset"
                           for r in rids)
            self.journal.append(FrameRecord(now, f.shard, f.inc, f.n, f.p, f.epoch, resets))
        for rids, msgs in decoded:
            for rid in rids:
                sub = self.subs.get(rid)
                if sub is not None and sub.active:
                    self._deliver(sub, f, key, msgs, now)

    def _deliver(self, sub: SimSub, f: DeltaFrame, key: tuple[str, str],
                 msgs: list[dict[str, Any]], now: float) -> None:
        if f.p != sub.p:
            sub.errors.append(f"{sub.rid}: frame of partition {f.p}, registered in {sub.p}")
            return
        starts_reset = bool(msgs) and starts(str(msgs[0].get("op")))
        verdict = sub.fence.admit(f.epoch, key, starts_reset)
        if verdict is Verdict.STALE:
            sub.dropped_stale += 1
            return
        if verdict is Verdict.LOST_RESET:
            sub.dropped_newer += 1
            self._ask(sub)  # its reset was lost: ask for another
            return
        if verdict is Verdict.WAITING:
            if sub.fence.phase is Phase.PENDING:
                sub.dropped_newer += 1
            else:
                sub.dropped_waiting += 1
            return
        if starts_reset:
            sub.asking = False
            sub.refresh = False
            if sub.next_limit is not None:
                sub.limit, sub.next_limit = sub.next_limit, None
        sub.apply(msgs, f.shard, f.epoch, now)

    # -- summaries

    def errors(self) -> list[str]:
        return [e for sub in self.subs.values() for e in sub.errors]

    def all_synced(self, subs: Iterable[SimSub] | None = None) -> bool:
        chosen = self.subs.values() if subs is None else subs
        return all(s.synced and not s.awaiting for s in chosen if s.active)

    def subs_in(self, partitions: Iterable[int]) -> list[SimSub]:
        chosen = set(partitions)
        return [s for s in self.subs.values() if s.active and s.p in chosen]


def taken_over(subs: Iterable[SimSub], old_epochs: Mapping[int, int]) -> Callable[[], bool]:
    """A check: every sub got a `reset` under a newer epoch than `old_epochs[p]` and is
    synced again (what a failover or handoff must achieve)."""
    chosen = list(subs)

    def check() -> bool:
        return all(
            s.reset_log and s.reset_log[-1][2] > old_epochs[s.p] and s.synced and not s.awaiting
            for s in chosen
        )

    return check

