"""3 shard processes, ~200 subscriptions, random writes: every subscription's applied
deltas equal the oracle, and each shard owns its HRW share of the partitions. Also on
the Redis Cluster fixture. Plus: the publish overflow policy (a gap, then resync)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from cluster.partition import PARTITIONS, owner
from tests.shard_cluster import collections_of, shard_cluster

pytestmark = pytest.mark.timeout(150)

ENTITIES = ["tasks", "notes", "items", "events"]


async def test_convergence_and_hrw_share(redis_url: str, tmp_path: Path) -> None:
    shards = ["s0", "s1", "s2"]
    async with shard_cluster(redis_url, tmp_path, shards) as c:
        collections = collections_of(12, ENTITIES)  # 48 collections over many partitions
        await c.random_writes(collections, 300)
        subs = await c.subscribe_many(collections, 200)
        await c.random_writes(collections, 600, concurrency=8)

        # mid-stream: some leave, some slide their window (registration rewritten first)
        writer = asyncio.create_task(c.random_writes(collections, 600, concurrency=8))
        rng = random.Random(5)
        gone = rng.sample(subs, 20)
        for sub in gone:
            await c.gateway.unsubscribe(sub.rid)
        windows = [s for s in subs if s.mode == "window" and s not in gone and len(s.items) > 1]
        moved = rng.sample(windows, min(20, len(windows)))
        for sub in moved:
            # the writer runs meanwhile, so the window may have shrunk since it was picked
            n = len(sub.items)
            after = rng.choice([None, rng.randrange(n - 1)]) if n > 1 else None
            await c.reanchor(sub, rng.choice([2, 7, 15]), after)
        await writer
        await c.converge(timeout=30)
        c.assert_clean()

        # leases: each partition held by its HRW owner, each shard serving its share
        holders = await c.holders()
        for p in range(PARTITIONS):
            lease = holders[p]
            assert lease is not None and lease.shard == owner(p, shards), (p, lease)
        served = 0
        for s in shards:
            _, body = await c.fleet.status(s)
            share = sum(1 for p in range(PARTITIONS) if owner(p, shards) == s)
            assert body["partitions"] == share
            served += body["subscriptions"]
        assert served == len(subs) - len(gone)
        # one reset each (a reanchor's answer is a reset too), nothing more
        for sub in subs:
            if sub not in gone:
                assert sub.resets == 1 + (sub in moved), (sub.rid, sub.reset_log)
        assert c.gateway.gaps == 0, c.gateway.anomalies
        assert sum(s.applied for s in subs) > 5 * len(subs)  # deltas flowed, not just snapshots


async def test_publish_overflow_is_a_gap_and_resync(standalone_url: str, tmp_path: Path) -> None:
    """A tiny per-gateway buffer overflows on bursts: the shard drops the buffer and skips
    a frame number, the gateway sees the gap and resyncs; nothing is silently lost."""
    env = {"LQ_PUBLISH_MAX_BYTES": "4000"}
    async with shard_cluster(standalone_url, tmp_path, ["s0", "s1"], env=env) as c:
        collections = collections_of(6, ENTITIES)
        await c.random_writes(collections, 300)
        await c.subscribe_many(collections, 80)
        for tenant, entity in collections[:6]:  # snapshots larger than the whole bound
            await c.gateway.subscribe(tenant, {"entity": entity, "mode": "changes"})
        for _ in range(3):
            await c.random_writes(collections, 300, concurrency=32)
            await asyncio.sleep(0.2)
        await c.converge(timeout=30)
        c.assert_clean()
        overflows = 0.0
        for s in ("s0", "s1"):
            overflows += (await c.fleet.metrics(s))["lq_shard_publish_overflows_total"]
        assert overflows > 0 and c.gateway.gaps > 0, (overflows, c.gateway.gaps)
        print(f"{overflows:.0f} overflows, {c.gateway.gaps} gaps, "
              f"{sum(s.resyncs for s in c.gateway.subs.values())} resyncs")
