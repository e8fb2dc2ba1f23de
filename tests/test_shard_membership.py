"""Membership changes with real shard processes: a shard joins, a shard comes back with
the same id, a subscribe races an ownership change, a partition comes back to a shard
that served it before."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from cluster.partition import PARTITIONS, owner, partition_of
from lq.bench._shardsim import SimGateway
from tests.shard_cluster import (
    TTL_S,
    ShardCluster,
    collections_of,
    shard_cluster,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)

COLLECTIONS = collections_of(12, ["tasks", "notes", "items"])


async def _prepare(c: ShardCluster, subs: int = 120) -> None:
    await c.random_writes(COLLECTIONS, 200)
    await c.subscribe_many(COLLECTIONS, subs)
    await c.converge(timeout=20)


async def test_added_shard_takes_only_what_hrw_moves(standalone_url: str, tmp_path: Path
                                                     ) -> None:
    async with shard_cluster(standalone_url, tmp_path) as c:
        await _prepare(c)
        before_holders = await c.holders()
        before = c.resets()
        grown = ["s0", "s1", "s2", "s3"]
        moved = {p for p in range(PARTITIONS) if owner(p, grown) == "s3"}
        # HRW: the partitions that change hands are exactly those the new shard owns
        assert moved == {p for p in range(PARTITIONS)
                         if owner(p, grown) != owner(p, ["s0", "s1", "s2"])}

        writer = asyncio.create_task(c.random_writes(COLLECTIONS, 400, concurrency=4,
                                                     pause=0.005))
        c.start("s3")
        await c.wait_balanced(grown)
        await writer
        await c.converge(timeout=15)
        c.assert_clean()

        after = await c.holders()
        for p in range(PARTITIONS):
            old, new = before_holders[p], after[p]
            assert old is not None and new is not None
            if p in moved:
                assert new.shard == "s3" and new.epoch > old.epoch
            else:
                assert new == old, (p, old, new)  # same holder, same epoch: untouched
        for sub in c.gateway.subs.values():
            want = before[sub.rid] + (1 if sub.p in moved else 0)
            assert sub.resets == want, (sub.rid, sub.p in moved, sub.reset_log)


async def test_subscribe_racing_an_ownership_change(standalone_url: str, tmp_path: Path
                                                    ) -> None:
    """Subscriptions made while a shard joins reach whichever shard serves their
    partition (directly, forwarded, or re-sent by the gateway) within the re-send
    timeout."""
    async with shard_cluster(standalone_url, tmp_path) as c:
        await c.random_writes(COLLECTIONS, 200)
        grown = ["s0", "s1", "s2", "s3"]
        moving = [(t, e) for t, e in COLLECTIONS if owner(partition_of(t, e), grown) == "s3"]
        assert moving
        c.start("s3")
        racing = []
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # subscribe all through the join
            racing += await c.subscribe_many(moving, 5)
            await asyncio.sleep(0.05)
        await c.wait_balanced(grown)
        await wait_for(lambda: all(s.first_reset_at is not None for s in racing),
                       c.gateway.resend_s + 3, "first resets")
        late = [(s.rid, round(s.first_reset_at - s.created_at, 2)) for s in racing
                if s.first_reset_at is not None
                and s.first_reset_at - s.created_at > c.gateway.resend_s + 1.0]
        assert not late, late
        # sent where nobody reads it (a gateway's stale view): served after one re-send
        tenant, entity = moving[0]
        lost = await c.gateway.subscribe(tenant, {"entity": entity, "limit": 3},
                                         target="s-gone")
        await wait_for(lambda: lost.synced, c.gateway.resend_s + 3, "the re-sent subscribe")
        assert lost.asks == 2 and lost.first_reset_at is not None
        assert lost.first_reset_at - lost.created_at >= c.gateway.resend_s
        await c.random_writes(moving, 200)
        await c.converge(timeout=15)
        c.assert_clean()
        resent = sum(1 for s in racing if s.asks > 1)

        print(f"{len(racing)} racing subscriptions, {resent} needed a re-send")


async def _ctrl_group(c: ShardCluster, shard: str) -> dict[str, Any]:
    groups: Any = await c.client.xinfo_groups(c.front.keys.ctrl(shard))
    (group,) = groups
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in group.items()}


def _entry_key(entry_id: str | bytes) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq)


async def test_restart_with_same_id_gets_its_control_messages(standalone_url: str,
                                                              tmp_path: Path) -> None:
    async with shard_cluster(standalone_url, tmp_path, ["s0"]) as c:
        collections = COLLECTIONS[:6]
        await c.random_writes(collections, 100)
        await c.subscribe_many(collections, 10)
        await c.converge(timeout=15)

        # 1. stopped for less than its lease: the subscribe waits in its control stream
        # and is handled (not claimed) when it wakes: same epoch as its lease
        holders = await c.holders()
        c.fleet["s0"].pause()
        tenant, entity = collections[0]
        paused_sub = await c.gateway.subscribe(tenant, {"entity": entity, "sort": ["-n"],
                                                        "limit": 5})
        await asyncio.sleep(0.3)
        c.fleet["s0"].resume()
        await wait_for(lambda: paused_sub.synced, 5, "the subscribe sent while stopped")
        lease = holders[paused_sub.p]
        assert lease is not None and paused_sub.reset_log[0][2] == lease.epoch
        assert paused_sub.asks == 1

        # 2. killed: a subscribe sent to it (still the owner by membership) while down
        # is delivered to the restarted process (same id, new incarnation)
        c.fleet["s0"].kill()
        down_sub = await c.gateway.subscribe(tenant, {"entity": entity, "mode": "changes"})
        (target, op, rid, entry) = c.gateway.sent[-1]
        assert (target, op, rid) == ("s0", "subscribe", down_sub.rid)
        await c.random_writes(collections, 50)
        c.fleet.start("s0")
        await wait_for(lambda: down_sub.synced, TTL_S + 5, "the subscribe sent while down")
        await c.converge(timeout=15)
        c.assert_clean()
        await c.wait_balanced(["s0"])

        async def delivered() -> bool:
            group = await _ctrl_group(c, "s0")
            return (group["pending"] == 0
                    and _entry_key(group["last-delivered-id"]) >= _entry_key(entry))

        deadline = time.monotonic() + 5
        while not await delivered():
            assert time.monotonic() < deadline, await _ctrl_group(c, "s0")
            await asyncio.sleep(0.05)
        incs = {e["inc"] for proc in c.fleet.history for e in proc.events()
                if e.get("event") == "starting"}
        assert len(incs) == 2  # two incarnations of one shard id


async def test_reclaimed_partition_is_not_served_from_a_stale_collection(
    standalone_url: str, tmp_path: Path
) -> None:
    """A partition leaves a shard while its collection is idle there (no subscription),
    changes elsewhere, and comes back: the shard must load the collection afresh."""
    pair, grown = ["s0", "s1"], ["s0", "s1", "s2"]
    moving = [(t, e) for t, e in collections_of(40, ["tasks"])
              if owner(partition_of(t, e), pair) == "s0"
              and owner(partition_of(t, e), grown) == "s2"]
    tenant, entity = moving[0]
    async with shard_cluster(standalone_url, tmp_path, pair) as c:
        await c.random_writes([(tenant, entity)], 30, ids_per=10)
        sub = await c.gateway.subscribe(tenant, {"entity": entity, "sort": ["n"], "limit": 5})
        await c.converge(timeout=10)
        await c.gateway.unsubscribe(sub.rid)  # s0 keeps the collection, idle
        await asyncio.sleep(0.3)

        c.start("s2")  # the partition moves to s2 ...
        await c.wait_balanced(grown)
        await c.random_writes([(tenant, entity)], 60, ids_per=10)
        c.fleet["s2"].terminate()  # ... and back to s0
        assert await c.fleet["s2"].wait_exit(5) == 0
        await c.wait_balanced(pair)

        again = await c.gateway.subscribe(tenant, {"entity": entity, "sort": ["n"], "limit": 5})
        await wait_for(lambda: again.synced, 5, "the new subscription's snapshot")
        await c.converge(timeout=10, subs=[again])
        c.assert_clean()


async def test_registrations_of_a_gone_gateway_are_removed(standalone_url: str, tmp_path: Path
                                                           ) -> None:
    env = {"LQ_GATEWAY_GRACE_MS": "500"}
    async with shard_cluster(standalone_url, tmp_path, ["s0", "s1"], env=env) as c:
        collections = COLLECTIONS[:6]
        await c.random_writes(collections, 60)
        kept = await c.subscribe_many(collections, 10)
        gone = SimGateway(c.settings, "gw-gone", heartbeat_ms=0)  # one beat only
        await gone.start()
        try:
            for i in range(10):
                tenant, entity = collections[i % len(collections)]
                await gone.subscribe(tenant, {"entity": entity, "sort": ["n"], "limit": 3})
            await wait_for(lambda: gone.all_synced(), 10, "the gone gateway's snapshots")
            registry = c.front.registry
            assert len(await registry.by_gateway("gw-gone")) == 10

            async def served() -> int:
                total = 0
                for s in ("s0", "s1"):
                    total += int((await c.fleet.status(s))[1].get("subscriptions", 0))
                return total

            assert await served() == 20
            # it never beats again: gone after its TTL (1 s) plus the grace (0.5 s)
            deadline = time.monotonic() + 8
            while await registry.by_gateway("gw-gone") or await served() != 10:
                assert time.monotonic() < deadline, (await registry.by_gateway("gw-gone"),
                                                     await served())
                await asyncio.sleep(0.1)
            for sub in gone.subs.values():
                assert await registry.get(sub.p, sub.rid) is None
            await c.random_writes(collections, 60)
            await c.converge(timeout=10, subs=kept)
            c.assert_clean()
        finally:
            await gone.close()
