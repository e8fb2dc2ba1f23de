"""Failover with real shard processes: SIGKILL, SIGTERM, SIGSTOP past the lease.

Each test subscribes over many partitions, keeps writing while a shard fails and then
checks: the affected subscriptions got `reset` + snapshot under a newer epoch in time,
the others none, no frame of an old epoch reached the stream after the new owner's,
and every subscription converges to the oracle.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from tests.shard_cluster import (
    TTL_S,
    ShardCluster,
    collections_of,
    shard_cluster,
    taken_over,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)

ENTITIES = ["tasks", "notes", "items"]
COLLECTIONS = collections_of(12, ENTITIES)


async def _prepare(c: ShardCluster, subs: int = 120) -> None:
    await c.random_writes(COLLECTIONS, 200)
    await c.subscribe_many(COLLECTIONS, subs)
    await c.converge(timeout=20)


async def _epochs_of(c: ShardCluster, shard: str) -> dict[int, int]:
    """The partitions `shard` holds now -> their epochs."""
    holders = await c.holders()
    return {p: h.epoch for p, h in holders.items() if h is not None and h.shard == shard}


async def test_sigkill_mid_stream(redis_url: str, tmp_path: Path) -> None:
    async with shard_cluster(redis_url, tmp_path) as c:
        await _prepare(c)
        victim = "s1"
        old = await _epochs_of(c, victim)
        affected = c.subs_in(set(old))
        unaffected = [s for s in c.gateway.subs.values() if s.p not in old]
        assert affected and unaffected
        before = c.resets()

        writer = asyncio.create_task(c.random_writes(COLLECTIONS, 600, concurrency=4,
                                                     pause=0.005))
        await asyncio.sleep(0.3)
        killed_at = time.monotonic()
        c.fleet[victim].kill()
        took = await wait_for(taken_over(affected, old), TTL_S + 5, "takeover after SIGKILL")
        await writer
        await c.converge(timeout=15)
        c.assert_clean()

        for s in affected:
            assert s.resets == before[s.rid] + 1, (s.rid, s.reset_log)
            assert s.reset_log[-1][1] != victim
        assert [s.rid for s in unaffected if s.resets != before[s.rid]] == []
        new = {p: h.epoch for p, h in (await c.holders()).items() if p in old and h is not None}
        assert all(new[p] > old[p] for p in old)
        c.assert_fenced(new)
        await c.wait_balanced(["s0", "s2"])
        print(f"SIGKILL: every affected subscription synced again {took:.2f}s after the kill "
              f"({time.monotonic() - killed_at:.2f}s incl. convergence)")


async def test_sigterm_hands_off_without_the_ttl(standalone_url: str, tmp_path: Path) -> None:
    # A long TTL, so a handoff that waited for expiry could not pass.
    slow = {"LQ_MEMBER_TTL_MS": "6000", "LQ_LEASE_TTL_MS": "6000", "LQ_LEASE_MARGIN_MS": "500"}
    async with shard_cluster(standalone_url, tmp_path, env=slow) as c:
        await _prepare(c)
        victim = "s2"
        old = await _epochs_of(c, victim)
        affected = c.subs_in(set(old))
        unaffected = [s for s in c.gateway.subs.values() if s.p not in old]
        before = c.resets()

        writer = asyncio.create_task(c.random_writes(COLLECTIONS, 400, concurrency=4,
                                                     pause=0.005))
        await asyncio.sleep(0.2)
        proc = c.fleet[victim]
        proc.terminate()
        signalled = time.monotonic()
        exited = asyncio.create_task(proc.wait_exit(5.0))
        took = await wait_for(taken_over(affected, old), 5.0, "handoff after SIGTERM")
        code = await exited
        exit_s = time.monotonic() - signalled
        await writer
        await c.converge(timeout=15)
        c.assert_clean()

        assert code == 0, proc.log_tail()
        assert took < 1.5, f"handoff took {took:.2f}s (TTL 6s)"
        assert exit_s < 2.5, f"exited {exit_s:.2f}s after SIGTERM"
        assert all(s.resets == before[s.rid] + 1 for s in affected)
        assert [s.rid for s in unaffected if s.resets != before[s.rid]] == []
        new = {p: h.epoch for p, h in (await c.holders()).items() if p in old and h is not None}
        c.assert_fenced(new)
        assert c.gateway.gaps == 0, c.gateway.anomalies
        print(f"SIGTERM: handoff in {took:.3f}s, exit after {exit_s:.2f}s")


async def test_sigstop_past_the_lease_then_sigcont(standalone_url: str, tmp_path: Path) -> None:
    async with shard_cluster(standalone_url, tmp_path) as c:
        await _prepare(c)
        victim = "s0"
        old = await _epochs_of(c, victim)
        affected = c.subs_in(set(old))
        # subscriptions that see every write of their collection, so the writes made
        # while it is stopped are deltas it will try to publish when it wakes
        mine = sorted({(s.tenant, str(s.query["entity"])) for s in affected})
        for tenant, entity in mine:
            await c.gateway.subscribe(tenant, {"entity": entity, "mode": "changes"})
        await c.converge(timeout=15)
        affected = c.subs_in(set(old))
        fenced_before = (await c.fleet.status(victim))[1]["fenced"]

        c.fleet[victim].pause()
        took = await wait_for(taken_over(affected, old), TTL_S + 5, "takeover of a stopped shard")
        taken = {p: h.epoch for p, h in (await c.holders()).items() if p in old and h is not None}
        assert all(taken[p] > old[p] for p in old)
        await c.random_writes(mine, 200, concurrency=4)  # its tail wakes up to these
        await asyncio.sleep(0.5)
        c.fleet[victim].resume()

        # it rejoins: takes its HRW share back, under newer epochs still
        await c.wait_balanced(["s0", "s1", "s2"], timeout=20)
        await c.random_writes(COLLECTIONS, 200, concurrency=4)
        await c.converge(timeout=15)
        c.assert_clean()
        c.assert_fenced(taken)
        back = {p: h.epoch for p, h in (await c.holders()).items() if p in old and h is not None}
        assert all(back[p] > taken[p] for p in old)

        _, body = await c.fleet.status(victim)
        metrics = await c.fleet.metrics(victim)
        assert body["fenced"] > fenced_before, body
        assert metrics["lq_shard_fenced_publishes_total"] == body["fenced"]
        liveness = orjson.loads((await c.front.membership.values("shard", [victim]))[victim])
        assert liveness["fenced"] > fenced_before  # also in its liveness value
        for s in affected:  # taken over, then handed back: two resets each
            assert s.resets >= 3, (s.rid, s.reset_log)
        print(f"SIGSTOP: takeover {took:.2f}s; fenced publishes after waking: {body['fenced']}")
