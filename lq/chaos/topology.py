"""The processes of a chaos run: Redis, the proxies, the shards and the gateways.

Invariants: each shard on standalone Redis talks to Redis through its own proxy (so a
partition can be put between that one shard and Redis); on a Cluster, shards connect
directly (the cluster client learns node addresses from Redis itself and would go
around a proxy). Everything started here is ended by `close()`, in the order gateways,
shards, proxies, Redis, and every process dies with the runner anyway
(`lq._orphan_guard`). `heal()` undoes what a fault may have left: a paused shard is
continued, a proxy passes, a dead process that should run is started again.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from pathlib import Path

import httpx

from lq.chaos.clients import Client
from lq.chaos.procs import ChaosProc, base_env
from lq.chaos.proxy import ProxyProcess
from lq.chaos.redis_nodes import RedisCluster, Standalone
from lq.chaos.settings import TIMINGS, ChaosSettings
from lq.chaos.writer import Writer

__all__ = ["Run"]


class Run:
    """The topology of one run (implements `faults.Topology`)."""

    def __init__(self, s: ChaosSettings, run_dir: Path) -> None:
        self.s = s
        self.dir = run_dir
        self.fsync = s.fsync
        self.secret = secrets.token_urlsafe(32)
        self.redis: Standalone | RedisCluster = (
            RedisCluster(run_dir, s.fsync) if s.redis == "cluster"
            else Standalone(run_dir, s.fsync))
        self.proxy: ProxyProcess | None = (
            ProxyProcess(run_dir / "proxy.log") if s.redis == "standalone" else None)
        timings = TIMINGS[s.timings]
        self.shard_env = {**timings, "LQ_GATEWAY_GRACE_MS": "5000"}
        gateway_env = {**timings, "LQ_ACCESS_LOG": "false", "LQ_OUTBOX_MAX_MESSAGES":
                       str(s.outbox), "LQ_DRAIN_TIMEOUT": "2", "LQ_POLL_LEASE": "20"}
        self.shards: dict[str, ChaosProc] = {}
        self.removed: set[str] = set()
        self.gateways = [
            ChaosProc(f"gateway-{i}", "gateway", base_env(self.redis.url, self.secret,
                                                          gateway_env), run_dir)
            for i in range(s.gateways)]
        self.clients: list[Client] = []
        self.writer: Writer | None = None  # set by the runner
        for i in range(s.shards):
            self.new_shard(f"shard-{i}")

    def new_shard(self, name: str) -> ChaosProc:
        """A shard process (not started), behind a proxy of its own on standalone."""
        url = self.redis.url
        if self.proxy is not None and isinstance(self.redis, Standalone):
            url = f"redis://127.0.0.1:{self.proxy.add(name, self.redis.node.port)}/0"
        proc = ChaosProc(name, "shard", base_env(url, self.secret, self.shard_env), self.dir)
        self.shards[name] = proc
        return proc

    def boost(self, factor: float) -> None:
        if self.writer is not None:
            self.writer.boost = factor

    def pause_writes(self) -> None:
        if self.writer is not None:
            self.writer.paused = True

    def running_shards(self) -> list[ChaosProc]:
        return [p for p in self.shards.values() if p.alive()]

    @property
    def urls(self) -> list[str]:
        return [g.url for g in self.gateways]

    def start(self) -> None:
        for proc in [*self.shards.values(), *self.gateways]:
            proc.start()

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every running shard and gateway answers /readyz with 200."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as http:
            for proc in [*self.running_shards(), *self.gateways]:
                while True:
                    try:
                        if (await http.get(f"{proc.url}/readyz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if not proc.alive() or time.monotonic() > deadline:
                        raise RuntimeError(f"{proc.name} not ready:\n{proc.tail()}")
                    await asyncio.sleep(0.1)

    def heal(self) -> list[str]:
        """Undo what faults left behind; what was done."""
        done = []
        for name, proc in self.shards.items():
            if proc.paused:
                proc.send(signal.SIGCONT)
                done.append(f"continued {name}")
            if self.proxy is not None and self.proxy.modes.get(name, "pass") != "pass":
                self.proxy.set_mode(name, "pass")
                done.append(f"healed the link of {name}")
            if not proc.alive() and name not in self.removed:
                proc.start()
                done.append(f"started {name}")
        for gw in self.gateways:
            if not gw.alive():
                gw.start()
                done.append(f"started {gw.name}")
        for client in self.clients:
            client.reading.set()
        return done

    def logs(self, limit: int = 1500) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail(limit)}"
                         for p in [*self.shards.values(), *self.gateways])

    async def close(self) -> None:
        for group in (self.gateways, list(self.shards.values())):
            for proc in group:
                proc.send(signal.SIGCONT)
                proc.send(signal.SIGTERM)
            for proc in group:
                deadline = time.monotonic() + 10
                while proc.alive() and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                proc.kill()
        if self.proxy is not None:
            self.proxy.close()
        self.redis.close()
