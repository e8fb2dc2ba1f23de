"""Read-only views of shard membership, for gateways (readiness, cluster status).

Liveness is decided by Redis's clock only (DESIGN.md section 2): a member is live while
its score (expiry in ms, Redis time) is in the future. No keyspace scan.
"""

from __future__ import annotations

from cluster.keys import Keys

from . import _lua
from .connection import RedisClient

__all__ = ["live_shard_count"]

_LIVE_COUNT = _lua.load("live_count")


async def live_shard_count(client: RedisClient, prefix: str) -> int:
    """The number of shards whose membership entry has not expired (Redis time)."""
    return int(await _LIVE_COUNT(client, [Keys(prefix).members()], []))
