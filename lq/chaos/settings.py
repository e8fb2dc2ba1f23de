"""The settings of one chaos run (frozen; built by `command` from the flags).

Invariant: everything that decides the fault timeline (`plan_settings`) comes from
here, so a run's table names all it needs to repeat that timeline: the seed and these.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lq.chaos.schedule import PlanSettings

__all__ = ["TIMINGS", "ChaosSettings"]

# The shards' and gateways' timing settings: `default` is what `lq shard`/`lq gateway`
# ship with; `fast` is the test suite's (failover in about two seconds).
TIMINGS: dict[str, dict[str, str]] = {
    "default": {},
    "fast": {"LQ_HEARTBEAT_MS": "200", "LQ_MEMBER_TTL_MS": "1500", "LQ_LEASE_TTL_MS": "2000",
             "LQ_LEASE_MARGIN_MS": "300", "LQ_EXPIRY_INTERVAL_MS": "200",
             "LQ_CONTROL_BLOCK_MS": "200", "LQ_SUBSCRIBE_TIMEOUT": "1.0",
             "LQ_DELTA_BLOCK_MS": "500"},
}
_LEASE_S = {"default": 3.0, "fast": 2.0}


@dataclass(frozen=True, slots=True)
class ChaosSettings:
    duration: float = 120.0  # seconds of load, faults included
    seed: int = 1
    shards: int = 3
    gateways: int = 2
    clients: int = 9  # WebSocket, SSE and long polling in turn
    subs: int = 4  # subscriptions per WebSocket client (SSE and poll: one per client)
    faults: tuple[str, ...] = ()
    redis: str = "standalone"
    fsync: str = "always"
    rate: float = 30.0  # writes per second
    tenants: int = 3
    ids: int = 30  # row ids per collection
    timings: str = "fast"
    quiet: float = 8.0  # seconds without writes or faults before the final check
    every: float = 6.0  # the smallest spacing of faults
    ttl_min: float = 1.0
    ttl_max: float = 4.0
    outbox: int = 50  # the gateways' per-connection queue bound, in messages (shipped: 1000)
    progress: float = 10.0
    logs: Path | None = None  # keep the processes' logs here

    @property
    def lease_s(self) -> float:
        return _LEASE_S[self.timings]

    def client_names(self) -> list[str]:
        """WebSocket, SSE and long polling in turn: `ws-0`, `sse-0`, `poll-0`, `ws-1`..."""
        return [f"{('ws', 'sse', 'poll')[i % 3]}-{i // 3}" for i in range(self.clients)]

    def plan_settings(self) -> PlanSettings:
        return PlanSettings(seed=self.seed, duration=self.duration, kinds=self.faults,
                            shards=self.shards, gateways=self.gateways,
                            slow_clients=tuple(n for n in self.client_names()
                                               if not n.startswith("sse")),
                            lease_s=self.lease_s,
                            every=self.every, settle=max(6.0, self.lease_s * 2 + 2))
