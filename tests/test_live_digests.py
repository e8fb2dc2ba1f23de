"""Window digests, `check` messages and reset reasons end to end (issue 15).

Real processes, real Redis. The digest is recomputed here by an implementation of the
test's own (hashlib over the text PROTOCOL.md section 3 specifies), never with the
client's `digest`, and compared with what the gateway sends over WebSocket, SSE and long
polling: an empty window, a full one, after moves, after a reanchor. A list that a
client lets diverge (the test mutates it) is caught by the next `check` and repaired by
a resubscribe.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from lq_client import LiveClient
from lq_client.view import Row

from tests.gateway_helpers import auth, token
from tests.live_clients import SseReader, Ws, fresh, new_tenant, rows_of
from tests.live_cluster import LiveCluster
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.timeout(60)

Q = {"entity": "tasks", "sort": ["-p"], "limit": 4}


def sha(pairs: list[tuple[str, int]]) -> str:
    text = "".join(f"{rid}\n{version}\n" for rid, version in pairs)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@pytest.fixture(scope="module")
def cluster(redis_standalone: RedisServer) -> Iterator[LiveCluster]:
    with LiveCluster(redis_standalone.url) as c:
        c.start_shard("shard-0")
        c.start_gateway()
        c.wait_ready()
        yield c


@pytest.fixture
async def http(cluster: LiveCluster) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=cluster.url(), timeout=15) as client:
        yield client


async def _put(http: httpx.AsyncClient, tok: str, rid: str, p: int) -> None:
    r = await http.put(f"/v1/entities/tasks/rows/{rid}", json={"p": p}, headers=auth(tok))
    assert r.status_code == 200, r.text


def _of(ws: Ws, sub: str, op: str) -> list[dict[str, Any]]:
    return [m for m in ws.deltas if m["sub"] == sub and m["op"] == op]


async def _fresh_digest(http: httpx.AsyncClient, tok: str, query: dict[str, Any]) -> str:
    return sha([(rid, version) for rid, version, _ in await fresh(http, tok, query)])


async def test_ws_digests_reasons_and_checks(cluster: LiveCluster, http: httpx.AsyncClient) -> None:
    tok = token(new_tenant())
    ws = await Ws.connect(cluster.ws_url(), tok)
    try:
        await ws.subscribe("empty", Q)
        (synced,) = _of(ws, "empty", "synced")
        assert synced["digest"] == sha([]) == "e3b0c44298fc1c14"
        assert [m["reason"] for m in _of(ws, "empty", "reset")] == ["subscribe"]
        for i in range(6):
            await _put(http, tok, f"r{i}", i)
        await ws.converge(http, tok, "empty", Q)
        await ws.subscribe("full", Q)
        (synced,) = _of(ws, "full", "synced")
        assert synced["count"] == 4
        assert synced["digest"] == await _fresh_digest(http, tok, Q)
        await _put(http, tok, "r0", 100)  # moves to the top, evicting r2
        await _put(http, tok, "r4", 101)  # a move inside the window
        await ws.converge(http, tok, "full", Q)
        await ws.subscribe("moved", Q)
        (synced,) = _of(ws, "moved", "synced")
        assert synced["digest"] == await _fresh_digest(http, tok, Q)
        # a reanchor's reset says so, and its window has its digest
        cursor = (await http.post("/v1/entities/tasks/query", json={"sort": ["-p"], "limit": 2},
                                  headers=auth(tok))).json()["rows"][1]["cursor"]
        await ws.send({"type": "reanchor", "sub": "moved", "after": cursor})
        await ws.settle(lambda: len(_of(ws, "moved", "synced")) == 2)
        assert [m["reason"] for m in _of(ws, "moved", "reset")] == ["subscribe", "reanchor"]
        anchored = {**Q, "after": cursor}
        assert _of(ws, "moved", "synced")[1]["digest"] == await _fresh_digest(http, tok, anchored)
        # the check opt-in: a numbered no-op with the digest of the list at its seq
        await ws.send({"type": "subscribe", "sub": "checked", "query": Q, "check": 1})
        await ws.settle(lambda: bool(_of(ws, "checked", "check")), timeout=5)
        check = _of(ws, "checked", "check")[0]
        view = ws.views["checked"]  # ViewState applied the check (and verified it)
        assert check["digest"] == sha([(r.id, r.version) for r in view.rows])
        assert check["count"] == 4 and check["seq"] == view.seq  # no write since
        assert not _of(ws, "full", "check"), "a subscription that did not ask gets none"
        # bad opt-ins are refused; the connection stays
        await ws.send({"type": "subscribe", "sub": "x", "query": Q, "check": 0})
        assert (await ws.error("x"))["code"] == "invalid_message"
        await ws.send({"type": "subscribe", "sub": "y", "query": {**Q, "mode": "changes"},
                       "check": 5})
        assert (await ws.error("y"))["code"] == "invalid_query"
        metrics = (await http.get("/metrics")).text
        assert 'lq_live_resets_total{reason="subscribe"}' in metrics
        assert 'lq_live_resets_total{reason="reanchor"}' in metrics
        assert "lq_live_checks_total" in metrics
    finally:
        await ws.close()


async def test_sse_and_poll_synced_carry_the_digest(
    cluster: LiveCluster, http: httpx.AsyncClient
) -> None:
    tok = token(new_tenant())
    for i in range(6):
        await _put(http, tok, f"r{i}", i * 3 % 7)
    want = await _fresh_digest(http, tok, Q)
    params = {"q": json.dumps(Q), "token": tok}
    async with http.stream("GET", "/v1/sse", params=params) as r:
        reader = SseReader(r)
        messages: list[dict[str, Any]] = []
        while not messages or messages[-1]["op"] != "synced":
            event = await reader.next()
            if "id" in event:
                messages.append(json.loads(event["data"]))
    assert messages[0] == {**messages[0], "op": "reset", "reason": "subscribe"}
    assert messages[-1]["digest"] == want
    assert sha([(m["id"], m["version"]) for m in messages if m["op"] == "enter"]) == want
    r2 = await http.get("/v1/poll", params={"q": json.dumps(Q), "wait": "5"}, headers=auth(tok))
    polled = r2.json()["messages"]
    assert polled[0]["reason"] == "subscribe" and polled[-1]["op"] == "synced"
    assert polled[-1]["digest"] == want
    await http.delete("/v1/poll", params={"poll": r2.json()["poll"]}, headers=auth(tok))


async def test_a_diverged_python_client_is_caught_and_repaired(
    cluster: LiveCluster, http: httpx.AsyncClient
) -> None:
    tok = token(new_tenant())
    for i in range(5):
        await _put(http, tok, f"r{i}", i)
    async with LiveClient(cluster.url(), tok) as lq:
        view = await lq.subscribe(Q, check=1)
        assert view.reason == "subscribe" and view.digest_mismatches == 0
        # plant a divergence: the client "missed" a change of its top row
        top = view.state.rows[0]
        bad = Row(top.id, top.version + 1, {**top.values, "p": -1}, top.cursor)
        view.state.rows[0] = bad
        view.state.by_id[top.id] = bad
        deadline = time.monotonic() + 10
        while view.digest_mismatches == 0 or not view.synced:
            assert time.monotonic() < deadline, "the divergence was not caught"
            await asyncio.sleep(0.05)
        assert view.restarts == 1 and view.reason == "subscribe"
        want = await fresh(http, tok, Q)
        while rows_of(view.rows) != want:
            assert time.monotonic() < deadline, "the view was not repaired"
            await asyncio.sleep(0.05)
