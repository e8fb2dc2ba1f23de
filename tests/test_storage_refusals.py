"""Input checks (ids, entities, rows, sizes) and refused writes that change nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest

from cluster.errors import InvalidRequest, InvalidRow, NotFound, TooLarge, VersionConflict
from cluster.settings import StorageSettings
from storage import RedisClient, RowStore, check_id, check_tenant
from tests.storage_helpers import TENANT, open_client, snapshot

BAD_IDS: list[Any] = ["", "x" * 257, "a\x00b", "a\nb", "\x7f", "tab\there", "\x9f", 7, None, ["x"]]
GOOD_IDS = ["x" * 256, "a", "ünïcødé ✓", "with space", "a:b{c}", "\U0001f600"]
BAD_ENTITIES: list[Any] = ["", "1abc", "a-b", "a:b", "a b", "x" * 65, "é", None, 3, ["a"], {}]
BAD_ROWS: list[Any] = [[1, 2], "text", None, 3, True]
MAX = 200


@pytest.mark.parametrize("row_id", BAD_IDS, ids=repr)
def test_check_id_refuses(row_id: Any) -> None:
    with pytest.raises(InvalidRequest):
        check_id(row_id)


@pytest.mark.parametrize("row_id", GOOD_IDS, ids=repr)
def test_check_id_accepts(row_id: str) -> None:
    assert check_id(row_id) == row_id


def test_check_tenant() -> None:
    assert check_tenant("t" * 128) == "t" * 128
    for bad in ("", "t" * 129, "a\x00", None):
        with pytest.raises(InvalidRequest):
            check_tenant(bad)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RedisClient]:
    async with open_client(redis_url) as c:
        yield c


@pytest.fixture
async def store(client: RedisClient) -> RowStore:
    s = RowStore(client, StorageSettings(max_row_bytes=MAX))
    await s.put(TENANT, "tasks", "x", {"a": 1}, ttl_ms=600_000)
    return s


def row_of_size(size: int) -> dict[str, str]:
    row = {"p": "x" * (size - len(orjson.dumps({"p": ""})))}
    assert len(orjson.dumps(row)) == size
    return row


async def test_good_ids_round_trip(store: RowStore) -> None:
    for i, row_id in enumerate(GOOD_IDS):
        await store.put(TENANT, "tasks", row_id, {"n": i})
        row = await store.get(TENANT, "tasks", row_id)
        assert row is not None and row.values == {"n": i}


async def test_row_size_limit(client: RedisClient, store: RowStore) -> None:
    await store.put(TENANT, "tasks", "edge", row_of_size(MAX))
    before = await snapshot(client, TENANT, "tasks")
    with pytest.raises(TooLarge):
        await store.put(TENANT, "tasks", "big", row_of_size(MAX + 1))
    with pytest.raises(TooLarge):
        await store.put(TENANT, "tasks", "x", row_of_size(10 * MAX))
    assert await snapshot(client, TENANT, "tasks") == before


async def test_refused_writes_change_nothing(client: RedisClient, store: RowStore) -> None:
    current = await store.get(TENANT, "tasks", "x")
    assert current is not None
    v = current.version
    before = await snapshot(client, TENANT, "tasks")
    assert before["xlen"] == 1 and before["ttl"]
    refusals: list[tuple[type[Exception], Callable[[], Awaitable[object]]]] = [
        (VersionConflict, lambda: store.put(TENANT, "tasks", "x", {"a": 2}, if_match=v + 1)),
        (VersionConflict, lambda: store.put(TENANT, "tasks", "x", {"a": 2}, create_only=True)),
        (VersionConflict, lambda: store.put(TENANT, "tasks", "y", {"a": 2}, if_match=1)),
        (VersionConflict, lambda: store.delete(TENANT, "tasks", "x", if_match=v - 1)),
        (VersionConflict, lambda: store.patch(TENANT, "tasks", "x", {"b": 1}, if_match=1)),
        (NotFound, lambda: store.delete(TENANT, "tasks", "y")),
        (NotFound, lambda: store.patch(TENANT, "tasks", "y", {"b": 1})),
        (TooLarge, lambda: store.put(TENANT, "tasks", "x", row_of_size(MAX + 1))),
        (InvalidRow, lambda: store.put(TENANT, "tasks", "x", [1])),
        (InvalidRow, lambda: store.put(TENANT, "tasks", "x", {"a": {1, 2}})),
        (InvalidRow, lambda: store.put(TENANT, "tasks", "x", {1: "non-string key"})),
        (InvalidRequest, lambda: store.put(TENANT, "tasks", "x\n", {"a": 2})),
        (InvalidRequest, lambda: store.put(TENANT, "tasks", "", {"a": 2})),
        (InvalidRequest, lambda: store.put(TENANT, "bad-entity", "x", {"a": 2})),
        (InvalidRequest, lambda: store.put("", "tasks", "x", {"a": 2})),
        (InvalidRequest, lambda: store.delete(TENANT, "tasks", "x" * 257)),
    ]
    for error, call in refusals:
        with pytest.raises(error):
            await call()
        assert await snapshot(client, TENANT, "tasks") == before, error


@pytest.mark.parametrize("row_id", BAD_IDS, ids=repr)
async def test_bad_ids_everywhere(store: RowStore, row_id: Any) -> None:
    with pytest.raises(InvalidRequest):
        await store.put(TENANT, "tasks", row_id, {"a": 1})
    with pytest.raises(InvalidRequest):
        await store.get(TENANT, "tasks", row_id)
    with pytest.raises(InvalidRequest):
        await store.delete(TENANT, "tasks", row_id)
    with pytest.raises(InvalidRequest):
        await store.patch(TENANT, "tasks", row_id, {"a": 1})
    with pytest.raises(InvalidRequest):
        await store.expire(TENANT, "tasks", row_id)


@pytest.mark.parametrize("entity", BAD_ENTITIES, ids=repr)
async def test_bad_entities(store: RowStore, entity: Any) -> None:
    with pytest.raises(InvalidRequest):
        await store.put(TENANT, entity, "x", {"a": 1})
    with pytest.raises(InvalidRequest):
        await store.get(TENANT, entity, "x")
    with pytest.raises(InvalidRequest):
        await store.delete(TENANT, entity, "x")


@pytest.mark.parametrize("tenant", ["", "t" * 129, "a\nb", None, ["t"]], ids=repr)
async def test_bad_tenants(store: RowStore, tenant: Any) -> None:
    with pytest.raises(InvalidRequest):
        await store.put(tenant, "tasks", "x", {"a": 1})
    with pytest.raises(InvalidRequest):
        await store.get(tenant, "tasks", "x")


@pytest.mark.parametrize("row", BAD_ROWS, ids=repr)
async def test_non_object_rows(store: RowStore, row: Any) -> None:
    with pytest.raises(InvalidRow):
        await store.put(TENANT, "tasks", "x", row)
