"""The shard's long-running loops: tail, control, ownership, expiry, hygiene.

Each loop runs until cancelled, logs and backs off on errors (never swallowing
cancellation), and touches the matcher only through the `Engine`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from cluster.partition import owned_partitions, owner
from cluster.settings import ShardSettings
from storage import (
    Control,
    ControlMessage,
    Membership,
    PartitionTail,
    Registry,
    RowStore,
    due_rows,
    server_run_id,
)

from .engine import Engine
from .events import Events
from .ownership import Ownership
from .partitions import PartitionState

__all__ = ["Loops", "cancel_requested"]

_BACKOFF_MAX = 2.0
_RETRY_S = 0.1  # ownership pass period while a wanted lease is still held elsewhere
_EXPIRY_SLACK_S = 0.01  # look just after another shard's membership expires


def cancel_requested() -> bool:
    """Whether the current task has been asked to stop.

    On Python 3.11 `asyncio.wait_for` returns normally when its inner future completes
    in the same turn as the cancellation (fixed in 3.12), and redis-py sends every
    command through `wait_for`: a cancelled loop can then find itself still running.
    Loops check this on every turn, so a lost `CancelledError` only delays the stop.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Loops:
    """The loops of one shard process; `Service` starts them in one task group."""

    def __init__(
        self,
        settings: ShardSettings,
        engine: Engine,
        ownership: Ownership,
        tail: PartitionTail,
        control: Control,
        membership: Membership,
        registry: Registry,
        rows: RowStore,
        prefix: str,
        events: Events,
        stats: Callable[[], bytes],
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.ownership = ownership
        self.tail = tail
        self.control = control
        self.membership = membership
        self.registry = registry
        self.rows = rows
        self.prefix = prefix
        self.events = events
        self.stats = stats
        self.shard_id = settings.shard_id
        self.live: list[str] = []
        self.redis_offset_ms = 0.0
        self.notice = asyncio.Event()
        self.desired: frozenset[int] = frozenset()
        self.tail_lag_ms = 0.0
        self.claims = asyncio.Semaphore(settings.claim_concurrency)
        self.claiming: dict[int, int] = {}  # partition -> epoch of the claim under way
        self.claim_tasks: set[asyncio.Task[None]] = set()
        self.group: asyncio.TaskGroup | None = None
        self.run_id: str | None = None
        self.next_check_s = settings.heartbeat_ms / 1000
        self.dead_gateways: dict[str, float] = {}  # served here, not live since (monotonic)

    async def _guard(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """Run `body` forever; log and back off on errors; cancellation ends it."""
        delay = 0.05
        while True:
            if cancel_requested():
                raise asyncio.CancelledError
            try:
                await body()
                delay = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.events.error("loop_error", loop=name, error=repr(e))
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)

    # -- tail

    async def tail_once(self) -> None:
        positions = self.engine.serving_positions()
        read = await self.tail.read(
            positions,
            count=self.settings.tail_count,
            block_ms=self.settings.tail_block_ms,
            wanted=self.engine.wanted,
        )
        for p in read.trimmed:
            self.events.warning("log_trimmed", p=p)
            await self.reclaim(p)
        for p, position in read.positions.items():
            part = self.engine.partitions.get(p)
            if part is None or not part.serving or part.position != positions[p]:
                continue  # dropped, reclaimed or moved meanwhile: the next read starts over
            async with part.lock:
                # re-checked under the lock: a drop (or a re-claim) may have happened
                # while a collection load held it
                current = self.engine.partitions.get(p) is part and part.serving
                if current and part.position == positions[p]:
                    self.engine.apply(part, read.changes.get(p, ()), position)
        if read.positions:
            newest = max(int(pos.split("-")[0]) for pos in read.positions.values())
            self.tail_lag_ms = max(0.0, self.redis_now_ms() - newest)
            # Publish before the next read goes out: building that read (every served
            # partition's stream) would otherwise delay these deltas by most of a ms.
            # Changes that arrive meanwhile wait in the logs and come in the next read.
            await self.engine.publisher.flush()

    # -- control

    async def control_pending(self) -> None:
        """Re-read this shard's own unacknowledged entries (a restart with the same id)."""
        await self.control.ensure_group(self.shard_id)
        after = "0"
        while True:
            msgs = await self.control.read(
                self.shard_id, self.shard_id, pending=True, count=100, after=after
            )
            if not msgs:
                return
            await self.handle_all(msgs)
            after = msgs[-1].entry_id

    async def control_once(self) -> None:
        msgs = await self.control.read(
            self.shard_id, self.shard_id, pending=False, count=100,
            block_ms=self.settings.control_block_ms,
        )
        if msgs:
            await self.handle_all(msgs)
            await self.control.trim(self.shard_id)

    async def handle_all(self, msgs: list[ControlMessage]) -> None:
        for msg in msgs:
            try:
                await self.handle(msg)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.events.error("control_failed", op=msg.op, p=msg.p, rid=msg.rid,
                                  error=repr(e))
        await self.control.ack(self.shard_id, [m.entry_id for m in msgs])

    async def handle(self, msg: ControlMessage) -> None:
        part = self.engine.partitions.get(msg.p)
        if part is not None and part.state is PartitionState.CLAIMING:
            await part.claimed.wait()
            part = self.engine.partitions.get(msg.p)
        if part is None or not part.serving or not self.ownership.serving(msg.p, part.epoch):
            # not ours, or fenced (lapsed lease): whoever claims it next reads the registry
            await self.forward(msg)
            return
        if msg.op == "unsubscribe":
            await self.engine.unsubscribe(part, msg.rid)
        else:
            await self.engine.subscribe(part, msg.rid, refresh=msg.op != "subscribe")

    async def forward(self, msg: ControlMessage) -> None:
        """A message for a partition not served here goes once to its HRW owner; the
        owner's claim reads the registry anyway, so the message is only a nudge."""
        target = owner(msg.p, self.live)
        if msg.hops >= 1 or target is None or target == self.shard_id:
            return
        await self.control.send(target, msg.op, msg.p, msg.rid, msg.gw, hops=msg.hops + 1)

    # -- ownership

    def redis_now_ms(self) -> float:
        return time.time() * 1000 + self.redis_offset_ms

    async def ownership_once(self) -> None:
        s = self.settings
        now_ms, _ = await self.membership.heartbeat("shard", self.shard_id, s.member_ttl_ms,
                                                    self.stats())
        self.redis_offset_ms = now_ms - time.time() * 1000
        await self._check_restart()
        expiries = await self.membership.expiries("shard")
        live = [i for i, t in expiries.items() if t > now_ms]
        self.live = sorted(set(live) | {self.shard_id})
        for p in await self.ownership.renew():
            lapsed = p in self.ownership.lapsed
            self.events.warning("lease_lapsed" if lapsed else "lease_lost", p=p)
            self.engine.drop(p)
        desired = owned_partitions(self.shard_id, self.live)
        lost = sorted(set(self.ownership.held) - desired)
        for p in lost:
            self.engine.drop(p)
        if lost:
            await self.ownership.release(lost)
        stale = [p for p in self.engine.partitions
                 if not self.ownership.serving(p) and p not in self.claiming]
        for p in stale:
            self.engine.drop(p)  # deadline passed without a renewal
        if stale:
            await self.ownership.release(stale)  # ours, if still held: re-taken at once
        gained = desired - set(self.ownership.held)
        for p, epoch in (await self.ownership.acquire(sorted(gained))).items():
            self._start_claim(p, epoch)
        self.desired = desired
        self.next_check_s = self._next_check(now_ms, expiries,
                                             waiting=bool(desired - set(self.ownership.held)))

    def _next_check(self, now_ms: int, expiries: dict[str, int], *, waiting: bool) -> float:
        """Seconds to the next ownership pass: a heartbeat; sooner while a wanted lease
        is still held elsewhere (its holder is releasing it, or it is about to expire);
        and just after the next expiry of another shard's membership, so a dead shard's
        partitions are taken over at its TTL, not up to a heartbeat later."""
        delay = self.settings.heartbeat_ms / 1000
        if waiting:
            delay = min(delay, _RETRY_S)
        others = [t for i, t in expiries.items() if i != self.shard_id and t > now_ms]
        if others:
            delay = min(delay, (min(others) - now_ms) / 1000 + _EXPIRY_SLACK_S)
        return max(delay, 0.005)

    def _start_claim(self, p: int, epoch: int) -> None:
        self.claiming[p] = epoch
        assert self.group is not None
        task = self.group.create_task(self._claim(p, epoch))
        self.claim_tasks.add(task)
        task.add_done_callback(self.claim_tasks.discard)

    @property
    def ready(self) -> bool:
        """Every partition this shard should own is claimed and served."""
        parts = self.engine.partitions
        return bool(self.live) and all(p in parts and parts[p].serving for p in self.desired)

    async def _check_restart(self) -> None:
        run_id = await server_run_id(self.rows.client)
        if self.run_id is not None and run_id is not None and run_id != self.run_id:
            self.events.warning("redis_restarted", partitions=len(self.engine.partitions))
            for p in list(self.engine.partitions):
                self.engine.drop(p)
            # Give our leases up (the restarted Redis may still hold them, from its AOF):
            # re-taken at once under new epochs, every partition is re-claimed with resets
            # now rather than after the TTL.
            await self.ownership.release(list(self.ownership.held))
        self.run_id = run_id

    async def _claim(self, p: int, epoch: int) -> None:
        try:
            async with self.claims:
                if self.ownership.serving(p, epoch):
                    await self.engine.claim(p, epoch)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.events.error("claim_failed", p=p, error=repr(e))
            if self.ownership.epoch(p) == epoch:
                part = self.engine.partitions.get(p)
                if part is not None and part.epoch == epoch:
                    self.engine.drop(p)
                await self.ownership.release([p])
        finally:
            if self.claiming.get(p) == epoch:
                del self.claiming[p]

    async def reclaim(self, p: int) -> None:
        """Reload and reset a partition (its log position was trimmed away)."""
        epoch = self.ownership.epoch(p)
        self.engine.drop(p)
        if epoch is not None and p not in self.claiming:
            self._start_claim(p, epoch)

    async def ownership_tick(self) -> None:
        # Cleared *before* the pass: a notice arriving during it (the second notice of a
        # draining shard, after its release) must wake the next pass, not be lost.
        self.notice.clear()
        await self.ownership_once()
        try:
            async with asyncio.timeout(self.next_check_s):
                await self.notice.wait()
        except TimeoutError:
            pass

    # -- expiry and hygiene

    async def expiry_once(self) -> None:
        await asyncio.sleep(self.settings.expiry_interval_ms / 1000)
        serving = [p for p, part in self.engine.partitions.items() if part.serving]
        due = await due_rows(self.rows.client, self.prefix, serving, int(self.redis_now_ms()))
        for p, items in due.items():
            for tenant, entity, row_id in items:
                if self.ownership.serving(p):
                    await self.rows.expire(tenant, entity, row_id)

    async def hygiene_once(self) -> None:
        await asyncio.sleep(max(1.0, self.settings.gateway_grace_ms / 10_000))
        gone, _ = await self.membership.gone("gateway", self.settings.gateway_grace_ms)
        if gone:
            dropped = self.engine.drop_gateways(set(gone))
            for gateway in gone:
                removed = await self.registry.drop_gateway(gateway)
                await self.membership.leave("gateway", gateway)
                self.events.info("gateway_gone", gateway=gateway, registrations=removed,
                                 served=dropped)
        await self._drop_dead_gateways()
        for tenant, entity in self.engine.matcher.idle(self.settings.collection_idle_s):
            self.engine.matcher.evict(tenant, entity)

    async def _drop_dead_gateways(self) -> None:
        """Stop serving gateways that have not been live for the grace period.

        `gone` reports a gateway once, to whichever shard looks first, which removes
        the registrations and forgets the gateway; the other shards serving some of its
        subscriptions must notice on their own, by the gateway's absence from the live
        set, or they would keep those views (and publish to a dead stream) forever.
        """
        served = self.engine.gateways()
        if not served:
            self.dead_gateways.clear()
            return
        live, _ = await self.membership.live("gateway")
        now = time.monotonic()
        dead = served - set(live)
        self.dead_gateways = {g: self.dead_gateways.get(g, now) for g in dead}
        grace_s = self.settings.gateway_grace_ms / 1000
        expired = {g for g, since in self.dead_gateways.items() if now - since >= grace_s}
        if expired:
            dropped = self.engine.drop_gateways(expired)
            self.events.info("gateways_not_live", gateways=sorted(expired), served=dropped)
