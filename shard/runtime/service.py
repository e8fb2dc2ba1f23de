"""One shard process: wiring, lifecycle (STARTING -> RUNNING -> DRAINING -> STOPPED), drain.

Connections: one `storage.Storage` front per run, opened from the storage settings: its
one client for commands plus three small clients for blocking reads (log tail, control
stream, membership notices), whatever the number of partitions, all closed with it.
Every task belongs to one TaskGroup, and every part is built once, inside it, with what
it uses (`Parts`).
On `stop()` (SIGTERM) the shard leaves membership with a notice, stops reading, flushes
what it has while still holding its leases, releases them, sends a second notice and
returns, well within 2 s: every Redis step of the drain shares one time budget and a
failed step is logged and skipped, so a shard stops on time even with Redis unreachable
(its leases then simply expire).
"""

from __future__ import annotations

import asyncio
import enum
import secrets
from collections.abc import Awaitable
from typing import Any

from prometheus_client import CollectorRegistry

from cluster.loops import cancel_all, guarded
from cluster.settings import QueryLimits, ShardSettings, StorageSettings
from storage import Storage

from .events import Events
from .health import HealthServer, ShardCollector
from .wiring import Parts, build

__all__ = ["ServiceState", "ShardService"]

_DRAIN_BUDGET_S = 1.5  # all of the drain's Redis work; the process exits within 2 s


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
        self._parts: Parts | None = None  # the parts of the current run

    def stop(self) -> None:
        """Begin the drain (idempotent; safe from a signal handler)."""
        self._stop.set()

    def _stats(self) -> dict[str, Any]:
        if self._parts is None:
            return {}
        out = self._parts.reporter.status()
        out.update(inc=self.inc, http_port=self.http_port, state=self.state.value)
        return out

    def _metrics(self) -> dict[str, tuple[str, str, float]]:
        if self._parts is None:
            return {}
        return self._parts.reporter.metrics(self._stats())

    def _unready(self) -> str | None:
        """Why `/readyz` fails: not running, a partition it owns not leased and served,
        or the tail past its bound (`ready_max_lag_ms`); None when ready."""
        parts = self._parts
        if self.state is not ServiceState.RUNNING or parts is None:
            return f"the shard is {self.state.value}"
        return parts.owner.unready() or parts.reporter.tail.unready(
            self.settings.ready_max_lag_ms)

    async def run(self) -> None:
        front = Storage.open(self.storage)
        try:
            await self._run(front)
        finally:
            await front.aclose()
            self.state = ServiceState.STOPPED
            self.events.info("stopped")

    async def _run(self, front: Storage) -> None:
        prom = CollectorRegistry()
        prom.register(ShardCollector(self._metrics))
        s = self.settings
        health = HealthServer(s.http_host, s.http_port, self._unready, self._stats, prom)
        try:
            async with asyncio.TaskGroup() as group:
                self._parts = parts = await build(
                    s, front, self.limits, self.inc, self.events, group, status=self._stats
                )
                self.http_port = await health.start()
                self.events.info("starting", inc=self.inc, http_port=self.http_port,
                                 loop=_loop_name())
                # the flusher first: claims and pending control messages wait for room
                flusher = group.create_task(parts.publisher.run())
                await parts.owner.once()
                await parts.control.pending()
                self.state = ServiceState.RUNNING
                bodies = [("ownership", parts.owner.tick), ("tail", parts.tail.once),
                          ("control", parts.control.once), ("notices", parts.notices.once),
                          ("expiry", parts.expiry.once), ("hygiene", parts.hygiene.once)]
                workers = [
                    group.create_task(guarded(name, body, on_error=self.events.loop_error))
                    for name, body in bodies
                ]
                await self._stop.wait()
                await self._drain(workers, flusher, parts)
        finally:
            await health.close()

    async def _drain(
        self, workers: list[asyncio.Task[None]], flusher: asyncio.Task[None], parts: Parts
    ) -> None:
        self.state = ServiceState.DRAINING
        ownership, membership = parts.ownership, parts.membership
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
        await cancel_all(workers[:1])  # the ownership loop first: no heartbeat re-joins
        await step("leave", membership.leave("shard", shard_id))
        await cancel_all([*workers, *parts.claims.tasks])
        await step("flush", parts.publisher.flush())
        await cancel_all([flusher])
        await step("release", ownership.release(list(ownership.held)))
        await step("notice", membership.leave("shard", shard_id))
        self.events.info("drained", seconds=round(_DRAIN_BUDGET_S - (deadline - loop.time()), 3))


def _loop_name() -> str:
    """The running event loop's package: `uvloop` or `asyncio` (said in the start event)."""
    return type(asyncio.get_running_loop()).__module__.partition(".")[0]
