"""What browsers need of a gateway, on a real gateway and Redis: CORS (allow-list,
preflights, exposed headers) and single-use tickets instead of tokens in URLs
(docs/protocol.md sections 7 and 8a), each refusal with its documented code."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator

import httpx
import pytest
import websockets

from gateway.cors import OriginRules
from tests.gateway_helpers import ThreadServer, auth, config_for, token
from tests.live_clients import new_tenant
from tests.redis_servers import RedisServer

ALLOWED = "http://localhost:5173"
Q = json.dumps({"entity": "tasks", "limit": 5})


@pytest.fixture(scope="module")
def server(redis_standalone: RedisServer) -> Iterator[ThreadServer]:
    config = config_for(redis_standalone.url, cors_origins="http://localhost:*, "
                        "https://app.example.com", ticket_ttl=2.0)
    running = ThreadServer(config).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def http(server: ThreadServer, standalone_url: str) -> Iterator[httpx.Client]:
    del standalone_url  # flushed for this test
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def test_origin_rules_without_regular_expressions() -> None:
    rules = OriginRules.parse("http://localhost:*, https://app.example.com")
    assert rules.allows("http://localhost:5173") and rules.allows("http://localhost")
    assert rules.allows("https://app.example.com")
    for refused in ("https://localhost:5173", "http://localhost.evil.com", "http://evil.com",
                    "https://app.example.com:8443", "null", "localhost:5173",
                    "http://localhost:x"):
        assert not rules.allows(refused), refused
    assert OriginRules.parse("*").allows("https://anything.example")
    assert OriginRules.parse("null").allows("null")
    assert OriginRules.parse("").empty
    for bad in ("localhost:3000", "ftp://x", "https://a.com/path", "https://*.a.com"):
        with pytest.raises(ValueError, match="cors_origins"):
            OriginRules.parse(bad)


def test_an_allowed_origin_gets_cors_headers_and_others_do_not(http: httpx.Client) -> None:
    tok = token(new_tenant())
    r = http.put("/v1/entities/tasks/rows/a", json={"p": 1},
                 headers={**auth(tok), "Origin": ALLOWED})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert "Origin" in r.headers["vary"]
    exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
    assert {"etag", "location", "retry-after"} <= exposed
    assert "access-control-allow-credentials" not in r.headers
    r = http.get("/v1/entities/tasks/rows/a", headers={**auth(tok), "Origin": "http://evil.com"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    r = http.get("/healthz")  # no Origin: untouched
    assert "access-control-allow-origin" not in r.headers


def test_preflights_are_answered_for_allowed_origins_and_refused_for_others(
    http: httpx.Client,
) -> None:
    ask = {"Access-Control-Request-Method": "PUT",
           "Access-Control-Request-Headers": "authorization, content-type, if-match"}
    r = http.options("/v1/entities/tasks/rows/a", headers={**ask, "Origin": ALLOWED})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert "PUT" in r.headers["access-control-allow-methods"]
    allowed_headers = r.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "if-match", "last-event-id"):
        assert header in allowed_headers
    r = http.options("/v1/sse", headers={**ask, "Origin": "https://evil.example"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


def test_error_answers_carry_cors_headers_and_are_counted(http: httpx.Client,
                                                         server: ThreadServer) -> None:
    origin = {"Origin": ALLOWED}
    refused = http.put("/v1/entities/tasks/rows/a", json={"p": 1}, headers=origin)  # no token
    no_route = http.get("/v1/nowhere", headers=origin)
    no_method = http.post("/v1/entities/tasks/rows/a", headers={**auth(token(new_tenant())),
                                                                **origin})
    for r, status, code in ((refused, 401, "unauthorized"), (no_route, 404, "not_found"),
                            (no_method, 405, "invalid_request")):
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
        assert r.headers["access-control-allow-origin"] == ALLOWED
        assert "Origin" in r.headers["vary"]
    assert "PUT" in no_method.headers["allow"]
    r = http.options("/v1/sse", headers={"Origin": "https://evil.example",
                                         "Access-Control-Request-Method": "GET"})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    metrics = http.get("/metrics").text
    for route, status in (("/v1/entities/{entity}/rows/{id}", 401), ("unmatched", 404),
                          ("/v1/entities/{entity}/rows/{id}", 405), ("unmatched", 403)):
        assert f'route="{route}",status="{status}"' in metrics, (route, status)


def _ticket(http: httpx.Client, tok: str) -> str:
    r = http.post("/v1/tickets", headers=auth(tok))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert 0 < body["expires_in"] <= 2 and len(body["ticket"]) == 43
    return str(body["ticket"])


def _sse_status(http: httpx.Client, **params: str) -> tuple[int, str]:
    with http.stream("GET", "/v1/sse", params={"q": Q, **params}) as r:
        if r.status_code != 200:
            r.read()
            return r.status_code, r.json()["error"]["code"]
        first = next(r.iter_lines())
        return 200, first


def test_a_ticket_opens_a_stream_once(http: httpx.Client) -> None:
    tok = token(new_tenant())
    ticket = _ticket(http, tok)
    assert _sse_status(http, ticket=ticket)[0] == 200
    assert _sse_status(http, ticket=ticket) == (401, "unauthorized")  # reused


def test_refused_tickets(http: httpx.Client) -> None:
    assert http.post("/v1/tickets").status_code == 401  # no token
    assert http.post("/v1/tickets", params={"token": token("a")}).status_code == 401
    forged = secrets.token_urlsafe(32)
    assert _sse_status(http, ticket=forged) == (401, "unauthorized")
    assert _sse_status(http, ticket="short") == (401, "unauthorized")
    expired = _ticket(http, token(new_tenant()))
    time.sleep(2.2)  # ticket_ttl is 2 s here
    assert _sse_status(http, ticket=expired) == (401, "unauthorized")
    mine = _ticket(http, token(new_tenant()))
    theirs = token(new_tenant())
    r = http.get("/v1/poll", params={"q": Q, "wait": "0", "ticket": mine}, headers=auth(theirs))
    assert r.status_code == 401 and "different tenants" in r.json()["error"]["message"]


def test_a_ticket_never_outlives_its_token(http: httpx.Client) -> None:
    tok = token(new_tenant(), ttl=1)
    r = http.post("/v1/tickets", headers=auth(tok))
    assert r.status_code == 200 and r.json()["expires_in"] <= 1
    ticket = r.json()["ticket"]
    time.sleep(1.3)
    assert _sse_status(http, ticket=ticket) == (401, "unauthorized")


def test_a_ticket_opens_a_long_poll(http: httpx.Client) -> None:
    tok = token(new_tenant())
    r = http.get("/v1/poll", params={"q": Q, "wait": "0", "ticket": _ticket(http, tok)})
    assert r.status_code == 200, r.text
    assert r.json()["poll"]  # a handle: the subscription is open


async def test_a_websocket_authenticates_with_a_ticket_once(
    server: ThreadServer, http: httpx.Client
) -> None:
    tenant = new_tenant()
    ticket = _ticket(http, token(tenant))
    url = server.url.replace("http://", "ws://") + "/v1/ws"
    async with websockets.connect(f"{url}?ticket={ticket}") as ws:
        ready = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert ready == {"type": "ready", "tenant": tenant}
    async with websockets.connect(f"{url}?ticket={ticket}") as ws:
        refused = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert refused["type"] == "error" and refused["code"] == "unauthorized"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


def test_no_log_line_carries_a_ticket_or_a_token(
    http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    tok = token(new_tenant())
    def ours() -> str:
        # the gateway's own lines (httpx's are this client's; `lq gateway` turns
        # uvicorn's access lines off, this test's uvicorn does not)
        lines = [r for r in caplog.records if r.name.startswith("lq.")]
        return "\n".join(f"{r.getMessage()} {r.__dict__}" for r in lines)

    with caplog.at_level("INFO"):
        ticket = _ticket(http, tok)
        _sse_status(http, ticket=ticket, token=tok)
        http.get("/v1/poll", params={"q": Q, "wait": "0", "token": tok})
        # the server thread writes its access line after the reply is sent
        deadline = time.monotonic() + 5
        while "/v1/poll" not in ours() and time.monotonic() < deadline:
            time.sleep(0.02)
    logged = ours()
    assert "/v1/sse" in logged and "/v1/poll" in logged
    assert ticket not in logged and tok not in logged
