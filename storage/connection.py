"""One connection factory for standalone Redis and Redis Cluster, from one URL.

`redis://`, `rediss://` and `unix://` give a standalone client; `redis+cluster://` and
`rediss+cluster://` give a cluster client seeded by that node. Clients speak bytes
(values are binary) and retry connection errors with exponential backoff. The caller
owns the client and closes it with `aclose()`.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

__all__ = ["RedisClient", "connect", "is_cluster", "redact", "server_run_id"]

RedisClient = Redis | RedisCluster
_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


class _HiredisPackedConnection(Connection):
    """A connection that packs commands with hiredis (C) instead of pure Python.

    redis-py's asyncio connection packs every argument in Python, which is most of the
    client's cost on a pipelined write path; hiredis produces the same RESP bytes.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:
            args = (*args[0].split(), *args[1:])
        return [hiredis.pack_command(args)]


def redact(url: str) -> str:
    """The URL with any password replaced, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}" if ":" in creds else f"{scheme}{sep}***@{host}"


def connect(
    url: str, *, retries: int = 0, max_connections: int = 512, **options: Any
) -> RedisClient:
    """A client for `url`; nothing is sent until first use.

    `retries` defaults to 0 because a command re-sent after a lost reply could apply a
    write twice; callers retry with backoff where that is safe. A standalone client
    waits up to 5 s for a free connection when all `max_connections` are busy instead
    of failing at once.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a Redis URL: {redact(url)!r}")
    retry = Retry(ExponentialBackoff(cap=1.0, base=0.02), retries)
    common: dict[str, Any] = {
        "decode_responses": False,
        "socket_connect_timeout": 5.0,
        "retry": retry,
        **options,
    }
    if scheme in _CLUSTER_SCHEMES:
        plain = f"{_CLUSTER_SCHEMES[scheme]}://{rest}"
        # Never rebuild the whole slot table on a run of MOVED replies (redis-py's
        # default, every 5th): that closes the connections of commands in flight, and
        # the client then re-sends them, so a write script could run twice. A burst of
        # first commands on a fresh client is enough to trigger it. A MOVED still
        # updates its slot; connection errors still refresh the table.
        common.setdefault("reinitialize_steps", 0)
        common.setdefault("max_connections", max_connections)
        return RedisCluster.from_url(plain, **common)
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"unsupported Redis URL scheme {scheme!r}")
    common["retry_on_error"] = [RedisConnectionError, RedisTimeoutError]
    if scheme == "redis":
        common.setdefault("connection_class", _HiredisPackedConnection)
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=5.0, **common
    )
    return Redis.from_pool(pool)


async def server_run_id(client: RedisClient) -> str | None:
    """What identifies the data Redis serves: the standalone server's run_id, or on a
    Cluster every primary's address and run_id. It changes when Redis restarts and when
    a replica takes over a primary's slots, either of which may lose acknowledged writes
    (a crash under `appendfsync everysec`, asynchronous replication), so whoever keeps
    state read from Redis must then reload it. On a Cluster, asking a primary that is
    gone raises a connection error, after which the client learns the new topology."""
    if isinstance(client, RedisCluster):
        infos: Any = await client.info("server", target_nodes=RedisCluster.PRIMARIES)
        return ",".join(sorted(f"{node}={info.get('run_id')}" for node, info in infos.items()))
    info: Any = await client.info("server")
    run_id = info.get("run_id")
    return None if run_id is None else str(run_id)


def is_cluster(client: RedisClient) -> bool:
    return isinstance(client, RedisCluster)
