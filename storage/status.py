"""One read of the cluster's state for `lq status`: members, their counters, leases.

Read-only and cheap: the live shards and gateways by Redis's clock (the index scores,
never a keyspace scan), their liveness values (each process's counters, JSON) in one
`MGET` per kind (all in the `{m}` slot), the 256 lease keys in one pipeline, and, on a
standalone server, a few `INFO` fields. Nothing here decides what is healthy; the
caller compares the leases with the owners it computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from cluster.partition import PARTITIONS

from .connection import RedisClient, is_cluster
from .leases import Lease, Leases
from .membership import MemberKind, Membership

__all__ = ["ClusterSnapshot", "Member", "read_snapshot"]

_INFO_FIELDS = (
    "redis_version", "used_memory", "used_memory_human", "maxmemory", "maxmemory_policy",
    "aof_enabled", "run_id",
)


@dataclass(frozen=True, slots=True)
class Member:
    """A live shard or gateway: its id, liveness expiry (Redis ms) and counters."""

    id: str
    expires_ms: int
    counters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    now_ms: int
    shards: list[Member]
    gateways: list[Member]
    leases: dict[int, Lease | None]
    redis: dict[str, Any] = field(default_factory=dict)  # empty on Redis Cluster


def _decode(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"raw": raw.decode(errors="replace")}
    return value if isinstance(value, dict) else {"value": value}


async def _members(membership: Membership, kind: MemberKind) -> tuple[list[Member], int]:
    ids, now_ms = await membership.live(kind)
    expiries = await membership.expiries(kind)
    values = await membership.values(kind, ids)
    members = [Member(i, expiries.get(i, 0), _decode(values.get(i))) for i in ids]
    return members, now_ms


async def _info(client: RedisClient) -> dict[str, Any]:
    if is_cluster(client):
        return {}
    info: dict[str, Any] = {}
    for section in ("server", "memory", "persistence"):
        found: Any = await client.info(section)
        info.update({k: found[k] for k in _INFO_FIELDS if k in found})
    return info


async def read_snapshot(client: RedisClient, prefix: str) -> ClusterSnapshot:
    """Members, counters, every partition's lease holder, and Redis facts, now."""
    membership = Membership(client, prefix)
    shards, now_ms = await _members(membership, "shard")
    gateways, _ = await _members(membership, "gateway")
    leases = await Leases(client, prefix).holders(range(PARTITIONS))
    return ClusterSnapshot(now_ms, shards, gateways, leases, await _info(client))
