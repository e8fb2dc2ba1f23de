"""The storage front: every adapter carries the settings' prefix and limits, blocking reads
run on separate small clients, and `aclose()` closes every client the front opened."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from cluster.keys import Keys
from cluster.partition import partition_of
from cluster.settings import StorageSettings
from storage import BLOCKING_CONNECTIONS, MAX_BLOCKING_READERS, DeltaFrame, Storage
from tests.storage_helpers import open_client


def _frame(n: int) -> DeltaFrame:
    return DeltaFrame("s1", "i1", n, 3, 1, ((("g1.1",), orjson.dumps([{"op": "x"}])),))


async def test_every_adapter_uses_the_settings_prefix_and_limits(redis_url: str) -> None:
    settings = StorageSettings(redis_url=redis_url, prefix="fr", log_maxlen=50, delta_maxlen=10)
    keys = Keys("fr")
    async with Storage.open(settings) as front:
        reader = front.blocking()
        adapters: list[Any] = [front.registry, front.control, front.deltas, front.leases,
                    front.membership, front.rows, front.log, reader.control,
                    reader.deltas, reader.membership]
        assert {a.keys.prefix for a in adapters} == {"fr"} and front.keys == keys
        assert front.deltas.maxlen == reader.deltas.maxlen == 10
        assert reader.tail.log_maxlen == 50

        p = partition_of("t", "tasks")
        await front.rows.put("t", "tasks", "r1", {"n": 1}, ttl_ms=1000)
        assert await front.client.exists(keys.rows(p, "t", "tasks"))
        assert await front.client.xlen(keys.events(p)) == 1
        due = await front.due_rows([p], int(time.time() * 1000) + 5000)
        assert due == {p: [("t", "tasks", "r1")]}

        await front.deltas.create("g1", 60)
        await front.deltas.publish([("g1", _frame(n)) for n in range(1, 301)])
        assert await front.client.xlen(keys.delta("g1")) < 300  # trimmed by delta_maxlen

        secret = await front.cursor_secret()
        assert await front.client.get(keys.cursor_key()) == secret
        assert await front.cursor_secret("configured") == b"configured"

        await front.membership.heartbeat("shard", "s1", 5000, b'{"partitions": 3}')
        assert await front.live_shard_count() == 1
        assert await front.leases.acquire(p, "s1", 5000) is not None
        snap = await front.read_snapshot()
        assert [m.id for m in snap.shards] == ["s1"] and snap.leases[p] is not None
        run_id = await front.server_run_id()  # on a cluster: each primary and its run id
        assert run_id and (run_id.count("=") == 3) == front.cluster


async def _named(url: str, name: str) -> int:
    """How many connections named `name` the server has (standalone)."""
    async with open_client(url) as probe:
        clients: Any = await probe.client_list()
        return sum(1 for c in clients if c.get("name") == name)


async def _until_none(url: str, name: str) -> None:
    deadline = time.monotonic() + 3
    while await _named(url, name):
        assert time.monotonic() < deadline, f"connections {name!r} still open"
        await asyncio.sleep(0.05)


async def test_blocking_reads_run_on_separate_bounded_clients_closed_by_aclose(
    standalone_url: str,
) -> None:
    front = Storage.open(StorageSettings(redis_url=standalone_url), client_name="fr-main")
    reader = front.blocking(client_name="fr-block")
    assert reader.client is not front.client
    blocking: Any = reader.client
    pool = blocking.connection_pool
    assert pool.max_connections == BLOCKING_CONNECTIONS

    start = await front.membership.notices_tail_id()
    task = asyncio.create_task(reader.membership.notices(start, block_ms=3000))
    await asyncio.sleep(0.1)
    sent = time.monotonic()
    await front.membership.heartbeat("shard", "s2", 5000, b"{}")  # not held up by the read
    found, _ = await asyncio.wait_for(task, 2)
    assert [(n.op, n.id) for n in found] == [("join", "s2")]
    assert time.monotonic() - sent < 0.5
    assert await _named(standalone_url, "fr-main") >= 1
    assert await _named(standalone_url, "fr-block") == 1

    await front.aclose()
    assert front.closed
    await _until_none(standalone_url, "fr-block")
    await _until_none(standalone_url, "fr-main")
    await front.aclose()  # idempotent
    with pytest.raises(RuntimeError):
        front.blocking()


async def test_a_front_refuses_a_blocking_client_per_subscription(standalone_url: str) -> None:
    async with Storage.open(StorageSettings(redis_url=standalone_url)) as front:
        readers = [front.blocking() for _ in range(MAX_BLOCKING_READERS)]
        with pytest.raises(RuntimeError):
            front.blocking()
        assert len({id(r.client) for r in readers}) == MAX_BLOCKING_READERS
