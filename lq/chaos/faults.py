"""Injecting the faults of a chaos run's timeline (`schedule.Fault`) into its processes.

Each kind is one coroutine over the run's `Topology` (the Redis, the proxies, the shard
and gateway processes, the clients). Invariants: a fault touches only processes this
run started, by their pid; it leaves the system able to recover by itself (a killed
shard or gateway is started again, a paused one continued, a partition healed, a
paused client reading again) except `remove-shard`, whose point is a smaller cluster;
blocking steps (waiting for a process, a Redis node) are awaited, never slept through
on the event loop; and `inject` reports what it did and whether Redis may have lost
writes (the runner then scans for lost acknowledged writes before trusting the model).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from lq.chaos import resp
from lq.chaos.clients import Client
from lq.chaos.procs import ChaosProc
from lq.chaos.proxy import ProxyProcess
from lq.chaos.redis_nodes import RedisCluster, RedisNode, Standalone
from lq.chaos.schedule import Fault

__all__ = ["FaultRecord", "Topology", "inject"]

_BURST = 3.0  # the write rate's factor while a client is not reading
_DOWN_S = 3.0  # how long a failed-over master stays down before it rejoins as a replica


class Topology(Protocol):
    """What the faults act on (the runner's `Run` is one)."""

    redis: Standalone | RedisCluster
    proxy: ProxyProcess | None
    shards: dict[str, ChaosProc]
    gateways: list[ChaosProc]
    clients: list[Client]
    fsync: str
    removed: set[str]  # shards removed on purpose: not started again

    def new_shard(self, name: str) -> ChaosProc: ...

    def boost(self, factor: float) -> None:
        """Multiply the write rate by `factor` (1: back to normal)."""

    def pause_writes(self) -> None:
        """No new write until the loss scan after this fault (which resumes them), so
        no write to a row can hide that Redis lost an earlier one."""


@dataclass
class FaultRecord:
    fault: Fault
    start: float = 0.0  # wall clock
    end: float = 0.0
    note: str = ""
    restarted: bool = False  # Redis (a node) crashed: scan for lost writes after it
    lossy: bool = False  # ... and it may have lost acknowledged writes
    lost: int = 0  # acknowledged writes the scan after it found lost
    scanned: float = 0.0  # when (wall clock) that scan ended
    recovery: float | None = None  # seconds from the start to the last synced after it
    resets: int = 0  # lists it reset
    resumes: int = 0  # lists only resumed (no reset)
    reasons: Counter[str] = field(default_factory=Counter)  # of the resets in its window
    extra: dict[str, Any] = field(default_factory=dict)


async def _wait_exit(proc: ChaosProc, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while proc.alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return None if proc.proc is None else proc.proc.poll()


async def _kill(top: Topology, f: Fault, rec: FaultRecord) -> None:
    proc = top.shards[f.target]
    proc.send(signal.SIGKILL)
    rec.note = f"exit {await _wait_exit(proc, 5)}"
    proc.start()


async def _term(top: Topology, f: Fault, rec: FaultRecord) -> None:
    proc = top.shards[f.target]
    started = time.monotonic()
    proc.send(signal.SIGTERM)
    code = await _wait_exit(proc, 10)
    if code is None:
        proc.kill()
    rec.note = f"exit {code} after {time.monotonic() - started:.2f}s"
    proc.start()


async def _stop(top: Topology, f: Fault, rec: FaultRecord) -> None:
    proc = top.shards[f.target]
    proc.send(signal.SIGSTOP)
    await asyncio.sleep(f.duration)
    proc.send(signal.SIGCONT)


async def _partition(top: Topology, f: Fault, rec: FaultRecord) -> None:
    assert top.proxy is not None
    top.proxy.set_mode(f.target, f.mode, f.delay_ms)
    await asyncio.sleep(f.duration)
    top.proxy.set_mode(f.target, "pass")


async def _gateway(top: Topology, f: Fault, rec: FaultRecord) -> None:
    proc = top.gateways[int(f.target.rpartition("-")[2])]
    on = sum(1 for c in top.clients if c.urls[c.gateway % len(c.urls)] == proc.url)
    rec.note = f"{on} clients were on it"
    proc.send(signal.SIGKILL)
    await _wait_exit(proc, 5)
    await asyncio.sleep(1.0)
    proc.start()


async def _slow_client(top: Topology, f: Fault, rec: FaultRecord) -> None:
    client = next(c for c in top.clients if c.name == f.target)
    client.reading.clear()
    top.boost(_BURST)  # more deltas than its buffers and the gateway's queue can hold
    try:
        await asyncio.sleep(f.duration)
    finally:
        top.boost(1.0)
        client.reading.set()


async def _up(node: RedisNode, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(resp.ping, node.port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis on {node.port} did not come back")
        await asyncio.sleep(0.05)


async def _redis(top: Topology, f: Fault, rec: FaultRecord) -> None:
    """A crash (SIGKILL) and a start on the AOF: of the server, or of one master."""
    if isinstance(top.redis, Standalone):
        node = top.redis.node
    else:
        node = top.redis.masters()[int(f.target.rpartition("-")[2])]
    top.pause_writes()
    node.kill()
    node.spawn()
    await _up(node)
    if isinstance(top.redis, RedisCluster):
        await _healthy(top.redis)
    rec.restarted, rec.lossy = True, top.fsync != "always"


async def _healthy(cluster: RedisCluster, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(cluster.healthy):
        if time.monotonic() > deadline:
            raise RuntimeError("redis cluster not healthy again")
        await asyncio.sleep(0.1)


async def _failover(top: Topology, f: Fault, rec: FaultRecord) -> None:
    assert isinstance(top.redis, RedisCluster)
    index = int(f.target.rpartition("-")[2])
    master, replica = top.redis.pairs[index]
    if f.duration > 0:
        # Replication lag, made certain: the replica is paused (it cannot reconnect) and
        # the master drops its link, so what the master acknowledges from now on never
        # reaches the replica, not even from a socket buffer.
        replica.signal(signal.SIGSTOP)
        await asyncio.to_thread(resp.command, master.port, "CLIENT", "KILL", "TYPE", "replica")
        await asyncio.sleep(f.duration)
    top.pause_writes()
    master.kill()
    replica.signal(signal.SIGCONT)
    await asyncio.to_thread(top.redis.promote, index)
    # The old master stays down a while, as a crashed machine would: one started again at
    # once loads its AOF and serves its slots *as a master*, lost writes included, until
    # gossip tells it of the promotion, which Redis Cluster allows and no client can see.
    await asyncio.sleep(_DOWN_S)
    master.spawn()
    await _up(master)
    await asyncio.to_thread(top.redis.rejoin, index)
    await _healthy(top.redis)
    rec.restarted = rec.lossy = True
    rec.note = f"{replica.port} promoted, {master.port} now its replica"


async def _add(top: Topology, f: Fault, rec: FaultRecord) -> None:
    top.new_shard(f.target).start()


async def _remove(top: Topology, f: Fault, rec: FaultRecord) -> None:
    proc = top.shards[f.target]
    top.removed.add(f.target)
    proc.send(signal.SIGTERM)
    code = await _wait_exit(proc, 10)
    if code is None:
        proc.kill()
    rec.note = f"exit {code}"


_KINDS: dict[str, Callable[[Topology, Fault, FaultRecord], Coroutine[Any, Any, None]]] = {
    "kill": _kill, "term": _term, "stop": _stop, "partition": _partition,
    "gateway": _gateway, "slow-client": _slow_client, "redis": _redis,
    "failover": _failover, "add-shard": _add, "remove-shard": _remove,
}


async def inject(top: Topology, f: Fault) -> FaultRecord:
    """Inject `f` and return once it has run its course (healed where it heals)."""
    rec = FaultRecord(f, start=time.time())
    await _KINDS[f.kind](top, f, rec)
    rec.end = time.time()
    return rec
