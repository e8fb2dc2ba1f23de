"""A rolling restart (what a StatefulSet update does): each shard in turn is stopped
with SIGTERM and started again under the same id, while writes and subscriptions go
on. Nothing may be lost, duplicated or stale at the end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.shard_cluster import collections_of, shard_cluster

pytestmark = pytest.mark.timeout(150)

COLLECTIONS = collections_of(10, ["tasks", "notes"])


async def test_rolling_restart_under_load(standalone_url: str, tmp_path: Path) -> None:
    shards = ["s0", "s1", "s2"]
    async with shard_cluster(standalone_url, tmp_path, shards) as c:
        await c.random_writes(COLLECTIONS, 200)
        await c.subscribe_many(COLLECTIONS, 80)
        await c.converge(timeout=20)

        stop = asyncio.Event()

        async def traffic() -> None:
            while not stop.is_set():
                await c.random_writes(COLLECTIONS, 20, concurrency=4)
                if c.rng.random() < 0.3:
                    await c.subscribe_many(COLLECTIONS, 1)
                await asyncio.sleep(0.02)

        load = asyncio.create_task(traffic())
        try:
            for shard in shards:
                c.fleet[shard].terminate()
                assert await c.fleet[shard].wait_exit(5) == 0, c.fleet[shard].log_tail()
                c.start(shard)
                await c.wait_balanced(shards)
        finally:
            stop.set()
            await load
        await c.converge(timeout=20)
        c.assert_clean()
        assert c.gateway.gaps == 0, c.gateway.anomalies
