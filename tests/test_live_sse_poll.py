"""End to end over `/v1/sse` and `/v1/poll` with httpx, real processes, real Redis.

Messages are applied and checked with the client's `ViewState`; after every write the
list must equal a fresh query.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from lq_client.view import ViewState

from tests.gateway_helpers import auth, token
from tests.live_clients import SseReader, fresh, new_tenant, rows_of
from tests.live_cluster import LiveCluster
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.timeout(60)

Q = {"entity": "tasks", "where": {"open": True}, "sort": ["-p"], "limit": 4}


@pytest.fixture(scope="module")
def cluster(redis_standalone: RedisServer) -> Iterator[LiveCluster]:
    with LiveCluster(redis_standalone.url) as c:
        c.start_shard("shard-0")
        c.start_gateway()
        c.start_gateway(LQ_SSE_KEEPALIVE="0.3", LQ_OUTBOX_MAX_MESSAGES="6", LQ_POLL_LEASE="1")
        c.wait_ready()
        yield c


@pytest.fixture
async def http(cluster: LiveCluster) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=cluster.url(), timeout=15) as client:
        yield client


async def _put(http: httpx.AsyncClient, tok: str, rid: str, p: float, open_: bool = True) -> None:
    r = await http.put(f"/v1/entities/tasks/rows/{rid}", json={"p": p, "open": open_},
                       headers=auth(tok))
    assert r.status_code == 200, r.text


class SseView:
    def __init__(self, reader: SseReader) -> None:
        self.reader = reader
        self.view = ViewState(True, 4)
        self.events: list[dict[str, str]] = []

    async def step(self, timeout: float = 10.0) -> dict[str, str]:
        event = await self.reader.next(timeout)
        self.events.append(event)
        if "id" in event:
            message = json.loads(event["data"])
            assert event["event"] == message["op"]
            assert event["id"].rsplit(".", 1)[1] == str(message["seq"])
            self.view.apply(message)
        return event

    async def converge(self, http: httpx.AsyncClient, tok: str, query: dict[str, Any]) -> None:
        deadline = time.monotonic() + 10
        while not (self.view.synced and rows_of(self.view.current()) == await fresh(http, tok,
                                                                                     query)):
            assert time.monotonic() < deadline, "the SSE view did not converge"
            await self.step()


async def test_sse_follows_every_write(cluster: LiveCluster, http: httpx.AsyncClient) -> None:
    tok = token(new_tenant())
    await _put(http, tok, "a", 1)
    params = {"q": json.dumps(Q), "token": tok}
    async with http.stream("GET", "/v1/sse", params=params) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        sse = SseView(SseReader(r))
        first = await sse.step()
        assert first["event"] == "subscribed"
        await sse.converge(http, tok, Q)
        assert sse.events[1]["event"] == "reset" and sse.events[1]["id"].endswith(".1")
        for i, (rid, p, is_open) in enumerate([("b", 5, True), ("c", 3, True), ("a", 9, True),
                                               ("b", 5, False), ("d", 0, True), ("e", 7, True),
                                               ("f", 8, True), ("c", 10, True)]):
            await _put(http, tok, rid, p + i / 100, is_open)
            await sse.converge(http, tok, Q)


async def test_sse_keep_alive_comments(cluster: LiveCluster) -> None:
    tok = token(new_tenant())
    async with httpx.AsyncClient(base_url=cluster.url(1), timeout=10) as http:
        async with http.stream("GET", "/v1/sse", params={"q": json.dumps(Q)},
                               headers=auth(tok)) as r:
            reader = SseReader(r)
            for _ in range(3):  # subscribed, reset, synced
                await reader.next()
            started = time.monotonic()
            async for line in reader.lines:
                if line.startswith(":"):
                    break
            assert time.monotonic() - started < 2


async def test_sse_resumes_after_last_event_id(
    cluster: LiveCluster, http: httpx.AsyncClient
) -> None:
    tok = token(new_tenant())
    await _put(http, tok, "a", 1)
    params = {"q": json.dumps(Q)}
    async with http.stream("GET", "/v1/sse", params=params, headers=auth(tok)) as r:
        sse = SseView(SseReader(r))
        await sse.converge(http, tok, Q)
        last = sse.events[-1]["id"]
    await _put(http, tok, "b", 2)
    await _put(http, tok, "c", 3)
    await asyncio.sleep(0.5)
    headers = {**auth(tok), "Last-Event-ID": last}
    async with http.stream("GET", "/v1/sse", params=params, headers=headers) as r:
        sse2 = SseReader(r)
        event = await sse2.next()
        assert event["event"] == "enter"  # no reset: continued where it was
        stream, seq = last.rsplit(".", 1)
        assert event["id"] == f"{stream}.{int(seq) + 1}"
        sse.reader = sse2
        sse.view.apply(json.loads(event["data"]))
        await sse.converge(http, tok, Q)
    unknown = {**auth(tok), "Last-Event-ID": "sgone.12"}
    async with http.stream("GET", "/v1/sse", params=params, headers=unknown) as r:
        reader = SseReader(r)
        assert (await reader.next())["event"] == "subscribed"
        event = await reader.next()
        assert event["event"] == "reset" and event["id"].endswith(".1")


async def test_sse_starts_over_when_its_buffer_cannot_cover(cluster: LiveCluster) -> None:
    tok = token(new_tenant())
    params = {"q": json.dumps(Q)}
    async with httpx.AsyncClient(base_url=cluster.url(1), timeout=10) as http:
        for i in range(4):
            await _put(http, tok, f"r{i}", i)
        async with http.stream("GET", "/v1/sse", params=params, headers=auth(tok)) as r:
            sse = SseView(SseReader(r))
            await sse.converge(http, tok, Q)
            first_id = sse.events[1]["id"]
            for i in range(10):
                await _put(http, tok, f"r{i}", 10 + i)
                await sse.converge(http, tok, Q)  # the reset is long out of the 6-event ring
        headers = {**auth(tok), "Last-Event-ID": first_id}
        async with http.stream("GET", "/v1/sse", params=params, headers=headers) as r:
            sse = SseView(SseReader(r))
            event = await sse.step()
            assert event["event"] == "reset" and event["id"].endswith(".1")
            assert event["id"].split(".")[0] != first_id.split(".")[0]
            await sse.converge(http, tok, Q)


async def test_sse_ends_with_a_token_expired_event_at_expiry(
    cluster: LiveCluster, http: httpx.AsyncClient
) -> None:
    tok = token(new_tenant(), ttl=2)
    async with http.stream("GET", "/v1/sse", params={"q": json.dumps(Q)},
                           headers=auth(tok)) as r:
        reader = SseReader(r)
        event = await reader.next()
        while event["event"] not in ("token_expired", "error"):
            event = await reader.next(5)
        assert event["event"] == "token_expired"  # a name EventSource's `error` is not
        assert json.loads(event["data"])["code"] == "unauthorized"
        legacy = await reader.next(5)  # then the old event, for clients older than the name
        assert legacy["event"] == "error" and legacy["data"] == event["data"]
        with pytest.raises(EOFError):
            await reader.next(5)


async def _ticket(http: httpx.AsyncClient, tok: str) -> str:
    r = await http.post("/v1/tickets", headers=auth(tok))
    assert r.status_code == 200, r.text
    return str(r.json()["ticket"])


async def test_a_new_stream_with_a_ticket_and_last_event_id_continues_without_a_snapshot(
    cluster: LiveCluster, http: httpx.AsyncClient
) -> None:
    """What a browser does to refresh its token: a new EventSource on a fresh ticket,
    with `?last_event_id=` (it cannot set the header), and a cache buster."""
    tenant = new_tenant()
    tok = token(tenant)
    await _put(http, tok, "a", 1)
    q = json.dumps(Q)
    params = {"q": q, "ticket": await _ticket(http, tok), "_": "1"}
    async with http.stream("GET", "/v1/sse", params=params) as r:
        assert r.status_code == 200
        sse = SseView(SseReader(r))
        await sse.converge(http, tok, Q)
        last = sse.events[-1]["id"]
    await _put(http, tok, "b", 2)
    refreshed = token(tenant, ttl=7200)  # the app's new token
    params = {"q": q, "ticket": await _ticket(http, refreshed), "last_event_id": last,
              "_": "2"}
    async with http.stream("GET", "/v1/sse", params=params) as r:
        reader = SseReader(r)
        event = await reader.next()
        assert event["event"] == "enter"  # no reset, no snapshot: continued where it was
        stream, seq = last.rsplit(".", 1)
        assert event["id"] == f"{stream}.{int(seq) + 1}"
        sse.reader = reader
        sse.view.apply(json.loads(event["data"]))
        await sse.converge(http, tok, Q)


async def test_live_transports_ignore_underscore_parameters_only(
    cluster: LiveCluster, http: httpx.AsyncClient
) -> None:
    tok = token(new_tenant())
    q = json.dumps(Q)
    r = await http.get("/v1/poll", params={"q": q, "wait": "0", "_": "123"}, headers=auth(tok))
    assert r.status_code == 200, r.text
    for path in ("/v1/poll", "/v1/sse"):
        r = await http.get(path, params={"q": q, "cachebuster": "1"}, headers=auth(tok))
        assert r.status_code == 400 and "cachebuster" in r.json()["error"]["message"]


class Poller:
    def __init__(self, http: httpx.AsyncClient, tok: str, query: dict[str, Any]) -> None:
        self.http, self.tok, self.query = http, tok, query
        self.view = ViewState(True, query.get("limit"))
        self.handle = ""
        self.replies: list[list[dict[str, Any]]] = []

    async def open(self, wait: float = 5) -> list[dict[str, Any]]:
        r = await self.http.get("/v1/poll", params={"q": json.dumps(self.query), "wait": wait},
                                headers=auth(self.tok))
        assert r.status_code == 200, r.text
        self.handle = r.json()["poll"]
        return self._apply(r.json()["messages"])

    async def poll(self, wait: float = 5, after: int | None = None) -> list[dict[str, Any]]:
        after = self.view.seq if after is None else after
        params = {"poll": self.handle, "after": str(after), "wait": str(wait)}
        r = await self.http.get("/v1/poll", params=params, headers=auth(self.tok))
        assert r.status_code == 200, r.text
        return r.json()["messages"]  # type: ignore[no-any-return]

    def _apply(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.replies.append(messages)
        for m in messages:
            self.view.apply(m)
        return messages

    async def converge(self) -> None:
        deadline = time.monotonic() + 10
        while not (self.view.synced
                   and rows_of(self.view.current()) == await fresh(self.http, self.tok,
                                                                   self.query)):
            assert time.monotonic() < deadline, "the poll view did not converge"
            self._apply(await self.poll(wait=1))


async def test_poll_follows_every_write(cluster: LiveCluster, http: httpx.AsyncClient) -> None:
    tok = token(new_tenant())
    await _put(http, tok, "a", 1)
    poller = Poller(http, tok, Q)
    first = await poller.open()
    assert [m["op"] for m in first] == ["reset", "enter", "synced"]
    for i in range(8):
        await _put(http, tok, f"r{i % 5}", (i * 7) % 10, i % 3 != 0)
        await poller.converge()
    started = time.monotonic()
    assert await poller.poll(wait=-5) == []  # clamped to 0: answers at once
    assert time.monotonic() - started < 1


async def test_poll_repeats_what_is_not_acknowledged(
    cluster: LiveCluster, http: httpx.AsyncClient
) -> None:
    tok = token(new_tenant())
    poller = Poller(http, tok, Q)
    await poller.open()
    acked = poller.view.seq
    await _put(http, tok, "a", 1)
    got = await poller.poll(after=acked)
    again = await poller.poll(after=acked, wait=0)
    assert got and again == got
    poller._apply(got)
    assert await poller.poll(wait=0) == []
    r = await http.get("/v1/poll", params={"poll": poller.handle, "after": str(acked - 1)},
                       headers=auth(tok))
    assert r.status_code == 400  # below what was acknowledged
    r = await http.get("/v1/poll", params={"poll": poller.handle, "after": "999"},
                       headers=auth(tok))
    assert r.status_code == 400  # beyond what was sent


async def test_poll_backlog_is_bounded_and_resets(cluster: LiveCluster) -> None:
    tok = token(new_tenant())
    async with httpx.AsyncClient(base_url=cluster.url(1), timeout=10) as http:
        poller = Poller(http, tok, Q)
        await poller.open()
        for i in range(30):
            await _put(http, tok, f"r{i % 6}", i)
        await asyncio.sleep(0.5)
        reply = poller._apply(await poller.poll(wait=2))
        assert reply[0]["op"] == "reset"
        assert len(reply) <= 6 + 6  # the bound plus one catch-up snapshot
        await poller.converge()


async def test_an_idle_poll_handle_expires(cluster: LiveCluster) -> None:
    tok = token(new_tenant())
    async with httpx.AsyncClient(base_url=cluster.url(1), timeout=10) as http:
        poller = Poller(http, tok, Q)
        await poller.open()
        await asyncio.sleep(2.5)
        r = await http.get("/v1/poll", params={"poll": poller.handle}, headers=auth(tok))
        assert r.status_code == 410
