"""The storage front: one per process, opened from `StorageSettings`, owning its clients.

Invariants:
- **One client for commands per process** (`client`, one pool), opened by `Storage.open`
  and closed by `aclose()`. Each adapter the front gives (`rows`, `log`, `registry`,
  `control`, `deltas`, `leases`, `membership`) is built once, on that client, with the
  settings' prefix and limits (`log_maxlen`, `delta_maxlen`, ...). So no two parts of
  a process can disagree on a key name or a stream length, and shard and gateway agree
  because both read the same settings.
- **Blocking reads never use the command client**: an XREAD BLOCK (delta, control and
  notice streams, the shard's tail) holds its connection while it waits. `blocking()`
  makes a separate small client, bounded to `BLOCKING_CONNECTIONS` connections (per
  node on Redis Cluster), with the read adapters on it; take one per reading loop,
  never one per partition or subscription: a front makes at most `MAX_BLOCKING_READERS`.
  The front keeps every one it made.
- **`aclose()` closes everything the front opened**: the blocking clients, then the
  command client. It is idempotent; after it `blocking()` raises.

Usage, in a process's lifespan (the gateway passes its socket timeouts as options):

    async with Storage.open(settings) as front:
        notices = front.blocking()                  # closed by the front
        await front.rows.put(tenant, entity, row_id, values)
        found, after = await notices.membership.notices(after, block_ms=1000)

Tests that check one adapter may still build it alone with an explicit prefix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from cluster.keys import Keys
from cluster.query import CursorSigner, Query
from cluster.settings import StorageSettings

from .batch import BatchResult, WriteOp, run_batch
from .connection import RedisClient, connect, is_cluster, server_run_id
from .control import Control
from .deltas import Deltas
from .expiry import due_rows
from .leases import Leases
from .log import ChangeLog
from .membership import Membership
from .membership_read import live_shard_count
from .oneshot import QueryPage, run_query
from .registry import Registry
from .rows import RowStore
from .secrets import cursor_secret
from .status import ClusterSnapshot, read_snapshot
from .tail import PartitionTail
from .tickets import Tickets

__all__ = ["BLOCKING_CONNECTIONS", "MAX_BLOCKING_READERS", "BlockingReads", "Storage"]

BLOCKING_CONNECTIONS = 2
"""Connections of one blocking-read client. One reader reads one thing at a time and
needs one; the second is headroom, so that a command sent right after a cancelled or
timed-out read (whose connection is being dropped) does not wait for the pool."""

MAX_BLOCKING_READERS = 8
"""Blocking-read clients one front makes at most (a shard uses three, a gateway two):
more means a client per partition or per subscription, which this refuses."""


class BlockingReads:
    """One small client for one blocking reader, with the adapters that block on it.

    Made by `Storage.blocking()` and closed by that front's `aclose()`; the adapters
    carry the front's prefix and limits.
    """

    def __init__(self, settings: StorageSettings, client: RedisClient) -> None:
        self.client = client
        self.tail = PartitionTail(client, settings)
        self.control = Control(client, settings.prefix)
        self.membership = Membership(client, settings.prefix)
        self.deltas = Deltas(client, settings.prefix, settings.delta_maxlen)


class Storage:
    """The front of one process's storage; see the module docstring for its invariants.

    `Storage(settings, client)` takes ownership of `client`; `Storage.open` connects.
    """

    def __init__(self, settings: StorageSettings, client: RedisClient) -> None:
        self.settings = settings
        self.client = client
        self.keys = Keys(settings.prefix)
        prefix = settings.prefix
        self.rows = RowStore(client, settings)
        self.log = ChangeLog(client, settings)
        self.registry = Registry(client, prefix)
        self.control = Control(client, prefix)
        self.deltas = Deltas(client, prefix, settings.delta_maxlen)
        self.leases = Leases(client, prefix)
        self.membership = Membership(client, prefix)
        self.tickets = Tickets(client, prefix)
        self._blocking: list[BlockingReads] = []
        self._closed = False

    @classmethod
    def open(cls, settings: StorageSettings, **options: Any) -> Storage:
        """A front on a new command client for `settings.redis_url` (`options` go to
        `storage.connect`, e.g. socket timeouts); nothing is sent until first use."""
        return cls(settings, connect(settings.redis_url, **options))

    def blocking(
        self, *, max_connections: int = BLOCKING_CONNECTIONS, **options: Any
    ) -> BlockingReads:
        """A new small client for one blocking reader (`options` go to `storage.connect`;
        its socket timeout, if any, must exceed the reads' `block_ms`)."""
        if self._closed:
            raise RuntimeError("the storage front is closed")
        if len(self._blocking) >= MAX_BLOCKING_READERS:
            raise RuntimeError(f"more than {MAX_BLOCKING_READERS} blocking readers")
        client = connect(self.settings.redis_url, max_connections=max_connections, **options)
        reads = BlockingReads(self.settings, client)
        self._blocking.append(reads)
        return reads

    @property
    def cluster(self) -> bool:
        """Whether the command client speaks to a Redis Cluster."""
        return is_cluster(self.client)

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Close every blocking client made, then the command client (idempotent)."""
        if self._closed:
            return
        self._closed = True
        readers, self._blocking = self._blocking, []
        closed = [reads.client.aclose() for reads in readers]
        failed = [e for e in await asyncio.gather(*closed, return_exceptions=True) if e is not None]
        await self.client.aclose()
        if failed:  # every client was still closed; report the first failure
            raise failed[0]

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the free functions of `storage`, with this front's client and prefix

    async def cursor_secret(self, configured: str = "") -> bytes:
        """The cursor HMAC key: `configured` if set, else the cluster's key in Redis."""
        return await cursor_secret(self.client, self.settings.prefix, configured)

    async def due_rows(
        self, ps: Sequence[int], now_ms: int, limit: int = 200
    ) -> dict[int, list[tuple[str, str, str]]]:
        """Per partition, up to `limit` (tenant, entity, id) whose expiry is <= `now_ms`."""
        return await due_rows(self.client, self.settings.prefix, ps, now_ms, limit)

    async def live_shard_count(self) -> int:
        """The number of live shards (Redis's clock)."""
        return await live_shard_count(self.client, self.settings.prefix)

    async def read_snapshot(self) -> ClusterSnapshot:
        """Members, counters, every partition's lease holder and Redis facts (`lq status`)."""
        return await read_snapshot(self.client, self.settings.prefix)

    async def server_run_id(self) -> str | None:
        """The identity of the data Redis serves (`connection.server_run_id`): it changes
        when Redis restarts or, on a Cluster, when a replica takes over a primary."""
        return await server_run_id(self.client)

    async def query(self, tenant: str, query: Query, signer: CursorSigner) -> QueryPage:
        """A one-shot query's page (`storage.run_query`)."""
        return await run_query(self.client, self.keys, tenant, query, signer)

    async def batch(self, tenant: str, ops: list[WriteOp]) -> list[BatchResult]:
        """A pipelined batch of writes, one result per op (`storage.run_batch`)."""
        return await run_batch(self.rows, tenant, ops)
