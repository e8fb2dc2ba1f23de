"""The Python client's errors reach the caller at once, typed (real processes, real Redis).

A stale token, a wrong URL, a missing scope and a bad query each raise their class of
`lq_client` within a second, from `subscribe()` and from a data call alike; a refused
token is tried again only when the token callback then gives a new one; reconnects
pause with capped, jittered backoff.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from lq_client import (
    Backoff,
    Forbidden,
    InvalidQuery,
    LinkState,
    LiveClient,
    LiveError,
    Unauthorized,
    Unavailable,
)

from tests.gateway_helpers import free_port, token
from tests.live_clients import new_tenant, wait_for
from tests.live_cluster import LiveCluster
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.timeout(60)

Q = {"entity": "tasks", "sort": ["-p"], "limit": 3}
AT_ONCE = 1.0  # seconds: what "at once" means for these errors


@pytest.fixture(scope="module")
def cluster(redis_standalone: RedisServer) -> Iterator[LiveCluster]:
    with LiveCluster(redis_standalone.url) as c:
        c.start_shard("shard-0")
        c.start_gateway()
        c.wait_ready()
        yield c


class _NotLq(BaseHTTPRequestHandler):
    """Any web server that is not an lq gateway: 404 with an HTML page, to everything."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        body = b"<html><body>Not Found</body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def not_lq() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotLq)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


Call = Callable[[LiveClient], Awaitable[object]]
CALLS: dict[str, Call] = {
    "subscribe": lambda lq: lq.subscribe(Q),
    "put": lambda lq: lq.put("tasks", "t1", {"p": 1}),
    "query": lambda lq: lq.query("tasks", limit=5),
}


async def _fails_at_once(urls: str | list[str], tok: str, call: Call,
                         kind: type[LiveError]) -> tuple[LiveError, LinkState, int]:
    """`call` on a fresh client raises `kind` within AT_ONCE of the client's start; the
    error, and the connection's state and attempts then."""
    start = time.monotonic()
    async with LiveClient(urls, tok) as lq:
        with pytest.raises(kind) as caught:
            await call(lq)
        elapsed = time.monotonic() - start
        state, attempts = lq.state, lq.attempts
    assert elapsed < AT_ONCE, f"{kind.__name__} took {elapsed:.2f} s"
    return caught.value, state, attempts


@pytest.mark.parametrize("call", CALLS)
async def test_a_stale_token_raises_unauthorized_at_once(cluster: LiveCluster, call: str) -> None:
    stale = token(new_tenant(), ttl=-120)
    error, state, attempts = await _fails_at_once(cluster.url(), stale, CALLS[call],
                                                  Unauthorized)
    assert error.code == "unauthorized" and "expired" in error.message
    if call == "subscribe":  # a string token is never sent again once refused
        assert state is LinkState.FAILED and attempts == 1
    else:
        assert error.status == 401


@pytest.mark.parametrize("call", CALLS)
async def test_a_token_of_another_key_raises_unauthorized(cluster: LiveCluster, call: str) -> None:
    forged = token(new_tenant(), key="another-secret-" + "x" * 40)
    error, *_ = await _fails_at_once(cluster.url(), forged, CALLS[call], Unauthorized)
    assert error.code == "unauthorized"


@pytest.mark.parametrize("call", CALLS)
async def test_a_wrong_url_raises_unavailable_at_once(call: str) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    error, *_ = await _fails_at_once(nobody, token(new_tenant()), CALLS[call], Unavailable)
    assert error.code == "unavailable" and nobody in error.message


@pytest.mark.parametrize("call", CALLS)
async def test_a_web_server_that_is_not_lq_raises_unavailable(not_lq: str, call: str) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    error, *_ = await _fails_at_once([nobody, not_lq], token(new_tenant()), CALLS[call],
                                    Unavailable)
    assert nobody in error.message or not_lq in error.message
    assert "not an lq gateway" in error.message or "not JSON" in error.message


@pytest.mark.parametrize("call", CALLS)
async def test_a_missing_scope_raises_forbidden_at_once(cluster: LiveCluster, call: str) -> None:
    notes_only = token(new_tenant(), "lq:read:notes lq:write:notes")
    error, *_ = await _fails_at_once(cluster.url(), notes_only, CALLS[call], Forbidden)
    assert error.code == "forbidden" and "tasks" in error.message
    assert error.sub == ("v1" if call == "subscribe" else None)


async def test_a_bad_query_raises_invalid_query_and_the_client_goes_on(
        cluster: LiveCluster) -> None:
    start = time.monotonic()
    async with LiveClient(cluster.url(), token(new_tenant())) as lq:
        with pytest.raises(InvalidQuery) as refused:
            await lq.subscribe({"entity": "tasks", "sort": ["-p"], "limit": 0})
        with pytest.raises(InvalidQuery):
            await lq.query("tasks", limit=0)
        assert time.monotonic() - start < AT_ONCE
        assert refused.value.sub == "v1" and "limit" in refused.value.message
        view = await lq.subscribe(Q)  # the connection and other views are unharmed
        assert view.synced and lq.state is LinkState.OPEN and lq.connects == 1


