"""Finding rows whose TTL has passed, for the partition owner's sweep.

The sweep deletes each through `RowStore.expire` (the conditional delete script), which
re-checks the expiry on Redis's clock, so a row re-written meanwhile survives and a
stale list here is harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cluster.keys import Keys

from ._format import split_ttl_member
from .connection import RedisClient

__all__ = ["due_rows"]


async def due_rows(
    client: RedisClient, prefix: str, ps: Sequence[int], now_ms: int, limit: int = 200
) -> dict[int, list[tuple[str, str, str]]]:
    """Per partition, up to `limit` (tenant, entity, id) whose expiry is <= `now_ms`."""
    if not ps:
        return {}
    keys = Keys(prefix)
    pipe: Any = client.pipeline(transaction=False)
    for p in ps:
        pipe.zrangebyscore(keys.ttl(p), "-inf", now_ms, start=0, num=limit)
    replies = await pipe.execute()
    return {
        p: [split_ttl_member(m) for m in members]
        for p, members in zip(ps, replies, strict=True)
        if members
    }
