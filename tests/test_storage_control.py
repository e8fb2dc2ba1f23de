"""Control streams: delivery through a consumer group, pending re-reads, safe trimming."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from storage import Control, RedisClient
from storage.control import GROUP
from tests.storage_helpers import KEYS, PREFIX, open_client

SHARD = "shard-0"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RedisClient]:
    async with open_client(redis_url) as c:
        yield c


def summary(messages: list[Any]) -> list[tuple[str, int, str, str, int]]:
    return [(m.op, m.p, m.rid, m.gw, m.hops) for m in messages]


async def stream_ids(client: RedisClient) -> list[str]:
    entries: Any = await client.xrange(KEYS.ctrl(SHARD), "-", "+")
    return [sid.decode() for sid, _ in entries]


async def pending_count(client: RedisClient) -> int:
    info: Any = await client.xpending(KEYS.ctrl(SHARD), GROUP)
    return int(info["pending"])


async def test_messages_sent_before_the_shard_reads_are_delivered(client: RedisClient) -> None:
    control = Control(client, PREFIX)
    ids = [
        await control.send(SHARD, "subscribe", 3, "g1.1", "g1"),
        await control.send(SHARD, "reanchor", 3, "g1.1", "g1"),
        await control.send(SHARD, "unsubscribe", 200, "g1.2", "g1", hops=1),
    ]
    assert await control.ensure_group(SHARD) is True  # at 0: earlier messages included
    assert await control.ensure_group(SHARD) is False
    got = await control.read(SHARD, SHARD, pending=False)
    assert [m.entry_id for m in got] == ids
    assert summary(got) == [
        ("subscribe", 3, "g1.1", "g1", 0),
        ("reanchor", 3, "g1.1", "g1", 0),
        ("unsubscribe", 200, "g1.2", "g1", 1),
    ]
    assert await control.read(SHARD, SHARD, pending=False) == []
    with pytest.raises(ValueError):
        await control.send(SHARD, "drop-everything", 1, "g1.3", "g1")


async def test_pending_entries_are_read_again_after_a_restart(redis_url: str) -> None:
    async with open_client(redis_url) as first:
        control = Control(first, PREFIX)
        await control.ensure_group(SHARD)
        for n in range(3):
            await control.send(SHARD, "subscribe", n, f"g1.{n}", "g1")
        got = await control.read(SHARD, SHARD, pending=False, count=2)
        assert [m.p for m in got] == [0, 1]
        # "crash" here: nothing acknowledged
    async with open_client(redis_url) as second:
        control = Control(second, PREFIX)
        await control.ensure_group(SHARD)
        again = await control.read(SHARD, SHARD, pending=True)
        assert [m.p for m in again] == [0, 1]
        assert [m.entry_id for m in again] == [m.entry_id for m in got]
        paged = await control.read(SHARD, SHARD, pending=True, after=again[0].entry_id)
        assert [m.p for m in paged] == [1]
        assert await control.ack(SHARD, [m.entry_id for m in again]) == 2
        assert await control.read(SHARD, SHARD, pending=True) == []
        assert [m.p for m in await control.read(SHARD, SHARD, pending=False)] == [2]


async def test_trim_keeps_every_unacknowledged_entry(client: RedisClient) -> None:
    control = Control(client, PREFIX)
    await control.ensure_group(SHARD)
    ids = [await control.send(SHARD, "resync", n, f"g1.{n}", "g1") for n in range(5)]
    got = await control.read(SHARD, SHARD, pending=False)
    assert [m.entry_id for m in got] == ids
    await control.ack(SHARD, [ids[0], ids[1], ids[3]])
    assert await control.trim(SHARD) == 2  # below the oldest pending (ids[2])
    assert await stream_ids(client) == ids[2:]
    assert await control.trim(SHARD) == 0
    pending = await control.read(SHARD, SHARD, pending=True)
    assert [m.entry_id for m in pending] == [ids[2], ids[4]]

    await control.ack(SHARD, [ids[2], ids[4]])
    late = await control.send(SHARD, "resync", 9, "g1.9", "g1")  # not delivered yet
    assert await control.trim(SHARD) == 3  # everything delivered, nothing else
    assert await stream_ids(client) == [late]
    assert [m.entry_id for m in await control.read(SHARD, SHARD, pending=False)] == [late]
    assert await control.trim("no-such-shard") == 0


async def test_malformed_and_deleted_entries_are_acknowledged(client: RedisClient) -> None:
    control = Control(client, PREFIX)
    await control.ensure_group(SHARD)
    key = KEYS.ctrl(SHARD)
    await client.xadd(key, {"op": "explode", "p": 1, "rid": "g1.1", "gw": "g1"})
    await client.xadd(key, {"op": "subscribe", "rid": "g1.1", "gw": "g1"})  # no p
    await client.xadd(key, {"op": "subscribe", "p": "x", "rid": "g1.1", "gw": "g1"})
    good = await control.send(SHARD, "subscribe", 4, "g1.4", "g1")
    got = await control.read(SHARD, SHARD, pending=False)
    assert [m.entry_id for m in got] == [good]
    assert await pending_count(client) == 1
    await client.xdel(key, good)  # pending, then gone: reads back without fields
    assert await control.read(SHARD, SHARD, pending=True) == []
    assert await pending_count(client) == 0


async def test_a_missing_group_is_recreated(client: RedisClient) -> None:
    control = Control(client, PREFIX)
    await control.ensure_group(SHARD)
    await client.delete(KEYS.ctrl(SHARD))  # a Redis that lost its data
    assert await control.read(SHARD, SHARD, pending=False) == []
    sid = await control.send(SHARD, "subscribe", 1, "g1.1", "g1")
    assert [m.entry_id for m in await control.read(SHARD, SHARD, pending=False)] == [sid]


async def test_a_blocking_read_wakes_on_send(redis_url: str) -> None:
    async with open_client(redis_url) as client, open_client(redis_url) as blocking:
        control = Control(client, PREFIX)
        await control.ensure_group(SHARD)
        task = asyncio.create_task(
            Control(blocking, PREFIX).read(SHARD, SHARD, pending=False, block_ms=3000)
        )
        await asyncio.sleep(0.1)
        sent = time.monotonic()
        sid = await control.send(SHARD, "subscribe", 5, "g1.5", "g1")
        got = await asyncio.wait_for(task, 2)
        assert time.monotonic() - sent < 0.5
        assert [m.entry_id for m in got] == [sid]
