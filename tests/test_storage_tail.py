"""Partition tailing: grouped changes and positions, prompt wake-up, no spinning when idle,
skipping unwanted collections before decoding, trimmed positions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cluster.messages import Change
from cluster.partition import PARTITIONS, partition_of
from cluster.settings import StorageSettings
from storage import ChangeLog, PartitionTail, RedisClient, RowStore, is_cluster
from tests.storage_helpers import KEYS, TENANT, entities_covering_partitions, open_client

SETTINGS = StorageSettings()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RedisClient]:
    async with open_client(redis_url) as c:
        yield c


async def marks(client: RedisClient, ps: list[int]) -> dict[int, str]:
    log = ChangeLog(client, SETTINGS)
    return {p: (await log.mark(p))[0] for p in ps}


async def test_writes_to_every_partition_arrive_grouped(client: RedisClient) -> None:
    entities = entities_covering_partitions()
    positions = await marks(client, list(range(PARTITIONS)))
    store = RowStore(client, SETTINGS)
    written: dict[int, list[tuple[str, int, str]]] = {}
    for round_ in range(2):
        for p, entity in entities.items():
            w = await store.put(TENANT, entity, f"r{round_}", {"p": p, "round": round_})
            written.setdefault(p, []).append((w.id, w.version, w.stream_id))
    tail = PartitionTail(client, SETTINGS)
    got: dict[int, list[Change]] = {}
    for _ in range(10):
        read = await tail.read(positions, count=1, block_ms=0)  # one entry per partition
        assert not read.trimmed
        if not read.positions:
            break
        for p, changes in read.changes.items():
            got.setdefault(p, []).extend(changes)
        positions.update(read.positions)
    assert {p: [(c.id, c.version, c.stream_id) for c in cs] for p, cs in got.items()} == written
    assert positions == {p: entries[-1][2] for p, entries in written.items()}
    sample = got[5][1]
    assert (sample.tenant, sample.entity, sample.values) == (
        TENANT,
        entities[5],
        {"p": 5, "round": 1},
    )


async def test_a_blocking_read_wakes_promptly_on_a_write(redis_url: str) -> None:
    entities = entities_covering_partitions()
    async with open_client(redis_url) as client, open_client(redis_url) as reader:
        positions = await marks(client, list(range(PARTITIONS)))
        tail = PartitionTail(reader, SETTINGS)
        assert (await tail.read(positions, block_ms=100)).positions == {}  # idle first
        task = asyncio.create_task(tail.read(positions, block_ms=3000))
        await asyncio.sleep(0.3)
        written = time.monotonic()
        w = await RowStore(client, SETTINGS).put(TENANT, entities[200], "x", {"n": 1})
        read = await asyncio.wait_for(task, 2)
        assert time.monotonic() - written < 0.2
        assert read.positions == {200: w.stream_id}
        assert [c.id for c in read.changes[200]] == ["x"]


async def test_an_idle_tail_does_not_spin(client: RedisClient) -> None:
    positions = await marks(client, list(range(PARTITIONS)))
    tail = PartitionTail(client, SETTINGS)
    began = time.monotonic()
    read = await tail.read(positions, block_ms=1000)
    elapsed = time.monotonic() - began
    assert read.positions == {} and read.changes == {} and not read.trimmed
    assert 0.9 < elapsed < 2.5
    if is_cluster(client):
        assert 5 < tail.round_trips < 100  # polls, backing off to 50 ms
    else:
        assert tail.round_trips == 1  # one blocking XREAD over all partitions
    empty = PartitionTail(client, SETTINGS)
    began = time.monotonic()
    assert await empty.read({}, block_ms=100) == type(read)()
    assert time.monotonic() - began >= 0.09 and empty.round_trips == 0


async def test_unwanted_collections_are_skipped_before_decoding(client: RedisClient) -> None:
    p = partition_of(TENANT, "keep")
    positions = await marks(client, [p])
    # an entry whose values cannot be decoded: reading it would raise
    await client.xadd(
        KEYS.events(p),
        {"t": "other", "e": "skipme", "i": "z", "v": 1, "o": "p", "d": b"\xffnot-a-frame"},
    )
    kept = await RowStore(client, SETTINGS).put(TENANT, "keep", "k", {"n": 1})
    tail = PartitionTail(client, SETTINGS)
    asked: list[tuple[str, str]] = []

    def wanted(tenant: str, entity: str) -> bool:
        asked.append((tenant, entity))
        return entity == "keep"

    read = await tail.read(positions, block_ms=0, wanted=wanted)
    assert [c.id for c in read.changes[p]] == ["k"]
    assert read.positions == {p: kept.stream_id}
    assert asked == [("other", "skipme"), (TENANT, "keep")]
    with pytest.raises(ValueError, match="codec header"):  # without the predicate it decodes
        await tail.read(positions, block_ms=0)
    # only unwanted entries: no changes, but the position still advances
    skipped: Any = await client.xadd(
        KEYS.events(p), {"t": "other", "e": "skipme", "i": "y", "v": 2, "o": "d"}
    )
    again = await tail.read(read.positions, block_ms=0, wanted=wanted)
    assert again.changes == {} and again.positions == {p: skipped.decode()}


async def test_a_trimmed_position_is_reported(client: RedisClient) -> None:
    settings = StorageSettings(log_maxlen=10)
    entities = entities_covering_partitions()
    busy, quiet = 3, 4
    positions = await marks(client, [busy, quiet])
    store = RowStore(client, settings)
    for i in range(250):  # MAXLEN ~ trims whole stream nodes of 100 entries
        await store.put(TENANT, entities[busy], f"r{i}", {"i": i})
    w = await store.put(TENANT, entities[quiet], "q", {"i": 0})
    assert await client.xlen(KEYS.events(busy)) < 250
    tail = PartitionTail(client, settings)
    read = await tail.read(positions, count=50, block_ms=0)
    assert read.trimmed == frozenset({busy})
    assert busy not in read.changes and busy not in read.positions
    assert read.positions == {quiet: w.stream_id}
    assert [c.id for c in read.changes[quiet]] == ["q"]
