"""Prometheus metrics of one app, in a registry of its own (never the global one).

Labels are bounded: the route is the matched template (or `unmatched`), never the raw
path, so ids and entity names cannot blow up the label space.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .breaker import BreakerState

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Requests by route and status, latency, breaker state, Redis errors, the canary."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # (method, route, status) -> its request counter and latency histogram: labels()
        # takes a lock and builds a key on every call, once per request
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.requests = Counter(
            "lq_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lq_http_request_duration_seconds",
            "HTTP request latency by method and route template",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.oneshot = Counter(
            "lq_oneshot_queries",
            "One-shot queries by how they were answered: memory (the owner shard), scan "
            "(not asked) or fallback (asked, then scanned), and why",
            ["path", "reason"],
            registry=self.registry,
        )
        self.breaker = Gauge(
            "lq_redis_breaker_state",
            "Redis circuit breaker: 0 closed, 1 half-open, 2 open",
            registry=self.registry,
        )
        self.redis_errors = Counter(
            "lq_redis_errors",
            "Redis availability faults seen by the gateway, by kind",
            ["kind"],
            registry=self.registry,
        )

        self.canary_delay = Histogram(
            "lq_canary_delay_seconds",
            "Delivery canary: time from the canary row's write to its delta on this gateway",
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.canary_age = Gauge(
            "lq_canary_age_seconds",
            "Delivery canary: seconds since the last canary delta (while shards are live)",
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:  # bounded like the label space itself (see above)
            children = self._children[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def breaker_changed(self, state: BreakerState) -> None:
        self.breaker.set(int(state))

    def render(self) -> bytes:
        return generate_latest(self.registry)
