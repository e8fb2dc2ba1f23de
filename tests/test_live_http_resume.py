"""State-diff resume over long polling and SSE (PROTOCOL.md sections 5 and 6): real
shard and gateway processes, real Redis.

A client that held a window through a gateway killed with SIGKILL opens again on another
gateway with `resume=<its [id, version] pairs>`: the first messages are `resume`, the few
ops of the difference and `synced`, whose digest (hashlib over the protocol's text) and
list equal a fresh query. On the same gateway an SSE `Last-Event-ID` that can be
continued wins; one that cannot starts the stream over from the declaration. A
declaration that cannot be right is a `resume_miss` reset; a malformed one is a 400.
The measure (poll resume of a 1,000-row window with 3 changes against a full snapshot,
on the same run) is printed; `pytest -s` shows it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from lq_client.view import ViewState

from tests.gateway_helpers import auth, token
from tests.live_clients import SseReader, fresh, new_tenant, rows_of
from tests.live_cluster import LiveCluster
from tests.redis_servers import RedisServer
from tests.resume_helpers import BIG, change, load, sha

pytestmark = pytest.mark.timeout(90)

Q = {"entity": "tasks", "sort": ["-p"], "limit": 50}
Message = dict[str, Any]


@pytest.fixture(scope="module")
def cluster(redis_standalone: RedisServer) -> Iterator[LiveCluster]:
    with LiveCluster(redis_standalone.url) as c:
        c.start_shard("shard-0")
        c.start_gateway()
        c.start_gateway(LQ_OUTBOX_MAX_MESSAGES="6")  # an SSE ring too short to continue
        c.wait_ready()
        yield c


def held(view: ViewState) -> list[list[Any]]:
    return [[r.id, r.version] for r in view.rows]


async def poll_until_synced(http: httpx.AsyncClient, tok: str, query: dict[str, Any],
                            view: ViewState, resume: list[list[Any]] | None = None,
                            post: bool = False) -> tuple[list[Message], int]:
    """Open a poll (GET, or POST with a body) and poll until `synced`, applying every
    message to `view`: the messages and the bytes of the replies' bodies."""
    if post:
        body: dict[str, Any] = {"query": query, "wait": 10}
        if resume is not None:
            body["resume"] = {"rows": resume}
        r = await http.post("/v1/poll", json=body, headers=auth(tok))
    else:
        params = {"q": json.dumps(query), "wait": "10"}
        if resume is not None:
            params["resume"] = json.dumps(resume)
        r = await http.get("/v1/poll", params=params, headers=auth(tok))
    got: list[Message] = []
    size = 0
    while True:
        assert r.status_code == 200, r.text
        size += len(r.content)
        for m in r.json()["messages"]:
            got.append(m)
            view.apply(m)
        if got and got[-1]["op"] == "synced":
            break
        r = await http.get("/v1/poll", params={"poll": r.json()["poll"], "after": view.seq,
                                               "wait": "10"}, headers=auth(tok))
    await http.delete("/v1/poll", params={"poll": r.json()["poll"]}, headers=auth(tok))
    return got, size


async def test_poll_resumes_on_another_gateway_with_the_difference(
        cluster: LiveCluster) -> None:
    tok = token(new_tenant())
    victim = cluster.start_gateway()
    cluster.wait_ready()
    async with httpx.AsyncClient(base_url=cluster.url(0), timeout=30) as http:
        await load(http, tok, 1200)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{victim.port}",
                                     timeout=30) as gone:
            state = ViewState(True, 1000)
            await poll_until_synced(gone, tok, BIG, state)
        assert len(state.rows) == 1000
        victim.kill()
        await change(http, tok, 3)
        full, full_bytes = await poll_until_synced(http, tok, BIG, ViewState(True, 1000))
        want = await fresh(http, tok, BIG)
        table = []
        for how in ("GET", "POST"):
            mine = copy.deepcopy(state)
            mine.restart()
            got, size = await poll_until_synced(http, tok, BIG, mine, held(state),
                                                post=how == "POST")
            assert [m["op"] for m in got][:1] == ["resume"] and got[0]["seq"] == 1
            assert got[0]["count"] == 1000
            assert len(got) - 2 <= 3, [m["op"] for m in got]
            assert got[-1]["digest"] == sha([(i, v) for i, v, _ in want])
            assert rows_of(mine.current()) == want
            table.append(f"| poll resume ({how}), 3 changes | {len(got)} | {size} |")
        assert len(full) == 1002 and full[0]["op"] == "reset"
        table.append(f"| poll snapshot | {len(full)} | {full_bytes} |")
        url = httpx.URL("/v1/poll", params={"q": json.dumps(BIG),
                                            "resume": json.dumps(held(state))})
        metrics = (await http.get("/metrics")).text
        assert "lq_live_resumes_total 2.0" in metrics
    print(f"\n1,000-row window (GET URL with resume: {len(str(url))} bytes)\n"
          "| what | messages | bytes |\n|---|---|---|\n" + "\n".join(table))


