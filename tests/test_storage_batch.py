"""Pipelined batches: one result per op, in order, each op applied in batch order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from cluster.errors import InvalidRequest, InvalidRow, NotFound, TooLarge, VersionConflict
from cluster.partition import partition_of
from cluster.settings import StorageSettings
from storage import BatchResult, ChangeLog, RedisClient, RowStore, WriteOp, WriteResult, run_batch
from tests.storage_helpers import KEYS, TENANT, open_client, stored_rows

P = partition_of(TENANT, "tasks")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RedisClient]:
    async with open_client(redis_url) as c:
        yield c


@pytest.fixture
def store(client: RedisClient) -> RowStore:
    return RowStore(client, StorageSettings(max_row_bytes=1000))


def ok(result: BatchResult) -> WriteResult:
    assert isinstance(result, WriteResult), result
    return result


async def test_empty_batch(store: RowStore) -> None:
    assert await run_batch(store, TENANT, []) == []


async def test_each_op_its_own_result_in_order(client: RedisClient, store: RowStore) -> None:
    old = await store.put(TENANT, "tasks", "old", {"a": 1, "b": 2})
    gone = await store.put(TENANT, "tasks", "gone", {"a": 1})
    ops = [
        WriteOp("put", "tasks", "new", {"n": 1}),
        WriteOp("patch", "tasks", "old", {"b": None, "c": 3}),
        WriteOp("delete", "tasks", "gone"),
        WriteOp("put", "tasks", "bad\x00id", {"n": 1}),
        WriteOp("patch", "tasks", "missing", {"n": 1}),
        WriteOp("delete", "tasks", "missing"),
        WriteOp("put", "bad-entity", "x", {"n": 1}),
        WriteOp("put", "tasks", "list", [1, 2]),
        WriteOp("put", "tasks", "huge", {"s": "x" * 2000}),
        WriteOp("put", "tasks", "old", {"n": 1}, if_match=old.version - 1),
        WriteOp("patch", "tasks", "old", {"n": 1}, if_match=old.version - 1),
        WriteOp("patch", "tasks", "old", ["not an object"]),
        WriteOp("put", "other", "ttl", {"n": 2}, ttl_ms=600_000),
        WriteOp("frob", "tasks", "x", {"n": 1}),  # type: ignore[arg-type]
    ]
    results = await run_batch(store, TENANT, ops)
    kinds: list[Any] = [type(r) for r in results]
    assert kinds == [
        WriteResult, WriteResult, WriteResult, InvalidRequest, NotFound, NotFound,
        InvalidRequest, InvalidRow, TooLarge, VersionConflict, VersionConflict, InvalidRow,
        WriteResult, InvalidRequest,
    ]
    assert [r.id for r in results if isinstance(r, WriteResult)] == ["new", "old", "gone", "ttl"]
    assert ok(results[2]).version > gone.version
    conflict = results[9]
    assert isinstance(conflict, VersionConflict)
    assert conflict.current == ok(results[1]).version  # the patch before it already ran
    rows = await stored_rows(client, TENANT, "tasks")
    assert {k: v for k, (_, v) in rows.items()} == {"new": {"n": 1}, "old": {"a": 1, "c": 3}}
    ttl_row = await store.get(TENANT, "other", "ttl")
    assert ttl_row is not None and ttl_row.expires_at > 0


async def test_patch_sees_an_earlier_put_of_the_same_row(store: RowStore) -> None:
    await store.put(TENANT, "tasks", "old", {"a": 1})
    results = await run_batch(store, TENANT, [
        WriteOp("put", "tasks", "old", {"b": 2}),
        WriteOp("patch", "tasks", "old", {"c": 3}),
        WriteOp("put", "tasks", "new", {"b": 2}),
        WriteOp("patch", "tasks", "new", {"c": 3}),
    ])
    versions = [ok(r).version for r in results]
    assert versions == sorted(versions)
    old = await store.get(TENANT, "tasks", "old")
    new = await store.get(TENANT, "tasks", "new")
    assert old is not None and old.values == {"b": 2, "c": 3}
    assert new is not None and new.values == {"b": 2, "c": 3}
    assert old.version == versions[1] and new.version == versions[3]


async def test_ops_on_one_row_apply_in_batch_order(client: RedisClient, store: RowStore) -> None:
    await store.put(TENANT, "tasks", "r", {"a": 1})
    log = ChangeLog(client, StorageSettings())
    start, _ = await log.mark(P)
    results = await run_batch(store, TENANT, [
        WriteOp("patch", "tasks", "r", {"b": 2}),
        WriteOp("put", "tasks", "r", {"z": 1}),
        WriteOp("patch", "tasks", "r", {"y": 2}),
        WriteOp("put", "tasks", "r", {"final": True}),
        WriteOp("patch", "tasks", "s", {"a": 1}),  # not there yet: NotFound
        WriteOp("put", "tasks", "s", {"a": 1}),
        WriteOp("patch", "tasks", "s", {"b": 2}),
        WriteOp("delete", "tasks", "s"),
        WriteOp("patch", "tasks", "s", {"c": 3}),  # deleted again: NotFound
    ])
    assert [type(r) for r in results] == [
        WriteResult, WriteResult, WriteResult, WriteResult,
        NotFound, WriteResult, WriteResult, WriteResult, NotFound,
    ]
    row = await store.get(TENANT, "tasks", "r")
    assert row is not None and row.values == {"final": True}
    assert await store.get(TENANT, "tasks", "s") is None
    changes = (await log.read_to_end(P, start)).changes
    assert [(c.id, c.values) for c in changes] == [
        ("r", {"a": 1, "b": 2}),
        ("r", {"z": 1}),
        ("r", {"z": 1, "y": 2}),
        ("r", {"final": True}),
        ("s", {"a": 1}),
        ("s", {"a": 1, "b": 2}),
        ("s", None),
    ]
    written = [r.version for r in results if isinstance(r, WriteResult)]
    assert [c.version for c in changes] == written


async def test_batch_patch_keeps_expiry_and_if_match(client: RedisClient, store: RowStore) -> None:
    w = await store.put(TENANT, "tasks", "t", {"a": 1}, ttl_ms=600_000)
    before = await store.get(TENANT, "tasks", "t")
    assert before is not None
    results = await run_batch(store, TENANT, [
        WriteOp("patch", "tasks", "t", {"b": 2}, if_match=w.version),
        WriteOp("delete", "tasks", "t", if_match=w.version),  # stale by now
    ])
    assert isinstance(results[0], WriteResult)
    assert isinstance(results[1], VersionConflict)
    assert results[1].current == results[0].version
    after = await store.get(TENANT, "tasks", "t")
    assert after is not None and after.values == {"a": 1, "b": 2}
    assert after.expires_at == before.expires_at
    assert await client.zscore(KEYS.ttl(P), f"{TENANT}\0tasks\0t") == before.expires_at


async def test_large_batch(client: RedisClient, store: RowStore) -> None:
    ops = [WriteOp("put", "tasks", f"r{i}", {"i": i}) for i in range(500)]
    ops += [WriteOp("patch", "tasks", f"r{i}", {"j": i}) for i in range(0, 500, 2)]
    results = await run_batch(store, TENANT, ops)
    assert all(isinstance(r, WriteResult) for r in results)
    rows = await stored_rows(client, TENANT, "tasks")
    assert len(rows) == 500
    assert rows["r2"][1] == {"i": 2, "j": 2} and rows["r3"][1] == {"i": 3}
