"""JSON merge patch (RFC 7396): the pure function and `RowStore.patch`."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cluster.errors import InvalidRow, NotFound, TooLarge, VersionConflict
from cluster.settings import StorageSettings
from storage import RedisClient, RowStore, merge_patch
from storage.merge import _merge
from tests.storage_helpers import TENANT, open_client, snapshot

# RFC 7396 appendix A: (target, patch, result)
RFC_EXAMPLES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC_EXAMPLES)
def test_rfc7396_appendix(target: Any, patch: Any, result: Any) -> None:
    before_target, before_patch = copy.deepcopy(target), copy.deepcopy(patch)
    assert _merge(target, patch) == result
    if isinstance(target, dict) and isinstance(patch, dict):
        assert merge_patch(target, patch) == result
    assert target == before_target and patch == before_patch  # inputs untouched


@pytest.mark.parametrize("patch", [None, "bar", ["c"], 1, True])
def test_merge_patch_of_a_row_is_an_object(patch: Any) -> None:
    with pytest.raises(InvalidRow):
        merge_patch({"a": 1}, patch)


def test_merge_patch_does_not_share_nested_objects() -> None:
    target = {"a": {"b": 1}}
    merged = merge_patch(target, {"a": {"c": 2}})
    merged["a"]["d"] = 3
    assert target == {"a": {"b": 1}}


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RedisClient]:
    async with open_client(redis_url) as c:
        yield c


@pytest.fixture
def store(client: RedisClient) -> RowStore:
    return RowStore(client, StorageSettings())


async def test_patch_semantics(store: RowStore) -> None:
    w = await store.put(TENANT, "tasks", "x", {
        "keep": 1, "drop": 2, "obj": {"a": 1, "b": {"c": 1}}, "arr": [1, 2, 3],
    })
    p = await store.patch(TENANT, "tasks", "x", {
        "drop": None, "obj": {"b": {"d": 2}, "a": None, "n": None}, "arr": [9], "new": {"x": None},
    })
    assert p.version > w.version
    row = await store.get(TENANT, "tasks", "x")
    assert row is not None and row.version == p.version
    assert row.values == {"keep": 1, "obj": {"b": {"c": 1, "d": 2}}, "arr": [9], "new": {}}


async def test_patch_of_absent_row(client: RedisClient, store: RowStore) -> None:
    before = await snapshot(client, TENANT, "tasks")
    with pytest.raises(NotFound):
        await store.patch(TENANT, "tasks", "ghost", {"a": 1})
    with pytest.raises(VersionConflict) as info:  # If-Match on an absent row: 412, null
        await store.patch(TENANT, "tasks", "ghost", {"a": 1}, if_match=3)
    assert info.value.current is None
    await store.put(TENANT, "tasks", "gone", {"a": 1})
    await store.delete(TENANT, "tasks", "gone")
    with pytest.raises(NotFound):
        await store.patch(TENANT, "tasks", "gone", {"a": 1})
    assert (await snapshot(client, TENANT, "tasks"))["rows"] == before["rows"]


async def test_patch_if_match(client: RedisClient, store: RowStore) -> None:
    w = await store.put(TENANT, "tasks", "x", {"a": 1})
    before = await snapshot(client, TENANT, "tasks")
    with pytest.raises(VersionConflict) as info:
        await store.patch(TENANT, "tasks", "x", {"b": 1}, if_match=w.version - 1)
    assert info.value.current == w.version
    assert await snapshot(client, TENANT, "tasks") == before
    ok = await store.patch(TENANT, "tasks", "x", {"b": 1}, if_match=w.version)
    assert ok.version > w.version


async def test_patch_refusals_change_nothing(client: RedisClient) -> None:
    store = RowStore(client, StorageSettings(max_row_bytes=100))
    await store.put(TENANT, "tasks", "x", {"a": 1})
    before = await snapshot(client, TENANT, "tasks")
    with pytest.raises(InvalidRow):
        await store.patch(TENANT, "tasks", "x", ["not", "an", "object"])
    with pytest.raises(TooLarge):
        await store.patch(TENANT, "tasks", "x", {"big": "x" * 200})
    assert await snapshot(client, TENANT, "tasks") == before


async def test_concurrent_patches_all_apply(redis_url: str, client: RedisClient) -> None:
    """Patches that lose a race are retried, so every key lands."""
    store = RowStore(client, StorageSettings())
    await store.put(TENANT, "tasks", "x", {"base": 0})
    async with open_client(redis_url) as other:
        store2 = RowStore(other, StorageSettings())
        await asyncio.gather(*(
            (store if i % 2 else store2).patch(TENANT, "tasks", "x", {f"k{i}": i})
            for i in range(4)
        ))
    row = await store.get(TENANT, "tasks", "x")
    assert row is not None
    assert row.values == {"base": 0, "k0": 0, "k1": 1, "k2": 2, "k3": 3}
