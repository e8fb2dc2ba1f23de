"""Membership: heartbeats on Redis's clock, the live set, join/leave notices, values."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from storage import Membership, RedisClient
from tests.storage_helpers import KEYS, PREFIX, open_client, redis_ms


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RedisClient]:
    async with open_client(redis_url) as c:
        yield c


async def test_join_notice_once_then_rejoin_after_expiry(client: RedisClient) -> None:
    members = Membership(client, PREFIX)
    start = await members.notices_tail_id()
    assert start == "0-0"
    now, joined = await members.heartbeat("shard", "s1", 400, b'{"partitions":3}')
    assert joined and abs(now - await redis_ms(client)) < 1000
    assert (await members.heartbeat("shard", "s1", 400, b"{}"))[1] is False
    found, last = await members.notices(start, block_ms=0)
    assert [(n.op, n.kind, n.id) for n in found] == [("join", "shard", "s1")]
    assert last == found[0].entry_id
    assert await members.notices(last, block_ms=0) == ([], last)

    await asyncio.sleep(0.5)  # past the TTL: the next heartbeat is a re-join
    assert (await members.live("shard"))[0] == []
    assert (await members.heartbeat("shard", "s1", 5000, b"{}"))[1] is True
    found, _ = await members.notices(last, block_ms=0)
    assert [(n.op, n.id) for n in found] == [("join", "s1")]


async def test_live_excludes_expired_members_and_values_follow(client: RedisClient) -> None:
    members = Membership(client, PREFIX)
    await members.heartbeat("shard", "short", 400, b"short-counters")
    await members.heartbeat("shard", "long", 5000, b"long-counters")
    ids, now = await members.live("shard")
    assert ids == ["long", "short"] and now > 0
    assert await members.values("shard", ids) == {
        "long": b"long-counters",
        "short": b"short-counters",
    }
    await asyncio.sleep(0.5)
    ids, _ = await members.live("shard")
    assert ids == ["long"]
    assert await members.values("shard", ["long", "short"]) == {"long": b"long-counters"}
    # the expired one stays in the index (pruned only after the prune window)
    assert await client.zscore(KEYS.members(), "short") is not None


async def test_leave_removes_and_notices_every_time(client: RedisClient) -> None:
    members = Membership(client, PREFIX)
    await members.heartbeat("shard", "s1", 5000, b"{}")
    start = await members.notices_tail_id()
    assert await members.leave("shard", "s1") is True
    assert (await members.live("shard"))[0] == []
    assert await client.exists(KEYS.shard("s1")) == 0
    assert await members.leave("shard", "s1") is False  # the second notice after releasing
    found, _ = await members.notices(start, block_ms=0)
    assert [(n.op, n.id) for n in found] == [("leave", "s1"), ("leave", "s1")]
    assert (await members.heartbeat("shard", "s1", 5000, b"{}"))[1] is True


async def test_gateways_have_their_own_index_and_no_notices(client: RedisClient) -> None:
    members = Membership(client, PREFIX)
    start = await members.notices_tail_id()
    assert (await members.heartbeat("gateway", "g1", 5000, b'{"connections":2}'))[1] is True
    assert (await members.live("gateway"))[0] == ["g1"]
    assert (await members.live("shard"))[0] == []
    assert await members.values("gateway", ["g1"]) == {"g1": b'{"connections":2}'}
    assert await client.exists(KEYS.gateway("g1")) == 1
    assert await members.leave("gateway", "g1") is True
    assert (await members.live("gateway"))[0] == []
    assert await members.notices(start, block_ms=0) == ([], start)


async def test_gone_members_then_pruned(client: RedisClient) -> None:
    members = Membership(client, PREFIX, prune_after_ms=300)
    await members.heartbeat("gateway", "gone", 50, b"{}")
    await members.heartbeat("gateway", "alive", 5000, b"{}")
    assert (await members.gone("gateway", 10_000))[0] == []
    await asyncio.sleep(0.2)
    assert (await members.gone("gateway", 100))[0] == ["gone"]
    assert (await members.gone("gateway", 10_000))[0] == []
    await members.leave("gateway", "gone")  # cleaned up: forget it
    assert (await members.gone("gateway", 100))[0] == []

    await members.heartbeat("shard", "gone", 50, b"{}")
    await asyncio.sleep(0.4)
    await members.heartbeat("shard", "alive", 5000, b"{}")
    assert await client.zscore(KEYS.members(), "gone") is None
    assert await client.zscore(KEYS.members(), "alive") is not None


async def test_blocking_notices_wake_on_a_join(redis_url: str) -> None:
    async with open_client(redis_url) as client, open_client(redis_url) as blocking:
        members, waiter = Membership(client, PREFIX), Membership(blocking, PREFIX)
        start = await members.notices_tail_id()
        task = asyncio.create_task(waiter.notices(start, block_ms=3000))
        await asyncio.sleep(0.1)
        sent = time.monotonic()
        await members.heartbeat("shard", "s2", 5000, b"{}")
        found, last = await asyncio.wait_for(task, 2)
        assert time.monotonic() - sent < 0.5
        assert [(n.op, n.id) for n in found] == [("join", "s2")] and last != start