async def test_a_failed_url_is_skipped_for_the_next(cluster: LiveCluster, not_lq: str) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    async with LiveClient([nobody, not_lq, cluster.url()], token(new_tenant())) as lq:
        await lq.put("tasks", "a", {"p": 1})
        view = await lq.subscribe(Q)
        assert [r.id for r in view.rows] == ["a"] and lq.connects == 1


async def test_a_new_token_from_the_callback_after_4401_reconnects(cluster: LiveCluster) -> None:
    tenant = new_tenant()
    short, later = token(tenant, ttl=2), token(tenant, ttl=300)
    asked: list[str] = []
    clients: list[LiveClient] = []

    def provider() -> str:
        # the short token, over and over, until the server has said it expired (then 4401)
        asked.append(later if clients[0].last_error is not None else short)
        return asked[-1]

    lq = LiveClient(cluster.url(), provider)
    clients.append(lq)
    async with lq:
        view = await lq.subscribe(Q)
        await wait_for(lambda: lq.connects == 2 and lq.state is LinkState.OPEN, timeout=10)
        assert isinstance(lq.last_error, Unauthorized) and "expired" in lq.last_error.message
        await lq.put("tasks", "late", {"p": 1})
        await wait_for(lambda: view.synced and [r.id for r in view.rows] == ["late"])
        assert asked[0] == short and asked[-1] == later and not view.closed


async def test_the_same_token_after_4401_ends_every_view(cluster: LiveCluster) -> None:
    short = token(new_tenant(), ttl=2)
    async with LiveClient(cluster.url(), lambda: short) as lq:
        view = await lq.subscribe(Q)
        with pytest.raises(Unauthorized, match="expired"):
            async with asyncio.timeout(10):
                async for _ in view:
                    pass
        assert lq.state is LinkState.FAILED and view.closed
        attempts = lq.attempts
        start = time.monotonic()
        with pytest.raises(Unauthorized):
            await lq.subscribe(Q)
        assert time.monotonic() - start < 0.1
        await asyncio.sleep(0.5)
        assert lq.attempts == attempts  # nothing is tried any more


async def test_reconnects_pause_with_capped_backoff() -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    capped = Backoff(first=0.1, cap=0.2, jitter=0.0)
    async with LiveClient(nobody, token(new_tenant()), backoff=capped) as lq:
        await asyncio.sleep(2.0)
        assert lq.state is LinkState.DOWN
        # pauses 0.1, 0.2, 0.2, ...: about 11 tries in 2 s (uncapped doubling: 5)
        assert 7 <= lq.attempts <= 12, lq.attempts
        with pytest.raises(Unavailable):
            await lq.subscribe(Q)  # down: at once
        view = await lq.subscribe(Q, wait=None)  # or registered, to sync when it is back
        assert not view.synced


def test_backoff_is_exponential_capped_and_jittered() -> None:
    b = Backoff(first=0.1, cap=2.0, factor=2.0, jitter=0.5)
    for retry in range(40):
        base = min(2.0, 0.1 * 2**retry)
        low, high = b.delay(retry, lambda: 0.0), b.delay(retry, lambda: 0.999999)
        assert low == pytest.approx(base * 0.5)
        assert high == pytest.approx(min(2.0, base * 1.5), rel=1e-5)
        assert all(low <= b.delay(retry) <= 2.0 for _ in range(20))
    assert b.delay(10_000) <= 2.0  # no overflow far out
    assert Backoff(jitter=0.0).delay(3) == pytest.approx(0.8)
    for bad in ({"first": 0.0}, {"first": 3.0, "cap": 1.0}, {"jitter": 1.5}, {"factor": 0.5}):
        with pytest.raises(ValueError):
            Backoff(**bad)


@pytest.mark.parametrize("call", CALLS)
async def test_a_callback_with_a_new_token_after_a_refusal_is_asked_again(
        cluster: LiveCluster, call: str) -> None:
    tenant = new_tenant()
    stale, good = token(tenant, ttl=-120), token(tenant)
    asked: list[str] = []

    def provider() -> str:  # stale at first, as a cache that has not noticed yet
        asked.append(good if asked else stale)
        return asked[-1]

    start = time.monotonic()
    async with LiveClient(cluster.url(), provider) as lq:
        await CALLS[call](lq)  # refused (401 / 4401), then again with the new token
    assert time.monotonic() - start < AT_ONCE
    assert asked[0] == stale and asked[1] == good
