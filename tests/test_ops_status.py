"""`lq status` over a real Redis (standalone and Cluster): members and their counters,
leases compared with the computed owners, the table and the JSON."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import orjson
import pytest

from cluster.partition import PARTITIONS, owner
from cluster.settings import StorageSettings
from lq.cli import main
from lq.status_cmd import ranges
from storage import Storage
from tests.gateway_helpers import free_port

SHARDS = ["s-a", "s-b"]


async def _populate(url: str, prefix: str) -> dict[str, int]:
    """Two live shards and a gateway; leases: most with their owner, 3 free, 2 held by
    the other shard. Returns how many leases each shard holds."""
    async with Storage.open(StorageSettings(redis_url=url, prefix=prefix)) as front:
        members = front.membership
        for shard in SHARDS:
            counters = {"partitions": 100, "subscriptions": 7, "lag_ms": 1.5, "state": "running",
                        "inc": f"inc-{shard}"}
            await members.heartbeat("shard", shard, 30_000, orjson.dumps(counters))
        await members.heartbeat("gateway", "gw-1", 30_000,
                                orjson.dumps({"connections": 4, "subscriptions": 9}))
        leases = front.leases
        held = {s: 0 for s in SHARDS}
        for p in range(PARTITIONS):
            if p in (5, 6, 7):
                continue
            holder = owner(p, SHARDS)
            assert holder is not None
            if p in (100, 200):
                holder = next(s for s in SHARDS if s != holder)
            assert await leases.acquire(p, holder, 30_000) is not None
            held[holder] += 1
        return held


def test_status_json_reports_members_counters_and_partition_problems(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    held = asyncio.run(_populate(redis_url, "st"))
    assert main(["status", "--redis-url", redis_url, "--prefix", "st", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    shards = {s["id"]: s for s in report["shards"]}
    assert sorted(shards) == SHARDS
    for shard in SHARDS:
        assert shards[shard]["partitions"] == 100 and shards[shard]["subscriptions"] == 7
        assert shards[shard]["lag_ms"] == 1.5 and shards[shard]["inc"] == f"inc-{shard}"
        assert shards[shard]["leases"] == held[shard]
        assert 0 < shards[shard]["expires_in_ms"] <= 30_000
    assert sum(s["owner_of"] for s in shards.values()) == PARTITIONS
    (gateway,) = report["gateways"]
    assert gateway["id"] == "gw-1" and gateway["connections"] == 4
    parts = report["partitions"]
    assert parts["unleased"] == [5, 6, 7] and parts["moving"] == [100, 200]
    assert parts["unowned"] == [] and parts["stale_holders"] == []
    if redis_url.startswith("redis://"):
        assert report["redis"]["redis_version"] and "used_memory" in report["redis"]
    else:
        assert set(report["redis"]) == {"url"}


def test_status_table_is_readable(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_populate(redis_url, "st"))
    assert main(["status", "--redis-url", redis_url, "--prefix", "st"]) == 0
    out = capsys.readouterr().out
    assert "shards   2 live" in out and "gateways 1 live" in out
    header = next(line for line in out.splitlines() if line.strip().startswith("id ") and
                  "partitions" in line)
    assert header.split() == ["id", "state", "partitions", "leases", "subscriptions", "views",
                              "rows", "lag", "ms", "inc"]
    assert "partitions without a lease: 3 (5-7)" in out
    assert "partitions leased by another shard than their owner: 2 (100,200)" in out


def test_status_with_nothing_running_says_every_partition_lacks_an_owner(
    standalone_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--redis-url", standalone_url, "--prefix", "empty", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["shards"] == [] and report["gateways"] == []
    assert report["partitions"]["unowned"] == list(range(PARTITIONS))
    assert main(["status", "--redis-url", standalone_url, "--prefix", "empty"]) == 0
    assert "without an owner (no live shard): 256 (0-255)" in capsys.readouterr().out


def test_status_without_redis_fails_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert main(["status", "--redis-url", url]) == 1
    assert f"cannot read {url}" in capsys.readouterr().err


def test_ranges_compacts_partition_lists() -> None:
    assert ranges([]) == ""
    assert ranges([3]) == "3"
    assert ranges([7, 0, 1, 2, 9, 10]) == "0-2,7,9-10"


def test_the_operations_doc_shows_the_real_table_headers(
    standalone_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_populate(standalone_url, "doc"))
    assert main(["status", "--redis-url", standalone_url, "--prefix", "doc"]) == 0
    headers = [line.split() for line in capsys.readouterr().out.splitlines()
               if line.startswith("  id ")]
    assert len(headers) == 2
    doc = (Path(__file__).resolve().parent.parent / "docs" / "operations.md").read_text()
    shown = [line.split() for line in doc.splitlines() if line.startswith("  id ")]
    assert shown == headers
