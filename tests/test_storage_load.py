"""A collection load racing concurrent writes ends equal to the stored rows."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cluster.errors import NotFound
from cluster.partition import partition_of
from cluster.settings import StorageSettings
from storage import ChangeLog, RedisClient, RowStore
from tests.storage_helpers import TENANT, apply_changes, open_client, rows_state, stored_rows


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RedisClient]:
    async with open_client(redis_url) as c:
        yield c


@pytest.fixture
async def writer_client(redis_url: str) -> AsyncIterator[RedisClient]:
    async with open_client(redis_url) as c:
        yield c


async def random_writes(store: RowStore, seed: int, n: int, started: asyncio.Event) -> None:
    rng = random.Random(seed)
    for i in range(n):
        row_id = f"r{rng.randrange(60)}"
        if rng.random() < 0.3:
            try:
                await store.delete(TENANT, "tasks", row_id)
            except NotFound:
                pass
        else:
            await store.put(TENANT, "tasks", row_id, {"i": i, "pad": "x" * rng.randrange(50)})
        # other collections of the same partition share the log
        if rng.random() < 0.1:
            await store.put(TENANT, "noise", row_id, {"i": i})
        if i == 5:
            started.set()


@pytest.mark.parametrize("seed", [1, 2])
async def test_load_racing_writes(
    client: RedisClient, writer_client: RedisClient, seed: int
) -> None:
    settings = StorageSettings()
    store = RowStore(client, settings)
    for i in range(40):
        await store.put(TENANT, "tasks", f"r{i}", {"i": -1})
    log = ChangeLog(client, settings)
    writer = RowStore(writer_client, settings)
    started = asyncio.Event()
    task = asyncio.create_task(random_writes(writer, seed, 300, started))
    await started.wait()
    loaded = await log.load_collection(TENANT, "tasks", scan_count=3)
    assert not task.done()  # the load really raced the writer
    assert loaded.changes
    await task
    assert all(c.tenant == TENANT and c.entity == "tasks" for c in loaded.changes)

    state = rows_state(loaded.rows)
    deleted: dict[str, int] = {}
    apply_changes(state, deleted, loaded.changes)
    tail = await log.read_to_end(partition_of(TENANT, "tasks"), loaded.position)
    apply_changes(state, deleted, [c for c in tail.changes if c.entity == "tasks"])

    expected = await stored_rows(client, TENANT, "tasks")
    assert state == expected
    fresh = await log.load_collection(TENANT, "tasks")
    assert rows_state(fresh.rows) == expected
    assert fresh.changes == []


async def test_load_ignores_other_collections_and_hides_expired(client: RedisClient) -> None:
    settings = StorageSettings()
    store = RowStore(client, settings)
    await store.put(TENANT, "tasks", "a", {"n": 1})
    await store.put(TENANT, "tasks", "old", {"n": 1}, ttl_ms=20)
    await store.put(TENANT, "other", "b", {"n": 1})
    await store.put("someone", "tasks", "c", {"n": 1})
    await asyncio.sleep(0.05)
    loaded = await ChangeLog(client, settings).load_collection(TENANT, "tasks")
    got: dict[str, Any] = rows_state(loaded.rows)
    assert list(got) == ["a"]
