"""End to end over `/v1/ws` with real shard and gateway processes on a real Redis.

Every delta is applied and checked by `ViewState` (seq +1, reset first, indexes, limit,
versions), and after every write the list must equal a fresh query over HTTP.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Any

import httpx
import pytest
import redis
from lq_client.view import ViewState

from cluster.keys import Keys
from cluster.partition import partition_of
from tests.gateway_helpers import auth, token
from tests.live_clients import Ws, fresh, new_tenant, rows_of, wait_for
from tests.live_cluster import LiveCluster
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.timeout(90)

QUERY = {"entity": "tasks", "where": {"status": "open"}, "sort": ["-priority"], "limit": 5}


@pytest.fixture(scope="module")
def cluster(redis_standalone: RedisServer) -> Iterator[LiveCluster]:
    with LiveCluster(redis_standalone.url) as c:
        c.start_shard("shard-0")
        c.start_shard("shard-1")
        c.start_gateway()
        c.wait_ready()
        yield c


@pytest.fixture
async def http(cluster: LiveCluster) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=cluster.url(), timeout=10) as client:
        yield client


async def _write(http: httpx.AsyncClient, tok: str, rnd: random.Random, ids: list[str]) -> None:
    rid = rnd.choice(ids)
    roll = rnd.random()
    path = f"/v1/entities/tasks/rows/{rid}"
    if roll < 0.15:
        r = await http.delete(path, headers=auth(tok))
        assert r.status_code in (200, 404)
    elif roll < 0.35:
        r = await http.patch(path, json={"priority": rnd.randint(0, 9)}, headers=auth(tok))
        assert r.status_code in (200, 404)
    else:
        row = {"status": rnd.choice(["open", "open", "done"]), "priority": rnd.randint(0, 9),
               "title": f"task {rid}"}
        r = await http.put(path, json=row, headers=auth(tok))
        assert r.status_code == 200, r.text


async def test_window_equals_a_fresh_query_after_every_write(
    cluster: LiveCluster, http: httpx.AsyncClient
) -> None:
    tok = token(new_tenant())
    rnd = random.Random(7)
    ids = [f"r{i}" for i in range(12)]
    for _ in range(8):
        await _write(http, tok, rnd, ids)
    ws = await Ws.connect(cluster.ws_url(), tok)
    try:
        await ws.subscribe("a", QUERY)
        await ws.converge(http, tok, "a", QUERY)
        for _ in range(40):
            await _write(http, tok, rnd, ids)
            await ws.converge(http, tok, "a", QUERY)
        assert ws.views["a"].seq == ws.deltas[-1]["seq"]
    finally:
        await ws.close()


def _equal(view: ViewState, expected: list[tuple[str, int, Any]]) -> bool:
    return sorted(rows_of(view.current())) == expected


async def test_changes_mode_follows_the_matching_set(
    cluster: LiveCluster, http: httpx.AsyncClient
) -> None:
    tok = token(new_tenant())
    rnd = random.Random(11)
    ids = [f"r{i}" for i in range(10)]
    query = {"entity": "tasks", "where": {"status": "open"}, "mode": "changes"}
    ws = await Ws.connect(cluster.ws_url(), tok)
    try:
        view = await ws.subscribe("c", query)
        for _ in range(25):
            await _write(http, tok, rnd, ids)
            want = await fresh(http, tok, {"entity": "tasks", "where": {"status": "open"},
                                           "limit": 1000})
            expected = sorted(want)
            await ws.settle(partial(_equal, view, expected))
    finally:
        await ws.close()


async def test_several_subscriptions_share_one_socket(
    cluster: LiveCluster, http: httpx.AsyncClient
) -> None:
    tok = token(new_tenant())
    queries = {
        "top": QUERY,
        "low": {"entity": "tasks", "sort": ["priority"], "limit": 3},
        "notes": {"entity": "notes", "limit": 4},
    }
    ws = await Ws.connect(cluster.ws_url(), tok)
    try:
        for sub, q in queries.items():
            await ws.subscribe(sub, q)
        rnd = random.Random(3)
        for i in range(15):
            await _write(http, tok, rnd, [f"r{k}" for k in range(8)])
            await http.put(f"/v1/entities/notes/rows/n{i % 6}", json={"i": i}, headers=auth(tok))
            for sub, q in queries.items():
                await ws.converge(http, tok, sub, q)
        subs = {m["sub"] for m in ws.deltas}
        assert subs == set(queries)
    finally:
        await ws.close()


async def test_reanchor_slides_the_window_and_seq_goes_on(
    cluster: LiveCluster, http: httpx.AsyncClient
) -> None:
    tok = token(new_tenant())
    for i in range(10):
        await http.put(f"/v1/entities/tasks/rows/r{i}", json={"status": "open", "priority": i},
                       headers=auth(tok))
    ws = await Ws.connect(cluster.ws_url(), tok)
    try:
        view = await ws.subscribe("a", QUERY)
        seq = view.seq
        cursor = view.current()[-1].cursor
        await ws.send({"type": "reanchor", "sub": "a", "after": cursor, "limit": 3})
        page2 = {**QUERY, "after": cursor, "limit": 3}
        await ws.settle(lambda: view.synced and view.seq > seq)
        assert [r.id for r in view.current()] == ["r4", "r3", "r2"]
        await ws.converge(http, tok, "a", page2)
        await http.put("/v1/entities/tasks/rows/r3", json={"status": "done"}, headers=auth(tok))
        await ws.converge(http, tok, "a", page2)
        # a bad cursor is refused and the window stays
        await ws.send({"type": "reanchor", "sub": "a", "after": "not-a-cursor"})
        error = await ws.error("a")
        assert error["code"] == "invalid_query" and "after" in error["message"]
        await http.put("/v1/entities/tasks/rows/r1", json={"status": "open", "priority": 1.5},
                       headers=auth(tok))
        await ws.converge(http, tok, "a", page2)
        await ws.send({"type": "reanchor", "sub": "a", "after": None})
        top = {**QUERY, "limit": 3}
        await ws.converge(http, tok, "a", top)
        assert [r.id for r in view.current()] == ["r9", "r8", "r7"]
    finally:
        await ws.close()


async def test_unsubscribe_stops_deltas_and_removes_the_registration(
    cluster: LiveCluster, http: httpx.AsyncClient, redis_standalone: RedisServer
) -> None:
    tenant = new_tenant()
    tok = token(tenant)
    ws = await Ws.connect(cluster.ws_url(), tok)
    keys = Keys(cluster.prefix)
    subs_key = keys.subs(partition_of(tenant, "tasks"))
    r = redis.Redis.from_url(redis_standalone.url)
    try:
        await ws.subscribe("a", QUERY)
        await ws.subscribe("b", QUERY)
        assert r.hlen(subs_key) == 2
        await ws.send({"type": "unsubscribe", "sub": "a"})
        assert (await ws.until(lambda m: m["type"] == "unsubscribed"))["sub"] == "a"
        assert r.hlen(subs_key) == 1
        before = len([m for m in ws.deltas if m["sub"] == "a"])
        await http.put("/v1/entities/tasks/rows/x", json={"status": "open", "priority": 9},
                       headers=auth(tok))
        await ws.converge(http, tok, "b", QUERY)
        assert len([m for m in ws.deltas if m["sub"] == "a"]) == before
        await ws.send({"type": "subscribe", "sub": "a", "query": QUERY})  # the name is free
        await ws.until(lambda m: m["type"] == "subscribed")
    finally:
        await ws.close()
    await wait_for(lambda: r.hlen(subs_key) == 0)  # closing the socket ends the rest
    r.close()


async def test_ping_auth_by_first_message_and_refresh(cluster: LiveCluster) -> None:
    tenant = new_tenant()
    ws = await Ws.connect(cluster.ws_url())
    try:
        await ws.send({"type": "ping", "t": 123})
        assert await ws.until(lambda m: m["type"] == "pong") == {"type": "pong", "t": 123}
        await ws.send({"type": "subscribe", "sub": "a", "query": QUERY})
        assert (await ws.error("a"))["code"] == "unauthorized"
        await ws.send({"type": "auth", "token": token(tenant)})
        assert await ws.until(lambda m: m["type"] == "ready") == {"type": "ready",
                                                                  "tenant": tenant}
        await ws.subscribe("a", QUERY)
        await ws.send({"type": "auth", "token": token(tenant, ttl=600)})
        await ws.until(lambda m: m["type"] == "ready")
        await ws.send({"type": "auth", "token": token("other")})
        assert (await ws.error())["code"] == "forbidden"
        await ws.send({"type": "auth", "token": token(tenant, scope="lq:read:notes")})
        await ws.until(lambda m: m["type"] == "ready")
        lost = await ws.error("a")
        assert lost["code"] == "forbidden" and "lq:read:tasks" in lost["message"]
    finally:
        await ws.close()


async def test_token_by_query_parameter_and_expiry_closes_4401(cluster: LiveCluster) -> None:
    ws = await Ws.connect(cluster.ws_url(), token(new_tenant(), ttl=2), query_token=True)
    await ws.until(lambda m: m["type"] == "ready")
    await ws.subscribe("a", QUERY)
    error = await ws.error(timeout=6)
    assert error["code"] == "unauthorized" and "expired" in error["message"]
    await ws.ws.wait_closed()
    assert ws.ws.close_code == 4401


async def test_frames_batch_several_messages(
    cluster: LiveCluster, http: httpx.AsyncClient
) -> None:
    tok = token(new_tenant())
    ops: list[dict[str, Any]] = [
        {"op": "put", "entity": "tasks", "id": f"r{i}", "row": {"status": "open", "priority": i}}
        for i in range(20)
    ]
    await http.post("/v1/batch", json={"ops": ops}, headers=auth(tok))
    ws = await Ws.connect(cluster.ws_url(), tok)
    try:
        await ws.send({"type": "subscribe", "sub": "a", "query": QUERY})
        frames: list[list[dict[str, Any]]] = []
        while not any(m.get("op") == "synced" for f in frames for m in f):
            frames.append(await ws.read())
        assert any(len(f) > 1 for f in frames)  # the snapshot came as JSON arrays
        await asyncio.sleep(0)
    finally:
        await ws.close()
