"""State-diff resume anywhere (issue 15), on real shard and gateway processes.

A 1,000-row window is held by the Python client (`lq_client`) and, where the test can
cut a connection on purpose, by a raw WebSocket client declaring its rows; while it is
away something fails and 3 rows change; when it is back, on another gateway, on the
same gateway restarted (same port), after the owner shard was SIGKILLed and another
claimed, or after a Redis restart (AOF on, the same data comes back):
- the first message of the subscription is `resume` and no `reset` follows;
- the list equals a fresh query over HTTP;
- the `synced` digest equals one computed here with hashlib from PROTOCOL.md's text;
- the messages sent are O(difference): `resume`, at most one op per changed row, `synced`.
One cluster for the module (its own Redis, with AOF, since one test restarts it); each
test heals what it broke (`healed`) before the next one starts.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import websockets
from lq_client import LiveClient
from lq_client.live_view import LiveView
from lq_client.view import ViewState

from cluster.partition import owner, partition_of
from tests.gateway_helpers import auth, token
from tests.live_clients import Ws, fresh, new_tenant, rows_of, wait_for
from tests.live_cluster import LiveCluster
from tests.redis_servers import LocalRedisServer, start_standalone
from tests.resume_helpers import BIG, change, load, sha, until_synced

pytestmark = pytest.mark.timeout(120)

SHARDS = ("shard-0", "shard-1")
CHANGED = 3
# the default heartbeat and TTLs: a Redis restart is noticed by a shard's ownership pass
# up to a second later (the short heartbeats of LiveCluster would hide a subscribe
# answered before that)
DEFAULT_TIMING = {"LQ_HEARTBEAT_MS": "1000", "LQ_MEMBER_TTL_MS": "3000",
                  "LQ_LEASE_TTL_MS": "3000", "LQ_LEASE_MARGIN_MS": "500"}


@pytest.fixture(scope="module")
def aof_redis() -> Iterator[LocalRedisServer]:
    server = start_standalone(appendonly=True, prefer_docker=False)
    assert isinstance(server, LocalRedisServer)  # restarted on the same port and data
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster(aof_redis: LocalRedisServer) -> Iterator[LiveCluster]:
    with LiveCluster(aof_redis.url) as c:
        for shard_id in SHARDS:
            c.start_shard(shard_id, **DEFAULT_TIMING)
        c.start_gateway()
        c.start_gateway()
        c.wait_ready()
        yield c


@pytest.fixture
def healed(cluster: LiveCluster) -> Iterator[LiveCluster]:
    """The module's cluster; afterwards every process a test killed runs again."""
    yield cluster
    for i, gateway in enumerate(cluster.gateways):
        if not gateway.alive():
            cluster.restart_gateway(i)
    restarted = [cluster.start_shard(s, **DEFAULT_TIMING)
                 for s, p in list(cluster.shards.items()) if not p.alive()]
    if restarted:
        cluster.wait_settled()
    cluster.wait_ready()


@pytest.fixture
async def http(healed: LiveCluster) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=healed.url(1), timeout=30) as client:
        yield client


def drain(view: LiveView) -> list[dict[str, Any]]:
    """The messages applied to `view` since the last drain."""
    out = []
    while not view.changes.empty():
        item = view.changes.get_nowait()
        if isinstance(item, dict):
            out.append(item)
    return out


async def hold(lq: LiveClient) -> LiveView:
    """The Python client's 1,000-row window, held and synced."""
    view = await lq.subscribe(BIG, wait=30)
    assert view.reason == "subscribe" and len(view.rows) == 1000
    drain(view)
    return view


async def held_raw(c: LiveCluster, gateway: int, tok: str) -> ViewState:
    """A raw WebSocket client's synced window, its connection closed again."""
    async with websockets.connect(c.ws_url(gateway), additional_headers=auth(tok),
                                  max_size=None) as ws:
        await ws.send(json.dumps({"type": "subscribe", "sub": "w", "query": BIG}))
        state = ViewState(True, 1000)
        await until_synced(ws, "w", state)
    assert state.reason == "subscribe" and len(state.rows) == 1000
    return state


def ops_ok(ops: list[str]) -> None:
    """A resume of CHANGED rows: `resume`, at most one op per row, `synced`; no reset."""
    assert ops[0] == "resume" and ops[-1] == "synced", ops
    assert "reset" not in ops and len(ops) <= CHANGED + 2, ops


async def resumed(view: LiveView, http: httpx.AsyncClient, tok: str) -> None:
    """The Python client's view came back by a resume: see the module docstring."""

    async def converged() -> bool:
        return view.synced and rows_of(view.rows) == await fresh(http, tok, BIG)

    await wait_for(converged, timeout=30)
    got = drain(view)
    ops_ok([m["op"] for m in got])
    assert view.resumes == 1 and view.resume_misses == 0 and view.restarts == 0
    assert view.reason == "subscribe"  # no reset since the first one
    want = [(i, v) for i, v, _ in await fresh(http, tok, BIG)]
    assert got[-1]["digest"] == sha(want) == view.state.digest()


