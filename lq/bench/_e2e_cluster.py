"""The processes of `lq bench e2e`: shards and gateways as `lq dev` runs them.

Started and stopped by `lq.supervisor.Supervisor` (the one that runs `lq dev`'s
children): each child in its own session (a terminal's Ctrl-C reaches only the bench,
which then stops them), wrapped by `lq._orphan_guard` (the kernel kills it if the bench
dies without stopping it), signalled by its own pid only (SIGTERM, then SIGKILL after
`stop_timeout`) and reaped; gateways stop first (they drain), then shards. Every child
gets the bench's Redis, JWT secret and a key prefix of its own, and no other `LQ_`
setting from the environment (`lq.chaos.procs.base_env`); the gateways run without
their access log (one JSON line per write would be read by this process, as in
`lq bench gateway`).
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from lq._net import free_port
from lq.chaos.procs import base_env
from lq.supervisor import ChildSpec, Supervisor

__all__ = ["Cluster", "running"]


@dataclass(frozen=True, slots=True)
class Cluster:
    gateway_ports: list[int]
    pids: dict[str, int]  # child name -> pid, for profiling
    prefix: str  # the key prefix of this run


@contextmanager
def running(redis_url: str, secret: str, shards: int, gateways: int,
            say: Callable[[str], None], ready_timeout: float = 60.0) -> Iterator[Cluster]:
    """Start `shards` shards, then `gateways` gateways, each ready; stop them all on exit
    (exceptions and KeyboardInterrupt included)."""
    prefix = f"lqe{secrets.token_hex(3)}"
    env = base_env(redis_url, secret, {"LQ_PREFIX": prefix, "LQ_ACCESS_LOG": "false"})
    supervisor = Supervisor(say, stop_timeout=10.0)
    shard_specs, gateway_specs, ports = [], [], []
    for i in range(shards):
        port = free_port()
        shard_specs.append(ChildSpec(
            name=f"shard-{i}", argv=[sys.executable, "-m", "lq", "shard"],
            env={**env, "LQ_SHARD_ID": f"bench-{i}", "LQ_HTTP_HOST": "127.0.0.1",
                 "LQ_HTTP_PORT": str(port)},
            ready_url=f"http://127.0.0.1:{port}/readyz", detail=f"health :{port}"))
    for i in range(gateways):
        port = free_port()
        ports.append(port)
        gateway_specs.append(ChildSpec(
            name=f"gateway-{i}",
            argv=[sys.executable, "-m", "lq", "gateway", "--host", "127.0.0.1",
                  "--port", str(port)],
            env=env, ready_url=f"http://127.0.0.1:{port}/readyz",
            detail=f"http://127.0.0.1:{port}"))
    try:
        if not (supervisor.start_group(shard_specs, ready_timeout)
                and supervisor.start_group(gateway_specs, ready_timeout)):
            raise RuntimeError("a shard or gateway did not get ready (its output is above)")
        pids = {c.spec.name: c.pid for c in supervisor.children if c.pid is not None}
        yield Cluster(ports, pids, prefix)
    finally:
        supervisor.stop([supervisor.of_kind("gateway"), supervisor.of_kind("shard")])
