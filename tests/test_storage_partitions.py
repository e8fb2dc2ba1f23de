"""All 256 partitions: every script and read touches one slot, so nothing is CROSSSLOT."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cluster.partition import PARTITIONS, partition_of
from cluster.query import CursorSigner, parse_query
from cluster.settings import StorageSettings
from storage import (
    ChangeLog,
    RedisClient,
    RowStore,
    WriteOp,
    WriteResult,
    run_batch,
    run_query,
)
from tests.storage_helpers import KEYS, TENANT, entities_covering_partitions, open_client

SIGNER = CursorSigner(b"k" * 32)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RedisClient]:
    async with open_client(redis_url) as c:
        yield c


def test_the_pairs_cover_every_partition() -> None:
    found = entities_covering_partitions()
    assert sorted(found) == list(range(PARTITIONS))
    assert all(partition_of(TENANT, e) == p for p, e in found.items())


async def test_all_partitions(client: RedisClient) -> None:
    settings = StorageSettings()
    store, log = RowStore(client, settings), ChangeLog(client, settings)
    entities = entities_covering_partitions()

    singles = [
        await store.put(TENANT, e, "single", {"p": p}, ttl_ms=600_000)
        for p, e in entities.items()
    ]
    ops = [WriteOp("put", e, "batched", {"p": p}) for p, e in entities.items()]
    ops += [WriteOp("patch", e, "single", {"patched": True}) for e in entities.values()]
    batched = await run_batch(store, TENANT, ops)
    assert all(isinstance(r, WriteResult) for r in [*singles, *batched]), batched

    query_json = {"where": {"p": {"$gte": 0}}, "sort": ["id"], "limit": 10}
    for p, e in entities.items():
        row = await store.get(TENANT, e, "single")
        assert row is not None and row.values == {"p": p, "patched": True}
        assert row.expires_at > 0
        assert await client.zscore(KEYS.ttl(p), f"{TENANT}\0{e}\0single") == row.expires_at
        query = parse_query({"entity": e, **query_json}, signer=SIGNER)
        page = await run_query(client, KEYS, TENANT, query, SIGNER)
        assert [(r.id, r.values) for r in page.rows] == [
            ("batched", {"p": p}), ("single", {"p": p, "patched": True})
        ]
        loaded = await log.load_collection(TENANT, e)
        assert sorted(r.id for r in loaded.rows) == ["batched", "single"]
        got = await log.read(p, "0-0")
        assert [(c.entity, c.id, c.values) for c in got.changes] == [
            (e, "single", {"p": p}),
            (e, "batched", {"p": p}),
            (e, "single", {"p": p, "patched": True}),
        ]

    deleted = await run_batch(store, TENANT, [
        WriteOp("delete", e, rid) for e in entities.values() for rid in ("single", "batched")
    ])
    assert all(isinstance(r, WriteResult) for r in deleted)
    for p in entities:
        assert await client.zcard(KEYS.ttl(p)) == 0
        assert await client.xlen(KEYS.events(p)) == 5


async def test_a_burst_on_a_fresh_client_writes_each_row_once(redis_url: str) -> None:
    """The first commands of a fresh cluster client are misrouted (MOVED) until it knows
    the slots; that must never make a write script run twice (it once did: redis-py
    rebuilt its slot table every 5th MOVED, cut the connections of commands in flight
    and re-sent them). Create-only writes would then fail against themselves."""
    entities = entities_covering_partitions()
    async with open_client(redis_url) as fresh:
        store = RowStore(fresh, StorageSettings())
        chosen = list(entities.items())[:90]  # below the pool's 100 connections
        got = await asyncio.gather(
            *(store.put(TENANT, e, "once", {"p": p}, create_only=True) for p, e in chosen),
            return_exceptions=True,
        )
        assert all(isinstance(r, WriteResult) for r in got), got
        for p, _ in chosen:
            assert await fresh.xlen(KEYS.events(p)) == 1
