"""Preconditions under concurrency, and versions that only grow (DESIGN.md sections 3-4)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cluster.errors import NotFound, VersionConflict
from cluster.partition import partition_of
from cluster.settings import StorageSettings
from storage import RedisClient, RowStore, WriteResult
from tests.storage_helpers import TENANT, open_client


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RedisClient]:
    async with open_client(redis_url) as c:
        yield c


@pytest.fixture
async def second(redis_url: str) -> AsyncIterator[RedisClient]:
    async with open_client(redis_url) as c:
        yield c


async def test_concurrent_if_match_one_wins(client: RedisClient, second: RedisClient) -> None:
    a, b = RowStore(client, StorageSettings()), RowStore(second, StorageSettings())
    for round_ in range(20):
        row_id = f"r{round_}"
        base = await a.put(TENANT, "tasks", row_id, {"n": 0})
        got = await asyncio.gather(
            a.put(TENANT, "tasks", row_id, {"n": 1}, if_match=base.version),
            b.put(TENANT, "tasks", row_id, {"n": 2}, if_match=base.version),
            return_exceptions=True,
        )
        wins = [r for r in got if isinstance(r, WriteResult)]
        losses = [r for r in got if isinstance(r, VersionConflict)]
        assert len(wins) == 1 and len(losses) == 1, got
        assert wins[0].version > base.version
        assert losses[0].current == wins[0].version
        stored = await a.get(TENANT, "tasks", row_id)
        assert stored is not None and stored.version == wins[0].version
        assert stored.values == {"n": 1 if got[0] is wins[0] else 2}


async def test_concurrent_create_only_one_wins(client: RedisClient, second: RedisClient) -> None:
    a, b = RowStore(client, StorageSettings()), RowStore(second, StorageSettings())
    for round_ in range(20):
        row_id = f"c{round_}"
        got = await asyncio.gather(
            a.put(TENANT, "tasks", row_id, {"who": "a"}, create_only=True),
            b.put(TENANT, "tasks", row_id, {"who": "b"}, create_only=True),
            return_exceptions=True,
        )
        wins = [r for r in got if isinstance(r, WriteResult)]
        losses = [r for r in got if isinstance(r, VersionConflict)]
        assert len(wins) == 1 and len(losses) == 1, got
        assert losses[0].current == wins[0].version


async def test_create_only_on_existing_and_if_match_on_absent(client: RedisClient) -> None:
    store = RowStore(client, StorageSettings())
    first = await store.put(TENANT, "tasks", "x", {"a": 1}, create_only=True)
    with pytest.raises(VersionConflict) as info:
        await store.put(TENANT, "tasks", "x", {"a": 2}, create_only=True)
    assert info.value.current == first.version
    with pytest.raises(VersionConflict) as info:
        await store.put(TENANT, "tasks", "nope", {"a": 2}, if_match=5)
    assert info.value.current is None
    with pytest.raises(VersionConflict) as info:
        await store.put(TENANT, "tasks", "x", {"a": 2}, if_match=first.version + 1)
    assert info.value.current == first.version
    ok = await store.put(TENANT, "tasks", "x", {"a": 3}, if_match=first.version)
    assert ok.version > first.version
    # a delete is a write: create-only works again afterwards, If-Match does not
    await store.delete(TENANT, "tasks", "x")
    with pytest.raises(VersionConflict):
        await store.put(TENANT, "tasks", "x", {"a": 4}, if_match=ok.version)
    again = await store.put(TENANT, "tasks", "x", {"a": 5}, create_only=True)
    assert again.version > ok.version


async def test_delete_preconditions(client: RedisClient) -> None:
    store = RowStore(client, StorageSettings())
    with pytest.raises(NotFound):
        await store.delete(TENANT, "tasks", "ghost")
    w = await store.put(TENANT, "tasks", "x", {"a": 1})
    with pytest.raises(VersionConflict) as info:
        await store.delete(TENANT, "tasks", "x", if_match=w.version - 1)
    assert info.value.current == w.version
    d = await store.delete(TENANT, "tasks", "x", if_match=w.version)
    assert d.version > w.version
    assert await store.get(TENANT, "tasks", "x") is None
    with pytest.raises(NotFound):
        await store.delete(TENANT, "tasks", "x")


async def test_versions_grow_across_delete_and_recreate(client: RedisClient) -> None:
    store = RowStore(client, StorageSettings())
    seen: list[int] = []
    for _ in range(3):
        seen.append((await store.put(TENANT, "tasks", "x", {"v": 1})).version)
        seen.append((await store.put(TENANT, "tasks", "x", {"v": 2})).version)
        seen.append((await store.patch(TENANT, "tasks", "x", {"w": 3})).version)
        seen.append((await store.delete(TENANT, "tasks", "x")).version)
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


async def test_versions_grow_across_rows_of_a_partition(client: RedisClient) -> None:
    store = RowStore(client, StorageSettings())
    seen: list[int] = []
    for i in range(30):
        seen.append((await store.put(TENANT, "tasks", f"r{i % 4}", {"i": i})).version)
        if i % 5 == 4:
            seen.append((await store.delete(TENANT, "tasks", f"r{i % 4}")).version)
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


async def test_versions_never_repeat_under_concurrency(
    client: RedisClient, second: RedisClient
) -> None:
    a, b = RowStore(client, StorageSettings()), RowStore(second, StorageSettings())

    async def writer(store: RowStore, name: str) -> list[int]:
        return [(await store.put(TENANT, "tasks", f"{name}{i % 3}", {})).version
                for i in range(50)]

    got_a, got_b = await asyncio.gather(writer(a, "a"), writer(b, "b"))
    assert got_a == sorted(got_a) and got_b == sorted(got_b)
    assert len(set(got_a) | set(got_b)) == 100


async def test_version_counter_takes_redis_time(client: RedisClient) -> None:
    """`lq:ver:{p}` is max(current + 1, Redis TIME in us): a lost counter still grows."""
    store = RowStore(client, StorageSettings())
    first = await store.put(TENANT, "tasks", "x", {})
    seconds, micros = await client.time()
    assert first.version <= int(seconds) * 1_000_000 + int(micros)
    assert first.version > (int(seconds) - 60) * 1_000_000
    await client.delete(store.keys.version(partition_of(TENANT, "tasks")))
    second = await store.put(TENANT, "tasks", "x", {})
    assert second.version > first.version
