"""The durable subscription registry: `lq:subs:{p}` and the gateway index `lq:gwsubs:<gw>`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from cluster.messages import Registration
from storage import RedisClient, Registry
from tests.storage_helpers import KEYS, PREFIX, TENANT, open_client


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RedisClient]:
    async with open_client(redis_url) as c:
        yield c


def reg(rid: str, gateway: str = "gw1", limit: int = 10) -> Registration:
    query: dict[str, Any] = {"entity": "tasks", "where": {"s": "open"}, "sort": ["-n"],
                             "limit": limit, "after": None, "mode": "window"}
    return Registration(rid=rid, tenant=TENANT, gateway=gateway, query=query)


async def test_round_trips(client: RedisClient) -> None:
    registry = Registry(client, PREFIX)
    a, b, c = reg("gw1.1"), reg("gw1.2"), reg("gw2.1", gateway="gw2")
    await registry.put(7, a)
    await registry.put(7, b)
    await registry.put(200, c)
    assert await registry.get(7, "gw1.1") == a
    assert await registry.get(7, "gw2.1") is None
    assert await registry.get(200, "gw2.1") == c
    assert await registry.by_partition(7) == {"gw1.1": a, "gw1.2": b}
    assert await registry.by_partition(200) == {"gw2.1": c}
    assert await registry.by_partition(8) == {}
    assert sorted(await registry.by_gateway("gw1")) == [(7, "gw1.1"), (7, "gw1.2")]
    assert await registry.by_gateway("gw2") == [(200, "gw2.1")]
    assert await registry.by_gateway("nobody") == []

    # a reanchor replaces the registration in place
    moved = reg("gw1.1", limit=25)
    await registry.put(7, moved)
    assert await registry.get(7, "gw1.1") == moved
    assert sorted(await registry.by_gateway("gw1")) == [(7, "gw1.1"), (7, "gw1.2")]

    await registry.delete(7, "gw1.2", "gw1")
    assert await registry.get(7, "gw1.2") is None
    assert await registry.by_gateway("gw1") == [(7, "gw1.1")]

    assert await registry.drop_gateway("gw1") == 1
    assert await registry.by_partition(7) == {}
    assert await registry.by_gateway("gw1") == []
    assert not await client.exists(KEYS.gwsubs("gw1"))
    assert await registry.by_partition(200) == {"gw2.1": c}  # other gateways untouched
    assert await registry.drop_gateway("gw1") == 0


async def test_index_entry_and_registration_exist_together(client: RedisClient) -> None:
    registry = Registry(client, PREFIX)
    await registry.put(42, reg("gw1.9"))
    assert await client.sismember(KEYS.gwsubs("gw1"), "42:gw1.9")
    assert await client.hexists(KEYS.subs(42), "gw1.9")
    await registry.delete(42, "gw1.9", "gw1")
    assert not await client.sismember(KEYS.gwsubs("gw1"), "42:gw1.9")
    assert not await client.hexists(KEYS.subs(42), "gw1.9")


async def test_index_written_before_the_registration(
    client: RedisClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A put that dies between its two writes leaves an index entry, never an orphan
    registration; a delete that dies between its two writes leaves an index entry too."""
    registry = Registry(client, PREFIX)

    async def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("crash")

    with monkeypatch.context() as m:
        m.setattr(client, "hset", boom)
        with pytest.raises(RuntimeError):
            await registry.put(3, reg("gw1.1"))
    assert await client.sismember(KEYS.gwsubs("gw1"), "3:gw1.1")
    assert not await client.hexists(KEYS.subs(3), "gw1.1")

    await registry.put(3, reg("gw1.1"))
    with monkeypatch.context() as m:
        m.setattr(client, "srem", boom)
        with pytest.raises(RuntimeError):
            await registry.delete(3, "gw1.1", "gw1")
    assert await client.sismember(KEYS.gwsubs("gw1"), "3:gw1.1")
    assert not await client.hexists(KEYS.subs(3), "gw1.1")
    # clean-up from the index copes with the entry whose registration is gone
    assert await registry.drop_gateway("gw1") == 1
    assert not await client.exists(KEYS.gwsubs("gw1"))


async def test_many_registrations_scan_fully(client: RedisClient) -> None:
    registry = Registry(client, PREFIX)
    for i in range(600):
        await registry.put(i % 256, reg(f"gw1.{i}"))
    assert len(await registry.by_gateway("gw1")) == 600
    assert sum([len(await registry.by_partition(p)) for p in range(256)]) == 600
    assert await registry.drop_gateway("gw1") == 600
    assert all([await registry.by_partition(p) == {} for p in (0, 100, 255)])


async def test_prefix(client: RedisClient) -> None:
    registry = Registry(client, prefix="other")
    await registry.put(1, reg("gw1.1"))
    assert await client.hexists("other:subs:{1}", "gw1.1")
    assert await Registry(client, PREFIX).get(1, "gw1.1") is None