class Stream:
    """One SSE response read event by event, the deltas applied to `view`."""

    def __init__(self, response: httpx.Response, view: ViewState) -> None:
        self.reader = SseReader(response)
        self.view = view
        self.events: list[dict[str, str]] = []

    async def step(self) -> Message:
        event = await self.reader.next()
        self.events.append(event)
        message: Message = json.loads(event["data"])
        if "id" in event:
            assert event["id"].rsplit(".", 1)[1] == str(message["seq"])
            self.view.apply(message)
        return message

    async def until_synced(self) -> list[Message]:
        got = [await self.step()]
        while got[-1].get("op") != "synced":
            got.append(await self.step())
        return got

    async def converge(self, http: httpx.AsyncClient, tok: str) -> None:
        while not (self.view.synced and rows_of(self.view.current()) == await fresh(http, tok, Q)):
            await self.step()


async def _patch(http: httpx.AsyncClient, tok: str, rid: str, row: dict[str, Any]) -> None:
    r = await http.patch(f"/v1/entities/tasks/rows/{rid}", json=row, headers=auth(tok))
    assert r.status_code == 200, r.text


async def test_sse_resumes_on_another_gateway_with_the_difference(
        cluster: LiveCluster) -> None:
    tok = token(new_tenant())
    victim = cluster.start_gateway()
    cluster.wait_ready()
    async with httpx.AsyncClient(base_url=cluster.url(0), timeout=30) as http:
        await load(http, tok, 80)
        view = ViewState(True, 50)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{victim.port}",
                                     timeout=30) as gone:
            async with gone.stream("GET", "/v1/sse", params={"q": json.dumps(Q)},
                                   headers=auth(tok)) as r:
                first = Stream(r, view)
                await first.converge(http, tok)
                last = first.events[-1]["id"]
                victim.kill()
        for rid, row in (("r0079", {"done": True}), ("r0060", {"p": 1}),
                         ("r0075", {"p": 5000})):
            await _patch(http, tok, rid, row)
        view.restart()
        params = {"q": json.dumps(Q), "resume": json.dumps(held(view)), "last_event_id": last}
        async with http.stream("GET", "/v1/sse", params=params, headers=auth(tok)) as r:
            assert r.status_code == 200
            stream = Stream(r, view)
            assert (await stream.step())["type"] == "subscribed"
            got = await stream.until_synced()
            want = await fresh(http, tok, Q)
            assert got[0]["op"] == "resume" and got[0]["count"] == 50
            assert stream.events[1]["id"].endswith(".1")
            assert [m["op"] for m in got[1:-1]] == ["leave", "move", "enter", "update"], got
            assert got[-1]["digest"] == sha([(i, v) for i, v, _ in want])
            assert rows_of(view.current()) == want
            await _patch(http, tok, "r0070", {"p": 9000})  # live changes follow
            await stream.converge(http, tok)


