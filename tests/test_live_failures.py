"""Failures seen from the clients: a slow consumer, a lost delta stream, a frame gap, a
killed shard, a killed gateway, and a drained one. Real processes, real Redis.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis
from lq_client import LiveClient

from cluster.keys import Keys
from cluster.partition import owner, partition_of
from tests.gateway_helpers import auth, token
from tests.live_clients import Ws, new_tenant, rows_of, wait_for
from tests.live_cluster import LiveCluster
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.timeout(90)

Q = {"entity": "tasks", "sort": ["-p"], "limit": 20}
ADMIN = auth(token("ops", scope="lq:admin"))


@pytest.fixture(scope="module")
def cluster(redis_standalone: RedisServer) -> Iterator[LiveCluster]:
    with LiveCluster(redis_standalone.url) as c:
        c.start_shard("shard-0")
        c.start_gateway()
        c.start_gateway(LQ_OUTBOX_MAX_MESSAGES="200", LQ_OUTBOX_MAX_BYTES="262144")
        c.wait_ready()
        yield c


@pytest.fixture
async def http(cluster: LiveCluster) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=cluster.url(), timeout=30) as client:
        yield client


def _resets(ws: Ws, sub: str) -> int:
    return sum(1 for m in ws.deltas if m["sub"] == sub and m["op"] == "reset")


def _reasons(ws: Ws, sub: str) -> list[str]:
    """The reasons of `sub`'s resets, in order."""
    return [m["reason"] for m in ws.deltas if m["sub"] == sub and m["op"] == "reset"]


async def _metric(http: httpx.AsyncClient, name: str) -> float:
    text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "_total "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


async def test_a_slow_consumer_gets_a_reset_and_the_right_window(
    cluster: LiveCluster, http: httpx.AsyncClient
) -> None:
    tok = token(new_tenant())
    pad = "x" * 900
    ops: list[dict[str, Any]] = [
        {"op": "put", "entity": "tasks", "id": f"r{i}", "row": {"p": i, "pad": pad}}
        for i in range(20)
    ]
    await http.post("/v1/batch", json={"ops": ops}, headers=auth(tok))
    gateway = cluster.gateways[1]  # an outbox of 200 messages / 256 KiB
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gateway.port))
    ws = await Ws.connect(cluster.ws_url(1), tok, sock=sock, max_queue=2)
    slow = httpx.AsyncClient(base_url=cluster.url(1), timeout=30)
    try:
        await ws.subscribe("a", Q)
        rss_before = gateway.rss_kib()
        overflows = await _metric(slow, "lq_live_overflows")
        for batch in range(10):  # 10,000 writes, each one delta, while the client reads nothing
            ops = [{"op": "put", "entity": "tasks", "id": f"r{(batch * 1000 + i) % 20}",
                    "row": {"p": batch * 1000 + i, "pad": pad}} for i in range(1000)]
            r = await http.post("/v1/batch", json={"ops": ops}, headers=auth(tok))
            assert r.status_code == 200
        await asyncio.sleep(2)  # let the shard and the gateway work through it all
        grown = gateway.rss_kib() - rss_before
        assert grown < 60_000, f"the gateway grew by {grown} KiB"
        assert await _metric(slow, "lq_live_overflows") > overflows
        await ws.converge(http, tok, "a", Q, timeout=30)
        assert _resets(ws, "a") >= 2  # the caught-up client got a reset, then the window
        reasons = _reasons(ws, "a")
        assert reasons[0] == "subscribe" and "overflow" in reasons[1:], reasons
        assert await _metric(slow, 'lq_live_resets_total{reason="overflow"}') >= 1
        assert len(ws.deltas) < 10_000
    finally:
        await ws.close()
        await slow.aclose()


async def test_a_lost_delta_stream_resyncs_everything(
    cluster: LiveCluster, http: httpx.AsyncClient, redis_standalone: RedisServer
) -> None:
    tok = token(new_tenant())
    ws = await Ws.connect(cluster.ws_url(), tok)
    r = redis.Redis.from_url(redis_standalone.url)
    try:
        await ws.subscribe("a", Q)
        gateway_id = (await http.get("/v1/cluster", headers=ADMIN)).json()["gateway"]
        assert r.delete(Keys(cluster.prefix).delta(gateway_id)) == 1
        await ws.settle(lambda: _resets(ws, "a") == 2)
        assert _reasons(ws, "a") == ["subscribe", "resync"]
        await http.put("/v1/entities/tasks/rows/after", json={"p": 1}, headers=auth(tok))
        await ws.converge(http, tok, "a", Q)
    finally:
        await ws.close()
        r.close()


async def test_a_gap_in_a_shards_frames_resyncs_its_subscriptions(
    cluster: LiveCluster, http: httpx.AsyncClient, redis_standalone: RedisServer
) -> None:
    tok = token(new_tenant())
    ws = await Ws.connect(cluster.ws_url(), tok)
    r = redis.Redis.from_url(redis_standalone.url)
    try:
        await ws.subscribe("a", Q)
        view = (await http.get("/v1/cluster", headers=ADMIN)).json()
        inc = view["shards"][0]["inc"]
        fields = {"shard": "shard-0", "inc": inc, "n": 10**9, "p": 0, "epoch": 1}
        r.xadd(Keys(cluster.prefix).delta(view["gateway"]), fields)  # type: ignore[arg-type]
        await ws.settle(lambda: _resets(ws, "a") == 2)
        assert _reasons(ws, "a") == ["subscribe", "resync"]
        assert await _metric(http, 'lq_live_resets_total{reason="resync"}') >= 1
        await http.put("/v1/entities/tasks/rows/after", json={"p": 1}, headers=auth(tok))
        await ws.converge(http, tok, "a", Q)
    finally:
        await ws.close()
        r.close()


