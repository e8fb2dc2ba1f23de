"""One shard process: wiring, lifecycle (STARTING -> RUNNING -> DRAINING -> STOPPED), drain.

Connections: one client for commands plus three for blocking reads (log tail, control
stream, membership notices), whatever the number of partitions. Every task belongs to
one TaskGroup. On `stop()` (SIGTERM) the shard leaves membership with a notice, stops
reading, flushes what it has while still holding its leases, releases them, sends a
second notice and returns, well within 2 s: every Redis step of the drain shares one
time budget and a failed step is logged and skipped, so a shard stops on time even with
Redis unreachable (its leases then simply expire).
"""

from __future__ import annotations

import asyncio
import enum
import secrets
from collections.abc import Awaitable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from cluster.query import CursorSigner
from cluster.settings import QueryLimits, ShardSettings, StorageSettings
from shard import Matcher
from storage import (
    ChangeLog,
    Control,
    Deltas,
    Leases,
    Membership,
    PartitionTail,
    RedisClient,
    Registry,
    RowStore,
    connect,
    cursor_secret,
)

from .engine import Engine
from .events import Events
from .health import HealthServer, ShardCollector
from .loops import Loops
from .ownership import Ownership
from .publisher import Publisher

__all__ = ["ServiceState", "ShardService"]

_DRAIN_BUDGET_S = 1.5  # all of the drain's Redis work; the process exits within 2 s


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel `tasks` and wait for them, cancelling again any that keep running (a
    cancellation lost inside `asyncio.wait_for` on Python 3.11: see `loops`)."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.05)


class ServiceState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"