async def test_sse_continuation_wins_and_a_stream_started_over_resumes(
        cluster: LiveCluster) -> None:
    tok = token(new_tenant())
    async with httpx.AsyncClient(base_url=cluster.url(1), timeout=30) as http:
        await load(http, tok, 80)
        view = ViewState(True, 50)
        q = {"q": json.dumps(Q)}
        async with http.stream("GET", "/v1/sse", params=q, headers=auth(tok)) as r:
            first = Stream(r, view)
            await first.converge(http, tok)
            last = first.events[-1]["id"]
        await _patch(http, tok, "r0079", {"done": True})
        params = {**q, "resume": json.dumps(held(view)), "last_event_id": last}
        async with http.stream("GET", "/v1/sse", params=params, headers=auth(tok)) as r:
            stream = Stream(r, view)
            assert (await stream.step())["op"] == "update"  # continued: no resume, no reset
            stream_name, seq = last.rsplit(".", 1)
            assert stream.events[0]["id"] == f"{stream_name}.{int(seq) + 1}"
            await stream.converge(http, tok)
            last = stream.events[-1]["id"]
            saved = copy.deepcopy(view)  # the list as of `last`
            for i in range(10):  # far more than the gateway's 6-event ring
                await _patch(http, tok, f"r{79 - i:04d}", {"done": i})
                await stream.converge(http, tok)
        saved.restart()
        params = {**q, "resume": json.dumps(held(saved)), "last_event_id": last}
        async with http.stream("GET", "/v1/sse", params=params, headers=auth(tok)) as r:
            view = saved
            stream = Stream(r, view)
            got = await stream.until_synced()
            assert got[0]["op"] == "resume", got[:3]
            assert stream.events[0]["id"].split(".")[0] != stream_name
            assert stream.events[0]["id"].endswith(".1")
            assert len(got) == 12  # resume, 10 updates, synced
            want = await fresh(http, tok, Q)
            assert got[-1]["digest"] == sha([(i, v) for i, v, _ in want])
            assert rows_of(view.current()) == want


async def test_a_declaration_that_cannot_be_right_gets_a_reset_and_malformed_is_400(
        cluster: LiveCluster) -> None:
    tok = token(new_tenant())
    q = {"entity": "tasks", "sort": ["-p"], "limit": 3}
    async with httpx.AsyncClient(base_url=cluster.url(0), timeout=30) as http:
        await load(http, tok, 5)
        want = await fresh(http, tok, q)
        for rows in ([["a", 1]] * 4, [["a", 1], ["a", 2]], [["a", "1"]],
                     [[want[1][0], want[1][1]], [want[0][0], want[0][1]]]):
            view = ViewState(True, 3)
            got, _ = await poll_until_synced(http, tok, q, view, rows)
            assert got[0] == {**got[0], "op": "reset", "reason": "resume_miss"}, rows
            assert rows_of(view.current()) == want
        params = {"q": json.dumps(q), "resume": json.dumps([["r0004", 2**62]])}
        async with http.stream("GET", "/v1/sse", params=params, headers=auth(tok)) as r:
            stream = Stream(r, ViewState(True, 3))
            await stream.step()  # subscribed
            got = await stream.until_synced()
            assert got[0]["op"] == "reset" and got[0]["reason"] == "resume_miss"
            assert rows_of(stream.view.current()) == want
        for path in ("/v1/poll", "/v1/sse"):
            for bad in ("[1,", '{"rows": []}', "7"):
                r = await http.get(path, params={"q": json.dumps(q), "resume": bad},
                                   headers=auth(tok))
                assert r.status_code == 400, (path, bad)
                assert r.json()["error"]["code"] == "invalid_request"
                assert "resume" in r.json()["error"]["message"]
        r = await http.get("/v1/poll", params={"q": json.dumps(q), "wait": "0"},
                           headers=auth(tok))
        handle = r.json()["poll"]
        r = await http.get("/v1/poll", params={"poll": handle, "resume": "[]"},
                           headers=auth(tok))
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
        for body, code in (({"query": q, "resume": [["a", 1]]}, "invalid_request"),
                           ({"query": q, "resume": {"rows": [], "x": 1}}, "invalid_request"),
                           ({"query": q, "since": 1}, "invalid_request"),
                           ({"query": q, "wait": "5"}, "invalid_request"),
                           ([q], "invalid_request"),
                           ({"resume": {"rows": []}}, "invalid_query")):
            r = await http.post("/v1/poll", json=body, headers=auth(tok))
            assert r.status_code == 400 and r.json()["error"]["code"] == code, (body, r.text)