async def resume_raw(c: LiveCluster, gateway: int, tok: str, state: ViewState,
                     http: httpx.AsyncClient) -> None:
    """The raw client declares its rows on `gateway`: a resume, then the fresh window."""
    state.restart()
    declared = [[r.id, r.version] for r in state.rows]
    async with websockets.connect(c.ws_url(gateway), additional_headers=auth(tok),
                                  max_size=None) as ws:
        await ws.send(json.dumps({"type": "subscribe", "sub": "w", "query": BIG,
                                  "resume": {"rows": declared}}))
        got, _ = await until_synced(ws, "w", state)
    ops_ok([m["op"] for m in got])
    assert got[0] == {**got[0], "seq": 1, "count": 1000}
    want = await fresh(http, tok, BIG)
    assert rows_of(state.rows) == want
    assert got[-1]["digest"] == sha([(i, v) for i, v, _ in want])


async def test_on_another_gateway_after_a_kill(healed: LiveCluster,
                                               http: httpx.AsyncClient) -> None:
    c, tok = healed, token(new_tenant())
    await load(http, tok, 1200)
    async with LiveClient([c.url(0), c.url(1)], tok, backoff=(0.05, 0.5)) as lq:
        view = await hold(lq)
        c.gateways[0].kill()
        await change(http, tok, CHANGED)
        await resumed(view, http, tok)
        assert lq.connects == 2


async def test_on_the_same_gateway_restarted(healed: LiveCluster,
                                             http: httpx.AsyncClient) -> None:
    c, tok = healed, token(new_tenant())
    await load(http, tok, 1200)
    raw = await held_raw(c, 0, tok)
    async with LiveClient([c.url(0)], tok, backoff=(0.05, 0.5)) as lq:
        view = await hold(lq)
        c.gateways[0].kill()
        await change(http, tok, CHANGED)
        c.restart_gateway(0)  # the same port, a new gateway id
        await resumed(view, http, tok)
        assert lq.connects == 2
    c.wait_ready()
    await resume_raw(c, 0, tok, raw, http)


async def test_after_a_shard_failover(healed: LiveCluster, http: httpx.AsyncClient) -> None:
    """A node with a gateway and the owner shard dies; the other shard claims."""
    c, tenant = healed, new_tenant()
    tok = token(tenant)
    victim = owner(partition_of(tenant, "tasks"), list(SHARDS))
    assert victim is not None
    await load(http, tok, 1200)
    raw = await held_raw(c, 1, tok)
    async with LiveClient([c.url(0), c.url(1)], tok, backoff=(0.05, 0.5)) as lq:
        view = await hold(lq)
        c.gateways[0].kill()
        c.shards[victim].kill()
        await change(http, tok, CHANGED)
        await resume_raw(c, 1, tok, raw, http)  # at once: the claim may not be done yet
        await resumed(view, http, tok)
    assert not c.shards[victim].alive()


async def test_after_a_redis_restart(healed: LiveCluster, http: httpx.AsyncClient,
                                     aof_redis: LocalRedisServer) -> None:
    """Redis restarts (AOF on) while the clients are away: the shards re-claim every
    partition (a client that stayed connected gets `reset` with reason
    `redis_restart`), and the clients that come back resume without one: also the raw
    client that resubscribes as soon as the gateway reaches Redis again, before the
    shards' next heartbeat would notice the restart (the shard checks Redis's run id
    before it serves a subscribe, so it is not answered from the old server's state
    and then reset again)."""
    c, tok = healed, token(new_tenant())
    await load(http, tok, 1200)
    raw = await held_raw(c, 1, tok)
    stayed = await Ws.connect(c.ws_url(1), tok, max_size=None)
    async with LiveClient([c.url(0)], tok, backoff=(0.05, 0.5)) as lq:
        view = await hold(lq)
        await stayed.subscribe("s", {**BIG, "limit": 5})
        c.gateways[0].kill()
        await change(http, tok, CHANGED)
        aof_redis.restart()
        await wait_for(lambda: _ready(http), timeout=15)  # the gateway reaches Redis
        back = await Ws.connect(c.ws_url(1), tok, max_size=None)
        raw.restart()
        back.views["w"] = raw
        await back.send({"type": "subscribe", "sub": "w", "query": BIG,
                         "resume": {"rows": [[r.id, r.version] for r in raw.rows]}})
        await back.synced("w", 15)
        c.restart_gateway(0)
        await resumed(view, http, tok)
        # the shards noticed the restart and re-claimed: a client that stayed was reset
        await stayed.settle(lambda: stayed.views["s"].reason == "redis_restart", 15)
        await read_for(back, 1.0)  # a reset of the resumed list would come by now
        ops_ok([m["op"] for m in back.deltas])
        want = await fresh(http, tok, BIG)
        assert rows_of(raw.rows) == want and raw.reason == "subscribe"
        assert back.deltas[-1]["digest"] == sha([(i, v) for i, v, _ in want])
        assert [m["op"] for m in drain(view)] == []  # nor the Python client, since
        assert view.reason == "subscribe" and view.resumes == 1
    metrics = (await http.get("/metrics")).text
    assert 'lq_live_resets_total{reason="redis_restart"}' in metrics
    await stayed.close()
    await back.close()


async def read_for(ws: Ws, seconds: float) -> None:
    """Read (and apply) what `ws` receives for `seconds`."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            await ws.read(min(left, 0.2))
        except TimeoutError:
            pass


async def _ready(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/readyz")).status_code == 200
    except httpx.HTTPError:
        return False
