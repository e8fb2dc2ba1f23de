"""Small helpers for reading one stream, the same way on standalone Redis and Cluster.

redis-py's cluster client cannot compute the slot of XREAD and XREADGROUP locally (their
keys sit after `STREAMS`), so for every such command it first asks a node
`COMMAND GETKEYS`: two extra round trips, even inside a pipeline. Here a single-stream
read names its node (`target_nodes`), which skips that; a MOVED reply is still
followed. Non-blocking reads of many streams use XRANGE with an exclusive start
(Redis 6.2), whose key position is fixed.

`block_ms <= 0` means "do not block" everywhere (Redis reads `BLOCK 0` as forever).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.cluster import RedisCluster

from .connection import RedisClient

__all__ = ["Entry", "entries_of", "entry_exists", "node_kwargs", "xread", "xreadgroup"]

Entry = tuple[bytes, dict[bytes, bytes]]


async def node_kwargs(client: RedisClient, key: str) -> dict[str, Any]:
    """`target_nodes` for a command on `key` on Redis Cluster; nothing on standalone.

    A fresh cluster client knows no slots until initialized (`get_node_from_key` would
    raise SlotNotCoveredError); `initialize` is a no-op once done.
    """
    if not isinstance(client, RedisCluster):
        return {}
    await client.initialize()
    return {"target_nodes": client.get_node_from_key(key)}


def entries_of(reply: Any) -> list[Entry]:
    """The entries of a one-stream XREAD/XREADGROUP reply (RESP2 list or RESP3 dict)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        (streams,) = reply.values()
        return list(streams[0]) if streams else []
    return list(reply[0][1])


def _block(block_ms: int) -> list[Any]:
    return ["BLOCK", block_ms] if block_ms > 0 else []


async def xread(
    client: RedisClient, key: str, after: str, count: int, block_ms: int
) -> list[Entry]:
    """Entries of `key` after `after` (exclusive), waiting up to `block_ms` for one."""
    args: list[Any] = ["XREAD", "COUNT", count, *_block(block_ms), "STREAMS", key, after]
    return entries_of(await client.execute_command(*args, **await node_kwargs(client, key)))


async def xreadgroup(
    client: RedisClient,
    key: str,
    group: str,
    consumer: str,
    after: str,
    count: int,
    block_ms: int,
) -> list[Entry]:
    """XREADGROUP of one stream: `after` is `>` for new entries or an id for own pending."""
    args: list[Any] = ["XREADGROUP", "GROUP", group, consumer, "COUNT", count]
    args += [*(_block(block_ms) if after == ">" else []), "STREAMS", key, after]
    return entries_of(await client.execute_command(*args, **await node_kwargs(client, key)))


async def entry_exists(client: RedisClient, key: str, entry_id: str) -> bool:
    found = await client.xrange(key, entry_id, entry_id, count=1)
    return bool(found)
