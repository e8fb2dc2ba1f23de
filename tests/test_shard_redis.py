"""The shard runtime against Redis events: a restart (AOF on) mid-run, TTL expiry, and a
lease that lapses without being lost (a pause between the deadline and the TTL)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from cluster.partition import partition_of
from tests.redis_servers import standalone_server
from tests.shard_cluster import collections_of, shard_cluster, wait_for

pytestmark = pytest.mark.timeout(120)

COLLECTIONS = collections_of(10, ["tasks", "notes"])


async def test_redis_restart_mid_run(tmp_path: Path) -> None:
    with standalone_server(appendonly=True) as server:
        async with shard_cluster(server.url, tmp_path, ["s0", "s1"]) as c:
            await c.random_writes(COLLECTIONS, 200)
            await c.subscribe_many(COLLECTIONS, 60)
            await c.random_writes(COLLECTIONS, 200)
            await c.converge(timeout=20)
            before = c.resets()

            await asyncio.to_thread(server.restart)  # SIGTERM (AOF written), same port
            restarted = time.monotonic()
            await c.reconnect()
            await c.wait_balanced(["s0", "s1"], timeout=30)
            await c.random_writes(COLLECTIONS, 300)
            took = await c.converge(timeout=30)
            c.assert_clean()
            # a changed run_id re-claims everything: every subscription was reset
            assert all(s.resets > before[s.rid] for s in c.gateway.subs.values())
            for shard in ("s0", "s1"):
                events = [e["event"] for e in c.fleet[shard].events()]
                assert "redis_restarted" in events, events[-20:]
            print(f"converged {time.monotonic() - restarted:.2f}s after the restart "
                  f"({took:.2f}s after the last writes)")


async def test_ttl_rows_leave_windows_on_expiry(standalone_url: str, tmp_path: Path) -> None:
    async with shard_cluster(standalone_url, tmp_path, ["s0", "s1"]) as c:
        collections = COLLECTIONS[:4]
        for tenant, entity in collections:
            for i in range(8):
                await c.put(tenant, entity, f"keep{i}", {"n": i, "status": "open"})
        subs = []
        for tenant, entity in collections:
            subs.append(await c.gateway.subscribe(
                tenant, {"entity": entity, "sort": ["-n"], "limit": 5}))
            subs.append(await c.gateway.subscribe(tenant, {"entity": entity, "mode": "changes"}))
        await c.converge(timeout=10)

        ttl_ms = 1000
        written = time.monotonic()
        for tenant, entity in collections:
            for i in range(3):
                await c.put(tenant, entity, f"ttl{i}", {"n": 100 + i, "status": "open"},
                            ttl_ms=ttl_ms)
        await c.converge(timeout=5)  # they entered every window
        expires = written + ttl_ms / 1000

        def gone() -> bool:
            return all(not any(i.startswith("ttl") for i in s.ids()) for s in subs)

        await wait_for(gone, ttl_ms / 1000 + 5, "expired rows to leave")
        late = time.monotonic() - expires
        assert late < 2.5, f"expired rows left {late:.2f}s after their expiry"
        for tenant, entity in collections:
            for i in range(3):
                c.oracle.data[(tenant, entity)].pop(f"ttl{i}")
        await c.converge(timeout=5)
        c.assert_clean()
        assert all(s.resets == 1 for s in subs)  # ordinary leaves, no reset
        print(f"expired rows left every window {late:.2f}s after their expiry")


async def test_lapsed_lease_is_reclaimed_not_resumed(standalone_url: str, tmp_path: Path
                                                     ) -> None:
    """Paused past its own deadline (TTL - margin) but not past the lease's TTL: what
    it tried to publish on waking is fenced, and it must not then carry on under the
    same epoch as if nothing was lost (a renewal would still succeed): it re-claims,
    with a reset, and the subscriptions converge."""
    env = {"LQ_MEMBER_TTL_MS": "4000", "LQ_LEASE_TTL_MS": "4000", "LQ_LEASE_MARGIN_MS": "2500"}
    async with shard_cluster(standalone_url, tmp_path, ["s0", "s1"], env=env) as c:
        collections = COLLECTIONS[:8]
        await c.random_writes(collections, 100)
        await c.subscribe_many(collections, 40)
        for tenant, entity in collections:
            await c.gateway.subscribe(tenant, {"entity": entity, "mode": "changes"})
        await c.converge(timeout=15)
        holders = await c.holders()
        mine = [(t, e) for t, e in collections
                if (h := holders[partition_of(t, e)]) and h.shard == "s0"]
        assert mine
        fenced_before = (await c.fleet.status("s0"))[1]["fenced"]

        c.fleet["s0"].pause()
        await asyncio.sleep(0.2)
        await c.random_writes(mine, 60, concurrency=4)  # waiting for it when it wakes
        await asyncio.sleep(2.0)  # past its deadline (1.5 s), within the TTL (4 s)
        c.fleet["s0"].resume()
        await c.random_writes(collections, 100, concurrency=4)
        await c.converge(timeout=15)
        c.assert_clean()
        assert (await c.fleet.status("s0"))[1]["fenced"] > fenced_before
        assert (await c.fleet.metrics("s0"))["lq_shard_lease_lapses_total"] > 0
        after = await c.holders()
        for tenant, entity in mine:
            p = partition_of(tenant, entity)
            lease, was = after[p], holders[p]
            assert lease is not None and was is not None
            assert lease.shard == "s0"
        reclaimed = [p for p in {partition_of(t, e) for t, e in mine}
                     if (a := after[p]) and (b := holders[p]) and a.epoch > b.epoch]
        assert reclaimed, "no partition was re-claimed after the lapse"

