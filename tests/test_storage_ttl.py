"""TTL bookkeeping: `lq:ttl:{p}`, expiry on Redis's clock, hidden expired rows, `expire()`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cluster.errors import NotFound, VersionConflict
from cluster.partition import partition_of
from cluster.query import CursorSigner, parse_query
from cluster.settings import StorageSettings
from storage import ChangeLog, RedisClient, RowStore, run_query
from storage._format import ttl_member
from tests.storage_helpers import KEYS, TENANT, log_entries, open_client, redis_ms, rows_key

P = partition_of(TENANT, "tasks")
MEMBER = ttl_member(TENANT, "tasks", "x")
SIGNER = CursorSigner(b"k" * 32)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RedisClient]:
    async with open_client(redis_url) as c:
        yield c


@pytest.fixture
def store(client: RedisClient) -> RowStore:
    return RowStore(client, StorageSettings())


async def ttl_score(client: RedisClient) -> float | None:
    score: float | None = await client.zscore(KEYS.ttl(P), MEMBER)
    return score


async def expire_soon(store: RowStore, row_id: str = "x", values: object = None) -> int:
    """Put a row that expires in 30 ms and wait until it has; returns its version."""
    w = await store.put(TENANT, "tasks", row_id, values or {"a": 1}, ttl_ms=30)
    await asyncio.sleep(0.06)
    return w.version


async def test_put_with_ttl_scores_redis_time(client: RedisClient, store: RowStore) -> None:
    before = await redis_ms(client)
    await store.put(TENANT, "tasks", "x", {"a": 1}, ttl_ms=60_000)
    after = await redis_ms(client)
    score = await ttl_score(client)
    assert score is not None and before + 60_000 <= score <= after + 60_000
    row = await store.get(TENANT, "tasks", "x")
    assert row is not None and row.expires_at == int(score)


async def test_put_without_ttl_and_delete_clear_the_member(
    client: RedisClient, store: RowStore
) -> None:
    await store.put(TENANT, "tasks", "x", {"a": 1}, ttl_ms=60_000)
    await store.put(TENANT, "tasks", "x", {"a": 2})
    assert await ttl_score(client) is None
    row = await store.get(TENANT, "tasks", "x")
    assert row is not None and row.expires_at == 0
    await store.put(TENANT, "tasks", "x", {"a": 3}, ttl_ms=60_000)
    assert await ttl_score(client) is not None
    await store.delete(TENANT, "tasks", "x")
    assert await ttl_score(client) is None


async def test_patch_keeps_the_expiry(client: RedisClient, store: RowStore) -> None:
    await store.put(TENANT, "tasks", "x", {"a": 1}, ttl_ms=60_000)
    score = await ttl_score(client)
    await store.patch(TENANT, "tasks", "x", {"b": 2})
    assert await ttl_score(client) == score
    row = await store.get(TENANT, "tasks", "x")
    assert row is not None and row.values == {"a": 1, "b": 2}
    assert row.expires_at == score
    # an explicit ttl on a patch replaces the expiry
    await store.patch(TENANT, "tasks", "x", {"c": 3}, ttl_ms=120_000)
    new_score = await ttl_score(client)
    assert score is not None and new_score is not None and new_score > score


async def test_expired_row_hidden_before_deletion(client: RedisClient, store: RowStore) -> None:
    await store.put(TENANT, "tasks", "keep", {"a": 1})
    await store.put(TENANT, "tasks", "later", {"a": 1}, ttl_ms=60_000)
    await expire_soon(store)
    assert await client.hexists(rows_key(TENANT, "tasks"), "x")  # still stored
    assert await store.get(TENANT, "tasks", "x") is None
    query = parse_query({"entity": "tasks", "limit": 10}, signer=SIGNER)
    page = await run_query(client, KEYS, TENANT, query, SIGNER)
    assert [r.id for r in page.rows] == ["keep", "later"]
    loaded = await ChangeLog(client, StorageSettings()).load_collection(TENANT, "tasks")
    assert sorted(r.id for r in loaded.rows) == ["keep", "later"]
    # writes treat an expired row as absent
    with pytest.raises(NotFound):
        await store.patch(TENANT, "tasks", "x", {"b": 1})
    with pytest.raises(NotFound):
        await store.delete(TENANT, "tasks", "x")
    created = await store.put(TENANT, "tasks", "x", {"a": 2}, create_only=True)
    row = await store.get(TENANT, "tasks", "x")
    assert row is not None and row.version == created.version and row.expires_at == 0


async def test_expire_deletes_an_expired_row_and_logs_it(
    client: RedisClient, store: RowStore
) -> None:
    version = await expire_soon(store)
    result = await store.expire(TENANT, "tasks", "x", version)
    assert result is not None and result.version > version
    assert not await client.hexists(rows_key(TENANT, "tasks"), "x")
    assert await ttl_score(client) is None
    sid, last = (await log_entries(client, P))[-1]
    assert sid == result.stream_id
    assert last["o"] == b"d" and last["i"] == b"x" and int(last["v"]) == result.version
    assert "d" not in last
    # nothing left to expire
    assert await store.expire(TENANT, "tasks", "x") is None


async def test_expire_without_version(store: RowStore) -> None:
    await expire_soon(store)
    assert await store.expire(TENANT, "tasks", "x") is not None


async def test_expire_spares_a_live_row(client: RedisClient, store: RowStore) -> None:
    w = await store.put(TENANT, "tasks", "x", {"a": 1}, ttl_ms=60_000)
    xlen = await client.xlen(KEYS.events(P))
    assert await store.expire(TENANT, "tasks", "x", w.version) is None
    assert await store.expire(TENANT, "tasks", "x") is None
    plain = await store.put(TENANT, "tasks", "y", {"a": 1})
    assert await store.expire(TENANT, "tasks", "y", plain.version) is None
    assert await client.xlen(KEYS.events(P)) == xlen + 1  # only the put of y
    row = await store.get(TENANT, "tasks", "x")
    assert row is not None and row.version == w.version


async def test_expire_spares_a_row_rewritten_meanwhile(
    client: RedisClient, store: RowStore
) -> None:
    version = await expire_soon(store)
    rewritten = await store.put(TENANT, "tasks", "x", {"a": 2})
    assert await store.expire(TENANT, "tasks", "x", version) is None
    row = await store.get(TENANT, "tasks", "x")
    assert row is not None and row.version == rewritten.version


async def test_expire_at_another_version_is_refused(
    client: RedisClient, store: RowStore
) -> None:
    version = await expire_soon(store)
    xlen = await client.xlen(KEYS.events(P))
    assert await store.expire(TENANT, "tasks", "x", version - 1) is None
    assert await client.hexists(rows_key(TENANT, "tasks"), "x")
    assert await client.xlen(KEYS.events(P)) == xlen
    assert await store.expire(TENANT, "tasks", "x", version) is not None


async def test_expire_cleans_a_stale_ttl_member(client: RedisClient, store: RowStore) -> None:
    """A member whose row is gone (left behind by anything) is removed by expire."""
    await client.zadd(KEYS.ttl(P), {MEMBER: 1})
    assert await store.expire(TENANT, "tasks", "x") is None
    assert await ttl_score(client) is None


async def test_if_match_on_an_expired_row_fails(store: RowStore) -> None:
    version = await expire_soon(store)
    with pytest.raises(VersionConflict) as info:
        await store.put(TENANT, "tasks", "x", {"a": 2}, if_match=version)
    assert info.value.current is None
