"""Delta streams: NOMKSTREAM publishing, frame round trip, vanished and trimmed streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from storage import DeltaFrame, Deltas, DeltaStreamGone, DeltaTrimmed, RedisClient
from tests.storage_helpers import KEYS, PREFIX, open_client

VIEW_A = orjson.dumps(
    [{"type": "delta", "op": "enter", "id": "r1", "version": 5, "row": {"n": 1}, "to": 0}]
)
VIEW_B = orjson.dumps([{"type": "delta", "op": "leave", "id": "r2", "version": 6, "from": 3}])


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RedisClient]:
    async with open_client(redis_url) as c:
        yield c


def frame(n: int, groups: tuple[tuple[tuple[str, ...], bytes], ...] = ()) -> DeltaFrame:
    return DeltaFrame(
        shard="shard-0",
        inc="i1",
        n=n,
        p=17,
        epoch=1_700_000_000_000_001,
        groups=groups or ((("g1.1",), VIEW_A),),
    )


async def test_publishing_to_a_missing_stream_creates_nothing(client: RedisClient) -> None:
    deltas = Deltas(client, PREFIX)
    assert await deltas.publish([("g1", frame(1))]) == [False]
    assert await client.exists(KEYS.delta("g1")) == 0
    assert await deltas.publish([]) == []


async def test_frames_round_trip_with_shared_message_bytes(client: RedisClient) -> None:
    deltas = Deltas(client, PREFIX)
    start1 = await deltas.create("g1", 60)
    start2 = await deltas.create("g2", 60)
    assert 0 < await client.ttl(KEYS.delta("g1")) <= 60
    # one view's bytes shared by frames to two gateways; a frame with two views
    f1 = frame(1, ((("g1.1", "g1.7"), VIEW_A), (("g1.2",), VIEW_B)))
    f2 = frame(1, ((("g2.3",), VIEW_A),))
    f3 = frame(2)
    added = await deltas.publish([("g1", f1), ("g2", f2), ("gone", f3), ("g1", f3)])
    assert added == [True, True, False, True]

    got1 = await deltas.read("g1", start1, block_ms=0)
    assert got1.frames == [f1, f3]
    assert got1.frames[0].groups[0][1] == VIEW_A and got1.frames[0].groups[1][1] == VIEW_B
    got2 = await deltas.read("g2", start2, block_ms=0)
    assert got2.frames == [f2] and got2.frames[0].groups[0][1] == VIEW_A
    # positions continue: nothing new after the last one; paging with a small count
    assert (await deltas.read("g1", got1.position, block_ms=0)).frames == []
    first = await deltas.read("g1", start1, count=1, block_ms=0)
    assert first.frames == [f1]
    assert (await deltas.read("g1", first.position, count=1, block_ms=0)).frames == [f3]
    # create again keeps the stream and returns its end
    assert await deltas.create("g1", 60) == got1.position
    assert await client.xlen(KEYS.delta("g1")) == 3


async def test_a_blocking_read_wakes_on_publish(redis_url: str) -> None:
    async with open_client(redis_url) as client, open_client(redis_url) as blocking:
        deltas = Deltas(client, PREFIX)
        start = await deltas.create("g1", 60)
        task = asyncio.create_task(Deltas(blocking, PREFIX).read("g1", start, block_ms=3000))
        await asyncio.sleep(0.1)
        assert await deltas.publish([("g1", frame(1))]) == [True]
        got = await asyncio.wait_for(task, 1)
        assert got.frames == [frame(1)]


async def test_a_vanished_stream_is_detected(client: RedisClient) -> None:
    deltas = Deltas(client, PREFIX)
    start = await deltas.create("g1", 60)
    assert await deltas.refresh("g1", 120) is True
    assert await client.ttl(KEYS.delta("g1")) > 60
    assert (await deltas.read("g1", start, block_ms=0)).frames == []
    await client.delete(KEYS.delta("g1"))  # expired, or a Redis restart without data
    with pytest.raises(DeltaStreamGone):
        await deltas.read("g1", start, block_ms=50)
    assert await deltas.refresh("g1", 60) is False
    assert await deltas.publish([("g1", frame(1))]) == [False]
    restart = await deltas.create("g1", 60)
    assert (await deltas.read("g1", restart, block_ms=0)).frames == []


async def test_a_trimmed_position_is_detected(client: RedisClient) -> None:
    deltas = Deltas(client, PREFIX, maxlen=10)
    start = await deltas.create("g1", 60)
    # MAXLEN ~ trims whole stream nodes (100 entries each), so write a few hundred
    for batch in range(3):
        await deltas.publish([("g1", frame(batch * 100 + i + 1)) for i in range(100)])
    assert await client.xlen(KEYS.delta("g1")) < 300
    with pytest.raises(DeltaTrimmed):
        await deltas.read("g1", start, count=5, block_ms=0)
    with pytest.raises(DeltaTrimmed):  # count >= maxlen: a short read proves nothing
        await deltas.read("g1", start, count=1000, block_ms=0)
    newest: Any = await client.xrevrange(KEYS.delta("g1"), "+", "-", count=2)
    tail = await deltas.read("g1", newest[1][0].decode(), count=5, block_ms=0)
    assert [f.n for f in tail.frames] == [300]
