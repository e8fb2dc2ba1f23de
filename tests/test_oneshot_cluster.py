"""One-shot queries answered by the owner shard's memory, through real processes.

A shard holding the collection (a subscription loaded it) answers `POST .../query`:
the gateway's `lq_oneshot_queries` metric counts memory answers, a write acknowledged
just before a query is in its answer (read-your-writes), and the very same requests
answered by the scan after the shard is killed give the same bytes (rows, versions,
values, order, cursors, `next`), counted as fallbacks or scans.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.gateway_helpers import auth, token
from tests.live_clients import Ws, new_tenant
from tests.live_cluster import LiveCluster
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.timeout(90)

ENTITY = "items"
QUERIES: list[dict[str, Any]] = [
    {"sort": ["n"], "limit": 7},
    {"sort": ["n"], "limit": 50},
    {"where": {"g": "a"}, "sort": ["n"], "limit": 9},
    {"where": {"n": {"$gte": 10, "$lt": 40}}, "sort": ["n"], "limit": 6},
    {"where": {"$or": [{"g": "b"}, {"n": {"$lt": 5}}]}, "sort": ["-g", "n"], "limit": 8},
    {"sort": [], "limit": 11},  # no index for this sort: 300 rows are sorted whole
]


@pytest.fixture
def cluster(redis_standalone: RedisServer) -> Iterator[LiveCluster]:
    with LiveCluster(redis_standalone.url) as c:
        c.start_shard("shard-0")
        c.start_gateway()
        c.wait_ready()
        yield c


def counted(http: httpx.Client) -> dict[str, float]:
    """`lq_oneshot_queries_total` by path."""
    out: dict[str, float] = {}
    for path, value in re.findall(
        r'^lq_oneshot_queries_total\{path="(\w+)",reason="\w*"\} (\S+)$',
        http.get("/metrics").text, re.M,
    ):
        out[path] = out.get(path, 0.0) + float(value)
    return out


def pages(http: httpx.Client, tok: str, query: dict[str, Any]) -> list[bytes]:
    """Every page of `query`, following `next`: the answers' bytes."""
    out: list[bytes] = []
    after = None
    while True:
        r = http.post(f"/v1/entities/{ENTITY}/query", json={**query, "after": after},
                      headers=auth(tok))
        assert r.status_code == 200, r.text
        out.append(r.content)
        after = r.json()["next"]
        if after is None or len(out) > 60:
            return out


async def test_memory_answers_equal_the_scan_and_fall_back(cluster: LiveCluster) -> None:
    tenant = new_tenant()
    tok = token(tenant)
    rng = random.Random(16)
    ops = [{"op": "put", "entity": ENTITY, "id": f"r{i:03d}",
            "row": {"n": rng.randint(0, 60), "g": rng.choice("abc")}} for i in range(300)]
    ws = await Ws.connect(cluster.ws_url(), tok)
    with httpx.Client(base_url=cluster.url(), timeout=10) as http:
        assert http.post("/v1/batch", json={"ops": ops}, headers=auth(tok)).status_code == 200
        # the subscriptions load the collection and its indexes on the owner shard
        await ws.subscribe("s1", {"entity": ENTITY, "sort": ["n"], "limit": 3})
        await ws.subscribe("s2", {"entity": ENTITY, "sort": ["-g", "n"], "limit": 3})

        before = counted(http)
        from_memory = [pages(http, tok, q) for q in QUERIES]
        asked = sum(len(p) for p in from_memory)
        after = counted(http)
        assert after.get("memory", 0) - before.get("memory", 0) == asked, (before, after)

        # read-your-writes: a write acknowledged just before the query is in its answer
        for i in range(20):
            r = http.put(f"/v1/entities/{ENTITY}/rows/new{i}", json={"n": -1 - i, "g": "z"},
                         headers=auth(tok))
            assert r.status_code == 200
            first = http.post(f"/v1/entities/{ENTITY}/query", json={"sort": ["n"], "limit": 1},
                              headers=auth(tok)).json()["rows"][0]
            assert (first["id"], first["version"]) == (f"new{i}", r.json()["version"])
        assert counted(http).get("memory", 0) - after.get("memory", 0) == 20
        for i in range(20):
            http.delete(f"/v1/entities/{ENTITY}/rows/new{i}", headers=auth(tok))

        await ws.close()
        cluster.shards["shard-0"].kill()
        scanned = [pages(http, tok, q) for q in QUERIES]
        assert scanned == from_memory
        final = counted(http)
        assert final.get("memory", 0) - after.get("memory", 0) == 20  # none since the kill
        assert final.get("fallback", 0) + final.get("scan", 0) >= asked
