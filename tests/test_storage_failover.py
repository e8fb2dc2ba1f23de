"""What identifies the data Redis serves (`storage.server_run_id`) changes when a Redis
Cluster replica takes over a primary, and when a primary restarts: shards compare it at
every heartbeat and re-claim their partitions (a reset and a fresh snapshot for every
subscription), since either may have lost acknowledged writes that the shards still hold
in memory. Found by `lq chaos --redis cluster` (the failover fault): before, it was None
on a Cluster, and lists kept writes the promoted replica never had, without a reset.
Uses the chaos runner's cluster (three masters, a replica each)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lq.chaos.redis_nodes import RedisCluster
from storage import connect, server_run_id

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


async def _identity(url: str) -> str | None:
    client = connect(url)
    try:
        for _ in range(20):  # the first ask after a failover meets the dead primary
            try:
                return await server_run_id(client)
            except Exception:  # a connection error, then the new topology
                await asyncio.sleep(0.1)
        raise AssertionError("no identity in 2 s")
    finally:
        await client.aclose()


@pytest.mark.timeout(90)
async def test_the_identity_changes_with_a_failover_and_a_restart(tmp_path: Path) -> None:
    cluster = RedisCluster(tmp_path, "always")
    try:
        first = await _identity(cluster.url)
        assert first is not None and first.count("=") == 3
        assert await _identity(cluster.url) == first  # stable while nothing happens
        master, _ = cluster.pairs[1]
        master.kill()
        cluster.promote(1)
        master.start()
        cluster.rejoin(1)
        cluster.wait_ok(30)  # every node agrees on the new primary
        after_failover = await _identity(cluster.url)
        assert after_failover != first
        assert f"127.0.0.1:{master.port}=" not in str(after_failover)
        restarted, _ = cluster.pairs[0]
        restarted.kill()
        restarted.start()
        cluster.wait_ok(30)
        after_restart = await _identity(cluster.url)
        assert after_restart not in (first, after_failover)
        assert f"127.0.0.1:{restarted.port}=" in str(after_restart)  # same node, new run
    finally:
        cluster.close()