class ShardService:
    def __init__(
        self,
        settings: ShardSettings,
        storage: StorageSettings,
        limits: QueryLimits = QueryLimits(),  # noqa: B008 - frozen
    ) -> None:
        if not settings.shard_id:
            raise ValueError("a shard needs an id")
        self.settings = settings
        self.storage = storage
        self.limits = limits
        self.state = ServiceState.STARTING
        self.events = Events(settings.shard_id)
        self.inc = secrets.token_hex(6)
        self.http_port = 0
        self._stop = asyncio.Event()
        self.loops: Loops | None = None
        self.engine: Engine | None = None
        self.publisher: Publisher | None = None

    def stop(self) -> None:
        """Begin the drain (idempotent; safe from a signal handler)."""
        self._stop.set()

    def _stats(self) -> dict[str, Any]:
        engine, loops, publisher = self.engine, self.loops, self.publisher
        if engine is None or loops is None or publisher is None:
            return {}
        out: dict[str, Any] = dict(engine.matcher.stats())
        out.update(
            partitions=sum(1 for part in engine.partitions.values() if part.serving),
            lag_ms=round(loops.tail_lag_ms, 1),
            changes=engine.changes_applied,
            fenced=publisher.stats.fenced,
            lapses=loops.ownership.lapses,
            frames=publisher.stats.frames,
            inc=self.inc,
            http_port=self.http_port,
            state=self.state.value,
        )
        return out

    def _metrics(self) -> dict[str, tuple[str, str, float]]:
        s = self._stats()
        p = self.publisher
        return {
            "partitions_owned": ("gauge", "partitions served", s.get("partitions", 0)),
            "subscriptions": ("gauge", "subscriptions served", s.get("subscriptions", 0)),
            "views": ("gauge", "distinct query views", s.get("views", 0)),
            "collections": ("gauge", "collections held in memory", s.get("collections", 0)),
            "rows_cached": ("gauge", "rows held in memory", s.get("rows", 0)),
            "tail_lag_ms": ("gauge", "age of the newest log entry read", s.get("lag_ms", 0)),
            "changes": ("counter", "changes applied", s.get("changes", 0)),
            "frames": ("counter", "delta frames published", p.stats.frames if p else 0),
            "fenced_publishes": ("counter", "frames refused by fencing", s.get("fenced", 0)),
            "frames_no_stream": ("counter", "frames refused: the gateway's stream is gone",
                                 p.stats.refused_no_stream if p else 0),
            "lease_lapses": ("counter", "leases given up after their deadline passed (stalls)",
                             s.get("lapses", 0)),
            "publish_overflows": ("counter", "gateway buffers dropped",
                                  p.stats.overflows if p else 0),
            "errors": ("counter", "publish errors", p.stats.errors if p else 0),
            "claim_seconds_sum": ("counter", "time spent claiming partitions",
                                  sum(self.engine.claim_seconds) if self.engine else 0),
            "claims": ("counter", "partitions claimed",
                       len(self.engine.claim_seconds) if self.engine else 0),
        }

    def _ready(self) -> bool:
        return self.state is ServiceState.RUNNING and self.loops is not None and self.loops.ready

    async def run(self) -> None:
        url = self.storage.redis_url
        main, tail_c, ctrl_c, notice_c = (connect(url) for _ in range(4))
        try:
            await self._run(main, tail_c, ctrl_c, notice_c)
        finally:
            for client in (main, tail_c, ctrl_c, notice_c):
                await client.aclose()
            self.state = ServiceState.STOPPED
            self.events.info("stopped")

    async def _run(
        self, main: RedisClient, tail_c: RedisClient, ctrl_c: RedisClient, notice_c: RedisClient
    ) -> None:
        s, prefix = self.settings, self.storage.prefix
        signer = CursorSigner(await cursor_secret(main, prefix, s.cursor_secret))
        ownership = Ownership(s.shard_id, Leases(main, prefix), s.lease_ttl_ms, s.lease_margin_ms)
        publisher = Publisher(Deltas(main, prefix), ownership, s.shard_id, self.inc,
                              s.publish_max_bytes, self.events)
        registry = Registry(main, prefix)
        self.publisher = publisher
        self.engine = Engine(Matcher(signer), ChangeLog(main, self.storage), registry, ownership,
                             publisher, signer, self.limits, self.events)
        membership = Membership(main, prefix)
        self.loops = loops = Loops(
            s, self.engine, ownership, PartitionTail(tail_c, self.storage),
            Control(ctrl_c, prefix), membership, registry, RowStore(main, self.storage),
            prefix, self.events, lambda: orjson.dumps(self._stats()),
        )
        prom = CollectorRegistry()
        prom.register(ShardCollector(self._metrics))
        health = HealthServer(s.http_host, s.http_port, self._ready, self._stats, prom)
        self.http_port = await health.start()
        notices = Membership(notice_c, prefix)
        last = [await notices.notices_tail_id()]
        self.events.info("starting", inc=self.inc, http_port=self.http_port)
        try:
            async with asyncio.TaskGroup() as group:
                loops.group = group
                # the flusher first: claims and pending control messages wait for room
                flusher = group.create_task(publisher.run())
                await loops.ownership_once()
                await loops.control_pending()
                self.state = ServiceState.RUNNING
                workers = [
                    group.create_task(loops._guard("ownership", loops.ownership_tick)),
                    group.create_task(loops._guard("tail", loops.tail_once)),
                    group.create_task(loops._guard("control", loops.control_once)),
                    group.create_task(loops._guard("notices", lambda: self._notice(notices, last))),
                    group.create_task(loops._guard("expiry", loops.expiry_once)),
                    group.create_task(loops._guard("hygiene", loops.hygiene_once)),
                ]
                await self._stop.wait()
                await self._drain(workers, flusher, membership, ownership, publisher, loops)
        finally:
            await health.close()

    async def _notice(self, notices: Membership, last: list[str]) -> None:
        assert self.loops is not None
        found, last[0] = await notices.notices(last[0], block_ms=1000)
        if any(n.kind == "shard" and n.id != self.settings.shard_id for n in found):
            self.loops.notice.set()

    async def _drain(
        self,
        workers: list[asyncio.Task[None]],
        flusher: asyncio.Task[None],
        membership: Membership,
        ownership: Ownership,
        publisher: Publisher,
        loops: Loops,
    ) -> None:
        self.state = ServiceState.DRAINING
        self.events.info("draining", partitions=len(ownership.held))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _DRAIN_BUDGET_S

        async def step(name: str, work: Awaitable[Any]) -> None:
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0.01)):
                    await work
            except Exception as e:  # TimeoutError included: go on, leases will expire
                self.events.warning("drain_step_failed", step=name, error=repr(e))

        shard_id = self.settings.shard_id
        await _cancel_all(workers[:1])  # the ownership loop first: no heartbeat re-joins
        await step("leave", membership.leave("shard", shard_id))
        await _cancel_all([*workers, *loops.claim_tasks])
        await step("flush", publisher.flush())
        await _cancel_all([flusher])
        await step("release", ownership.release(list(ownership.held)))
        await step("notice", membership.leave("shard", shard_id))
        self.events.info("drained", seconds=round(_DRAIN_BUDGET_S - (deadline - loop.time()), 3))
