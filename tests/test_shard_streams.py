"""The shard's streams going away under it: a change log trimmed past a shard's
position (reload + reset, never a silent gap) and a gateway's delta stream deleted
(the gateway re-creates it and resyncs; shards never re-create it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.partition import partition_of
from cluster.settings import StorageSettings
from storage import RowStore
from tests.shard_cluster import collections_of, shard_cluster, wait_for

pytestmark = pytest.mark.timeout(120)


async def test_trimmed_log_position_reloads_and_resets(standalone_url: str, tmp_path: Path
                                                       ) -> None:
    env = {"LQ_LOG_MAXLEN": "100", "LQ_TAIL_COUNT": "20"}
    async with shard_cluster(standalone_url, tmp_path, ["s0", "s1"], env=env) as c:
        c.store = RowStore(c.client, StorageSettings(redis_url=standalone_url, log_maxlen=100))
        holders = await c.holders()
        tenant, entity = next((t, e) for t, e in collections_of(20, ["tasks"])
                              if (h := holders[partition_of(t, e)]) and h.shard == "s0")
        await c.random_writes([(tenant, entity)], 50, ids_per=30)
        subs = [await c.gateway.subscribe(tenant, {"entity": entity, "sort": ["-n"],
                                                   "limit": 10}),
                await c.gateway.subscribe(tenant, {"entity": entity, "mode": "changes"})]
        await c.converge(timeout=10)

        c.fleet["s0"].pause()  # well within its lease: it only falls behind
        await c.random_writes([(tenant, entity)], 500, ids_per=30)
        c.fleet["s0"].resume()
        await c.random_writes([(tenant, entity)], 20, ids_per=30)
        await c.converge(timeout=15)
        c.assert_clean()
        events = [e["event"] for e in c.fleet["s0"].events()]
        assert "log_trimmed" in events
        for sub in subs:  # reset again, by the same shard under the same epoch
            assert sub.resets == 2, sub.reset_log
            assert sub.reset_log[0][1:] == sub.reset_log[1][1:]


async def test_deleted_delta_stream_is_recreated_by_the_gateway(standalone_url: str,
                                                                tmp_path: Path) -> None:
    async with shard_cluster(standalone_url, tmp_path, ["s0", "s1"]) as c:
        collections = collections_of(8, ["tasks"])
        await c.random_writes(collections, 100)
        await c.subscribe_many(collections, 30)
        await c.converge(timeout=10)
        before = c.resets()

        await c.client.delete(c.front.keys.delta(c.gateway.id))
        await c.random_writes(collections, 100)  # refused: NOMKSTREAM never re-creates it
        await wait_for(lambda: any("delta stream" in a for a in c.gateway.anomalies), 10,
                       "the gateway to notice its stream is gone")
        await c.random_writes(collections, 100)
        await c.converge(timeout=15)
        c.assert_clean()
        refused = 0.0
        for s in ("s0", "s1"):
            refused += (await c.fleet.metrics(s))["lq_shard_frames_no_stream_total"]
        assert refused > 0
        assert all(s.resets > before[s.rid] for s in c.gateway.subs.values())
