"""Each reset reason produced by its cause, end to end (PROTOCOL.md section 3, "Reset
reasons"), through real gateway and shard processes on a real Redis, and counted by the
gateway's `lq_live_resets_total{reason}`.

| reason | its cause here |
|---|---|
| `subscribe` | a WebSocket subscribe |
| `reanchor` | a reanchor of that window |
| `resync` | the gateway's delta stream deleted under it |
| `failover` | the owner shard SIGKILLed (another claims), then back (it claims again) |
| `overflow` | a long-polling handle left unpolled past its bounded backlog |
| `resume_miss` | a WebSocket resume declaring rows out of order; an SSE `Last-Event-ID` |
|  | older than the stream's ring of events |
| `trimmed` | a shard paused (within its lease) while 1,000 writes go to a log kept to |
|  | about 100 entries |

`redis_restart` is produced in tests/test_live_resume_anywhere.py (a Redis restart
needs a Redis of its own). `reload` has no cause in the running system: see
docs/protocol.md. One cluster for the module, but for `trimmed` (a shard and a log
configured to fall behind). Each test counts the metric before and after its cause.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis
from lq_client.view import ViewState

from cluster.keys import Keys
from cluster.partition import owner, partition_of
from tests.gateway_helpers import auth, token
from tests.live_clients import SseReader, Ws, fresh, new_tenant, rows_of
from tests.live_cluster import LiveCluster
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.timeout(90)

Q = {"entity": "tasks", "sort": ["-p"], "limit": 5}
ADMIN = auth(token("ops", scope="lq:admin"))
SHARDS = ("shard-0", "shard-1")
SMALL = 1  # the gateway whose outbox (and so its SSE ring and poll backlog) holds 6


@pytest.fixture(scope="module")
def cluster(redis_standalone: RedisServer) -> Iterator[LiveCluster]:
    with LiveCluster(redis_standalone.url) as c:
        for shard_id in SHARDS:
            c.start_shard(shard_id)
        c.start_gateway()
        c.start_gateway(LQ_OUTBOX_MAX_MESSAGES="6")
        c.wait_ready()
        yield c


@pytest.fixture
async def http(cluster: LiveCluster) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=cluster.url(), timeout=30) as client:
        yield client


async def resets(http: httpx.AsyncClient, reason: str) -> float:
    """The gateway's `lq_live_resets_total{reason=...}` (0 before its first)."""
    text = (await http.get("/metrics")).text
    prefix = f'lq_live_resets_total{{reason="{reason}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return 0.0


def reasons(ws: Ws, sub: str) -> list[str]:
    return [m["reason"] for m in ws.deltas if m["sub"] == sub and m["op"] == "reset"]


async def write(http: httpx.AsyncClient, tok: str, n: int, base: int = 0) -> None:
    ops = [{"op": "put", "entity": "tasks", "id": f"r{i % 8}", "row": {"p": base + i}}
           for i in range(n)]
    r = await http.post("/v1/batch", json={"ops": ops}, headers=auth(tok))
    assert r.status_code == 200 and all(x["status"] == 200 for x in r.json()["results"])


async def test_subscribe_and_reanchor(cluster: LiveCluster, http: httpx.AsyncClient) -> None:
    tok = token(new_tenant())
    await write(http, tok, 8)
    before = {r: await resets(http, r) for r in ("subscribe", "reanchor")}
    ws = await Ws.connect(cluster.ws_url(), tok)
    try:
        view = await ws.subscribe("a", Q)
        await ws.send({"type": "reanchor", "sub": "a", "after": view.rows[1].cursor})
        await ws.settle(lambda: len(reasons(ws, "a")) == 2 and ws.views["a"].synced)
        assert reasons(ws, "a") == ["subscribe", "reanchor"]
        assert await resets(http, "subscribe") == before["subscribe"] + 1
        assert await resets(http, "reanchor") == before["reanchor"] + 1
    finally:
        await ws.close()


async def test_resync(cluster: LiveCluster, http: httpx.AsyncClient,
                      redis_standalone: RedisServer) -> None:
    tok = token(new_tenant())
    before = await resets(http, "resync")
    ws = await Ws.connect(cluster.ws_url(), tok)
    r = redis.Redis.from_url(redis_standalone.url)
    try:
        await ws.subscribe("a", Q)
        gateway_id = (await http.get("/v1/cluster", headers=ADMIN)).json()["gateway"]
        assert r.delete(Keys(cluster.prefix).delta(gateway_id)) == 1
        await ws.settle(lambda: len(reasons(ws, "a")) == 2)
        assert reasons(ws, "a") == ["subscribe", "resync"]
        assert await resets(http, "resync") == before + 1
        await write(http, tok, 3)
        await ws.converge(http, tok, "a", Q)
    finally:
        await ws.close()
        r.close()


async def test_failover(cluster: LiveCluster, http: httpx.AsyncClient) -> None:
    tenant = new_tenant()
    tok = token(tenant)
    await write(http, tok, 8)
    victim = owner(partition_of(tenant, "tasks"), list(SHARDS))
    assert victim is not None
    before = await resets(http, "failover")
    ws = await Ws.connect(cluster.ws_url(), tok)
    try:
        await ws.subscribe("a", Q)
        cluster.shards[victim].kill()
        await write(http, tok, 3, base=100)
        await ws.settle(lambda: len(reasons(ws, "a")) == 2, 15)
        await ws.converge(http, tok, "a", Q)
        cluster.start_shard(victim)  # back: it claims its partitions again (a rebalance)
        await ws.settle(lambda: len(reasons(ws, "a")) == 3, 15)
        assert reasons(ws, "a") == ["subscribe", "failover", "failover"]
        assert await resets(http, "failover") >= before + 2
        await write(http, tok, 3, base=200)
        await ws.converge(http, tok, "a", Q)
    finally:
        await ws.close()
        cluster.wait_ready()


