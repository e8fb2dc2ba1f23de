"""`GET /v1/cluster` (scope `lq:admin`) and the live side's Prometheus metrics.

Invariant: the cluster view is read from membership only (live members by Redis's
clock and the counters each keeps in its liveness value), never from a keyspace scan;
a member whose value cannot be decoded is listed with its id alone. The metrics are
read from the gateway's counters at scrape time, so the hot path pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from cluster.partition import PARTITIONS, owner
from storage import MemberKind, Membership

from ..context import Context
from ..responses import json_response
from ..routing import RawRoute

__all__ = ["CLUSTER_PATH", "LiveCollector", "cluster_routes"]

CLUSTER_PATH = "/v1/cluster"
_GAUGES = ("connections", "subscriptions", "queued_bytes", "stack_bytes", "queued_bytes_max",
           "slow_connections", "behind_connections")


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


async def _members(membership: Membership, kind: MemberKind) -> list[dict[str, Any]]:
    ids, _ = await membership.live(kind)
    values = await membership.values(kind, ids)
    return [{**_decode(values.get(i, b"{}")), "id": i} for i in ids]


def cluster_routes(ctx: Context, gateway_id: Callable[[], str]) -> list[BaseRoute]:
    async def cluster(request: Request) -> Response:
        who = ctx.principal(request)
        who.require_admin()
        membership = ctx.storage().membership
        shards = await ctx.call(lambda: _members(membership, "shard"), read=True)
        gateways = await ctx.call(lambda: _members(membership, "gateway"), read=True)
        live = [s["id"] for s in shards]
        owned = dict.fromkeys(live, 0)
        for p in range(PARTITIONS):
            holder = owner(p, live)
            if holder is not None:
                owned[holder] += 1
        for shard in shards:
            shard["owns"] = owned[shard["id"]]
            shard.setdefault("partitions", 0)
            shard.setdefault("subscriptions", 0)
        body = {"shards": shards, "gateways": gateways, "gateway": gateway_id(),
                "partitions": PARTITIONS}
        return json_response(body)

    return [RawRoute(CLUSTER_PATH, cluster, methods=["GET"])]


class LiveCollector:
    """Prometheus collector over the live side's counters (`LiveService.counters`)."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        for name, value in self.read().items():
            if isinstance(value, dict):  # by a label: resets by reason
                labelled = CounterMetricFamily(f"lq_live_{name}", f"live {name} so far",
                                               labels=["reason"])
                for label, count in sorted(value.items()):
                    labelled.add_metric([str(label)], count)
                yield labelled
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                continue
            family: Metric
            if name in _GAUGES:
                family = GaugeMetricFamily(f"lq_live_{name}", f"live {name} now", value=value)
            else:
                family = CounterMetricFamily(f"lq_live_{name}", f"live {name} so far",
                                             value=value)
            yield family