async def test_a_killed_shard_fails_over_with_a_reset(redis_standalone: RedisServer) -> None:
    tenant = new_tenant()
    tok = token(tenant)
    with LiveCluster(redis_standalone.url) as c:
        c.start_shard("shard-0")
        c.start_shard("shard-1")
        c.start_gateway()
        c.wait_ready()
        async with httpx.AsyncClient(base_url=c.url(), timeout=10) as http:
            for i in range(5):
                await http.put(f"/v1/entities/tasks/rows/r{i}", json={"p": i}, headers=auth(tok))
            ws = await Ws.connect(c.ws_url(), tok)
            try:
                await ws.subscribe("a", Q)
                victim = owner(partition_of(tenant, "tasks"), ["shard-0", "shard-1"])
                assert victim is not None
                c.shards[victim].kill()
                await http.put("/v1/entities/tasks/rows/new", json={"p": 99}, headers=auth(tok))
                await ws.settle(lambda: _resets(ws, "a") == 2, timeout=15)
                await ws.converge(http, tok, "a", Q)
                c.start_shard(victim)  # it comes back and takes its partitions again
                await ws.settle(lambda: _resets(ws, "a") == 3, timeout=15)
                assert _reasons(ws, "a") == ["subscribe", "failover", "failover"]
                await http.put("/v1/entities/tasks/rows/r0", json={"p": 100}, headers=auth(tok))
                await ws.converge(http, tok, "a", Q)
            finally:
                await ws.close()


async def test_a_killed_gateways_clients_move_to_another(redis_standalone: RedisServer) -> None:
    tok = token(new_tenant())
    with LiveCluster(redis_standalone.url) as c:
        c.start_shard("shard-0")
        c.start_gateway()
        c.start_gateway()
        c.wait_ready()
        keys = Keys(c.prefix)
        r = redis.Redis.from_url(redis_standalone.url)
        async with httpx.AsyncClient(base_url=c.url(), timeout=10) as http:
            gone = (await http.get("/v1/cluster", headers=ADMIN)).json()["gateway"]
        async with LiveClient([c.url(0), c.url(1)], tok, backoff=(0.05, 0.5)) as lq:
            views = [await lq.subscribe(Q), await lq.subscribe({**Q, "limit": 2})]
            assert r.scard(keys.gwsubs(gone)) == 2
            c.gateways[0].kill()
            await lq.put("tasks", "x", {"p": 1})
            for view in views:
                deadline = time.monotonic() + 15
                while not (view.synced and rows_of(view.rows) == rows_of_page(
                        await lq.query("tasks", sort=["-p"], limit=view.query["limit"]))):
                    assert time.monotonic() < deadline, "did not converge on the other gateway"
                    await asyncio.sleep(0.05)
            assert lq.connects == 2
            # the shards' hygiene drops the dead gateway's registrations after its grace
            await wait_for(lambda: r.exists(keys.gwsubs(gone)) == 0, timeout=15)
            p = partition_of(lq_tenant(tok), "tasks")
            regs = [orjson.loads(v)["g"] for v in r.hvals(keys.subs(p))]
            assert gone not in regs and len(regs) == 2
        r.close()


def rows_of_page(page: dict[str, Any]) -> list[tuple[str, int, Any]]:
    return [(x["id"], x["version"], x["row"]) for x in page["rows"]]


def lq_tenant(tok: str) -> str:
    import jwt

    return str(jwt.decode(tok, options={"verify_signature": False})["tenant"])


async def test_sigterm_drains_the_gateway(redis_standalone: RedisServer) -> None:
    tok = token(new_tenant())
    with LiveCluster(redis_standalone.url) as c:
        c.start_shard("shard-0")
        c.start_gateway()
        c.wait_ready()
        keys = Keys(c.prefix)
        r = redis.Redis.from_url(redis_standalone.url)
        async with httpx.AsyncClient(base_url=c.url(), timeout=10) as http:
            gateway_id = (await http.get("/v1/cluster", headers=ADMIN)).json()["gateway"]
            ws = await Ws.connect(c.ws_url(), tok)
            await ws.subscribe("a", Q)
            async with http.stream("GET", "/v1/sse", params={"q": orjson.dumps(Q).decode()},
                                   headers=auth(tok)) as sse:
                lines = sse.aiter_lines()
                assert await anext(lines) is not None
                assert r.scard(keys.gwsubs(gateway_id)) == 2
                started = time.monotonic()
                c.gateways[0].popen.terminate()
                await ws.ws.wait_closed()
                assert ws.ws.close_code == 1001
                async for _ in lines:  # the stream ends
                    pass
            code = c.gateways[0].popen.wait(15)
            assert time.monotonic() - started < 8 and code in (0, -15)
            assert r.exists(keys.gwsubs(gateway_id)) == 0
            assert r.zscore(keys.gateways(), gateway_id) is None
            p = partition_of(lq_tenant(tok), "tasks")
            assert r.hlen(keys.subs(p)) == 0
        r.close()