async def test_overflow_of_a_poll_handle(cluster: LiveCluster) -> None:
    tok = token(new_tenant())
    async with httpx.AsyncClient(base_url=cluster.url(SMALL), timeout=30) as http:
        before = await resets(http, "overflow")
        view = ViewState(True, Q["limit"])  # type: ignore[arg-type]
        r = await http.get("/v1/poll", params={"q": json.dumps(Q), "wait": "5"},
                           headers=auth(tok))
        assert r.status_code == 200, r.text
        handle = r.json()["poll"]
        for m in r.json()["messages"]:
            view.apply(m)
        assert view.reason == "subscribe" and view.synced
        await write(http, tok, 30)  # 30 changes, a delta or two each: past the backlog of 6
        await asyncio.sleep(0.5)
        r = await http.get("/v1/poll", params={"poll": handle, "after": str(view.seq),
                                               "wait": "2"}, headers=auth(tok))
        assert r.status_code == 200, r.text
        for m in r.json()["messages"]:
            view.apply(m)
        assert view.reason == "overflow" and view.synced
        assert rows_of(view.current()) == await fresh(http, tok, Q)
        assert await resets(http, "overflow") == before + 1


async def test_resume_miss_over_websocket_and_sse(cluster: LiveCluster) -> None:
    tok = token(new_tenant())
    async with httpx.AsyncClient(base_url=cluster.url(SMALL), timeout=30) as http:
        await write(http, tok, 8)
        before = await resets(http, "resume_miss")
        ws = await Ws.connect(cluster.ws_url(SMALL), tok)
        try:
            (a, va, _), (b, vb, _) = (await fresh(http, tok, Q))[:2]
            ws.views["w"] = ViewState(True, Q["limit"])  # type: ignore[arg-type]
            await ws.send({"type": "subscribe", "sub": "w", "query": Q,
                           "resume": {"rows": [[b, vb], [a, va]]}})  # out of their order
            await ws.synced("w")
            assert reasons(ws, "w") == ["resume_miss"]
            assert rows_of(ws.views["w"].current()) == await fresh(http, tok, Q)
        finally:
            await ws.close()
        assert await resets(http, "resume_miss") == before + 1

        params = {"q": json.dumps(Q)}
        async with http.stream("GET", "/v1/sse", params=params, headers=auth(tok)) as r:
            sse = SseReader(r)
            first = await sse.next()
            while "id" not in first:  # `subscribed` has none
                first = await sse.next()
            assert json.loads(first["data"])["reason"] == "subscribe"
            for i in range(10):  # 7 events of the snapshot, then 10 or more
                await write(http, tok, 1, base=100 + i)
            event = first
            while int(event["id"].rsplit(".", 1)[1]) < 15:  # seq 1 is out of the ring of 6
                event = await sse.next()
        headers = {**auth(tok), "Last-Event-ID": first["id"]}
        async with http.stream("GET", "/v1/sse", params=params, headers=headers) as r:
            again: dict[str, Any] = json.loads((await SseReader(r).next())["data"])
        assert again["op"] == "reset" and again["reason"] == "resume_miss", again
        assert await resets(http, "resume_miss") == before + 2


async def test_trimmed(redis_standalone: RedisServer) -> None:
    """A change log kept to about 100 entries: a shard paused (SIGSTOP, well within its
    long lease) while 1,000 writes go to a partition finds its position trimmed away when
    it wakes, so it reloads the partition and resets its subscriptions with `trimmed`
    (never a silent gap). It reads one entry per turn, and more bursts follow at once, so
    its reload's own load may be trimmed again: the retried claim still says `trimmed`."""
    tok = token(new_tenant())
    small_log = {"LQ_LOG_MAXLEN": "100"}
    long_lease = {"LQ_MEMBER_TTL_MS": "10000", "LQ_LEASE_TTL_MS": "10000",
                  "LQ_LEASE_MARGIN_MS": "1000"}
    with LiveCluster(redis_standalone.url) as c:
        shard = c.start_shard("shard-0", LQ_TAIL_COUNT="1", **small_log, **long_lease)
        c.start_gateway(**small_log)
        c.wait_ready()
        async with httpx.AsyncClient(base_url=c.url(), timeout=30) as http:
            await write(http, tok, 8)
            before = await resets(http, "trimmed")
            ws = await Ws.connect(c.ws_url(), tok)
            try:
                await ws.subscribe("a", Q)
                shard.popen.send_signal(signal.SIGSTOP)
                try:
                    await write(http, tok, 1000, base=1000)
                finally:
                    shard.popen.send_signal(signal.SIGCONT)
                for burst in range(2, 4):
                    await write(http, tok, 1000, base=1000 * burst)
                await ws.converge(http, tok, "a", Q, timeout=30)
                await ws.settle(lambda: "trimmed" in reasons(ws, "a"), 10)
                assert reasons(ws, "a")[0] == "subscribe"
                assert set(reasons(ws, "a")[1:]) == {"trimmed"}, (reasons(ws, "a"), c.logs())
                assert await resets(http, "trimmed") == before + len(reasons(ws, "a")) - 1
            finally:
                await ws.close()
