"""What a running shard reports: its status (heartbeat value, `/readyz`, `lq status`) and
its Prometheus metrics, read from the parts at the time of asking.

The status keys are a contract with `lq status` and `/v1/cluster`: `subscriptions`,
`views`, `collections`, `rows` (the matcher's counts), `partitions`, `lag_ms`,
`changes`, `fenced`, `lapses`, `frames`, `inc`, `http_port`, `state`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .engine import Engine
from .loop_tail import TailLoop
from .ownership import Ownership
from .publisher import Publisher

__all__ = ["Reporter"]

Metrics = dict[str, tuple[str, str, float]]


@dataclass(frozen=True, slots=True)
class Reporter:
    """Reads the counters of one run of a shard."""

    engine: Engine
    tail: TailLoop
    ownership: Ownership
    publisher: Publisher

    def status(self) -> dict[str, Any]:
        out = self.engine.stats()
        out.update(
            lag_ms=round(self.tail.lag_ms, 1),
            fenced=self.publisher.stats.fenced,
            lapses=self.ownership.lapses,
            frames=self.publisher.stats.frames,
        )
        return out

    def metrics(self, s: dict[str, Any]) -> Metrics:
        """{name: (kind, help, value)} from a `status()` and the publisher's counters."""
        p, claims = self.publisher.stats, self.engine.claim_seconds
        return {
            "partitions_owned": ("gauge", "partitions served", s.get("partitions", 0)),
            "subscriptions": ("gauge", "subscriptions served", s.get("subscriptions", 0)),
            "views": ("gauge", "distinct query views", s.get("views", 0)),
            "collections": ("gauge", "collections held in memory", s.get("collections", 0)),
            "rows_cached": ("gauge", "rows held in memory", s.get("rows", 0)),
            "tail_lag_ms": ("gauge", "age of the newest log entry read", s.get("lag_ms", 0)),
            "changes": ("counter", "changes applied", s.get("changes", 0)),
            "frames": ("counter", "delta frames published", p.frames),
            "fenced_publishes": ("counter", "frames refused by fencing", s.get("fenced", 0)),
            "frames_no_stream": ("counter", "frames refused: the gateway's stream is gone",
                                 p.refused_no_stream),
            "lease_lapses": ("counter", "leases given up after their deadline passed (stalls)",
                             s.get("lapses", 0)),
            "publish_overflows": ("counter", "gateway buffers dropped", p.overflows),
            "errors": ("counter", "publish errors", p.errors),
            "claim_seconds_sum": ("counter", "time spent claiming partitions", sum(claims)),
            "claims": ("counter", "partitions claimed", len(claims)),
        }
