"""Leases: taken only when free, epochs that always grow, holder-only renew and release."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from cluster.partition import PARTITIONS
from storage import Lease, Leases, RedisClient, lease_deadline, lease_value
from tests.storage_helpers import KEYS, PREFIX, open_client, redis_ms

P = 7


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RedisClient]:
    async with open_client(redis_url) as c:
        yield c


async def test_acquire_only_when_free(client: RedisClient) -> None:
    leases = Leases(client, PREFIX)
    before_us = await redis_ms(client) * 1000
    epoch = await leases.acquire(P, "s1", 5000)
    assert epoch is not None and epoch >= before_us  # at least Redis time in µs
    assert await leases.acquire(P, "s2", 5000) is None
    assert await leases.acquire(P, "s1", 5000) is None  # held, even by the same shard id
    assert await leases.holder(P) == Lease("s1", epoch)
    assert await client.get(KEYS.lease(P)) == f"s1:{epoch}".encode()
    assert int(await client.get(KEYS.epoch(P)) or 0) == epoch
    assert await leases.holder(P + 1) is None


async def test_epoch_strictly_grows_across_releases_and_holders(client: RedisClient) -> None:
    leases = Leases(client, PREFIX)
    epochs = []
    for shard in ("s1", "s1", "s2", "s1"):
        epoch = await leases.acquire(P, shard, 5000)
        assert epoch is not None
        epochs.append(epoch)
        assert await leases.release(P, lease_value(shard, epoch))
    assert epochs == sorted(set(epochs))
    # a counter ahead of the clock (a clock step back) still advances by one
    ahead = epochs[-1] + 10**12
    await client.set(KEYS.epoch(P), ahead)
    assert await leases.acquire(P, "s2", 5000) == ahead + 1


async def test_renew_and_release_need_the_whole_value(client: RedisClient) -> None:
    leases = Leases(client, PREFIX)
    epoch = await leases.acquire(P, "s1", 1000)
    assert epoch is not None
    mine = lease_value("s1", epoch)
    restarted = lease_value("s1", epoch + 1)  # same shard id, another process start
    assert await leases.renew(P, restarted, 60_000) is False
    assert await leases.release(P, restarted) is False
    assert await leases.renew(P, "s2:" + str(epoch), 60_000) is False
    assert await client.pttl(KEYS.lease(P)) <= 1000
    assert await leases.renew(P, mine, 60_000) is True
    assert await client.pttl(KEYS.lease(P)) > 50_000
    assert await leases.holder(P) == Lease("s1", epoch)
    assert await leases.release(P, mine) is True
    assert await leases.holder(P) is None
    assert await leases.renew(P, mine, 60_000) is False
    assert await leases.release(P, mine) is False


async def test_an_expired_lease_is_free_for_a_newer_epoch(client: RedisClient) -> None:
    leases = Leases(client, PREFIX)
    first = await leases.acquire(P, "s1", 150)
    assert first is not None
    await asyncio.sleep(0.25)
    assert await leases.holder(P) is None
    second = await leases.acquire(P, "s2", 5000)
    assert second is not None and second > first
    assert await leases.renew(P, lease_value("s1", first), 5000) is False
    assert await leases.holder(P) == Lease("s2", second)


async def test_batched_operations_over_every_partition(client: RedisClient) -> None:
    leases = Leases(client, PREFIX)
    every = list(range(PARTITIONS))
    sent = time.monotonic()
    taken = await leases.acquire_many(every, "s1", 5000)
    assert set(taken) == set(every) and all(e is not None for e in taken.values())
    assert lease_deadline(sent, 5000, 1000) == pytest.approx(sent + 4.0)
    assert set((await leases.acquire_many(every, "s2", 5000)).values()) == {None}
    values = {p: lease_value("s1", e) for p, e in taken.items() if e is not None}
    held = await leases.holders(every)
    assert held == {p: Lease.parse(v) for p, v in values.items()}

    # a mix: half the values are a restarted process's, which must be refused
    mixed = {p: v if p % 2 == 0 else v + "0" for p, v in values.items()}
    renewed = await leases.renew_many(mixed, 60_000)
    assert renewed == {p: p % 2 == 0 for p in every}
    assert await client.pttl(KEYS.lease(0)) > 50_000
    assert await client.pttl(KEYS.lease(1)) <= 5000

    released = await leases.release_many(mixed)
    assert released == {p: p % 2 == 0 for p in every}
    held_after = await leases.holders(every)
    assert [p for p, h in held_after.items() if h is not None] == list(range(1, PARTITIONS, 2))
    again = await leases.acquire_many(every, "s2", 5000)
    for p in every:
        fresh = again[p]
        if p % 2 == 0:
            assert fresh is not None and fresh > taken[p]  # type: ignore[operator]
        else:
            assert fresh is None
    assert await leases.acquire_many([], "s2", 5000) == {}
    assert await leases.renew_many({}, 5000) == {}
    assert await leases.holders([]) == {}
