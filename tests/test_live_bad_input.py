"""Bad input for the live endpoints, one test per row: each gets its documented error or
close code, and the connection survives where the protocol says so (checked by a ping
answered after the error).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway_helpers import auth, token
from tests.live_clients import Ws, new_tenant
from tests.live_cluster import LiveCluster
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.timeout(60)

Q = {"entity": "tasks", "sort": ["-priority"], "limit": 5}


@pytest.fixture(scope="module")
def cluster(redis_standalone: RedisServer) -> Iterator[LiveCluster]:
    with LiveCluster(redis_standalone.url) as c:
        c.start_shard("shard-0")
        c.start_gateway()
        c.start_gateway(LQ_AUTH_TIMEOUT="1", LQ_MAX_SUBSCRIPTIONS_PER_CONNECTION="3",
                        LQ_WS_RATE="5", LQ_WS_BURST="5", LQ_WS_MAX_MESSAGE_BYTES="4096")
        c.wait_ready()
        yield c


@pytest.fixture
async def ws(cluster: LiveCluster) -> AsyncIterator[Ws]:
    client = await Ws.connect(cluster.ws_url(), token(new_tenant()))
    await client.until(lambda m: m["type"] == "ready")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def strict(cluster: LiveCluster) -> AsyncIterator[Ws]:
    """A connection to the gateway with small limits."""
    client = await Ws.connect(cluster.ws_url(1), token(new_tenant()))
    await client.until(lambda m: m["type"] == "ready")
    try:
        yield client
    finally:
        await client.close()


async def _still_open(ws: Ws) -> None:
    await ws.send({"type": "ping", "t": "alive"})
    pong = await ws.until(lambda m: m["type"] == "pong" and m.get("t") == "alive")
    assert pong == {"type": "pong", "t": "alive"}


async def _refused(ws: Ws, message: Any, code: str, sub: str | None = None,
                   words: str = "") -> None:
    await ws.send(message)
    error = await ws.error(sub)
    assert error["code"] == code, error
    assert words in error["message"], error
    await _still_open(ws)


async def test_malformed_json(ws: Ws) -> None:
    await _refused(ws, '{"type": "subscribe",', "invalid_message", words="not valid JSON")


async def test_not_an_object(ws: Ws) -> None:
    await _refused(ws, "[1, 2]", "invalid_message", words="JSON object")


async def test_unknown_message_type(ws: Ws) -> None:
    await _refused(ws, {"type": "subscribe_all"}, "invalid_message", words="unknown message type")


async def test_missing_type(ws: Ws) -> None:
    await _refused(ws, {"sub": "a"}, "invalid_message", "a", words="unknown message type")


async def test_unknown_field(ws: Ws) -> None:
    await _refused(ws, {"type": "subscribe", "sub": "a", "query": Q, "x": 1}, "invalid_message",
                   "a", words="'x'")


async def test_missing_sub(ws: Ws) -> None:
    await _refused(ws, {"type": "subscribe", "query": Q}, "invalid_message", words='"sub"')


async def test_sub_too_long(ws: Ws) -> None:
    await _refused(ws, {"type": "subscribe", "sub": "s" * 65, "query": Q}, "invalid_message",
                   words="64")


async def test_missing_query(ws: Ws) -> None:
    await _refused(ws, {"type": "subscribe", "sub": "a"}, "invalid_message", "a", words="query")


@pytest.mark.parametrize(
    ("query", "words"),
    [
        pytest.param({"entity": "tasks", "where": {"a": {"$regex": "x"}}, "limit": 5},
                     "$regex", id="unknown-operator"),
        pytest.param({"entity": "tasks", "where": {"a": {"$gt": [1]}}, "limit": 5},
                     "$gt", id="wrong-operand-kind"),
        pytest.param({"entity": "bad-name", "limit": 5}, "entity", id="bad-entity"),
        pytest.param({"entity": "tasks", "limit": 0}, "limit", id="limit-zero"),
        pytest.param({"entity": "tasks", "limit": 1001}, "limit", id="limit-too-large"),
        pytest.param({"entity": "tasks"}, "limit", id="window-without-limit"),
        pytest.param({"entity": "tasks", "limit": 5, "after": "AAAA"}, "after", id="bad-cursor"),
        pytest.param({"entity": "tasks", "mode": "changes", "after": "x"}, "after",
                     id="after-in-changes-mode"),
        pytest.param({"entity": "tasks", "limit": 5, "mode": "stream"}, "mode", id="bad-mode"),
        pytest.param({"entity": "tasks", "limit": 5, "sort": "priority"}, "sort", id="bad-sort"),
        pytest.param({"entity": "tasks", "limit": 5, "group": 1}, "group", id="unknown-field"),
        pytest.param([1], "object", id="not-an-object"),
        pytest.param({"entity": "tasks", "limit": 5, "where": {"$and": [{"$and": [{"$and": [
            {"$and": [{"$and": [{"$and": [{"$and": [{"$and": [{"a": 1}]}]}]}]}]}]}]}]}},
            "deeper", id="too-deep"),
    ],
)
async def test_invalid_query(ws: Ws, query: Any, words: str) -> None:
    await _refused(ws, {"type": "subscribe", "sub": "q", "query": query}, "invalid_query", "q",
                   words=words)
    await ws.subscribe("q", Q)  # it was not created: the name is still free


# -- integers outside signed 64 bits and deep nesting: refused naming where, never rounded

INT_RULE = "integers must fit in signed 64 bits (-9223372036854775808 to 9223372036854775807)"
DEPTH_RULE = "nested too deep: arrays and objects nest at most 128 levels"
BIG = 12345678901234567890123


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("where", "words"),
    [
        pytest.param({"price": {"$gt": BIG}}, f"where.price.$gt: {INT_RULE}; got {BIG}",
                     id="big-gt"),
        pytest.param({"a": 2**63}, f"where.a: {INT_RULE}", id="2**63-bare"),
        pytest.param({"a": {"$in": [1, -(2**63) - 1]}}, f"where.a.$in[1]: {INT_RULE}",
                     id="big-in"),
        pytest.param({"$or": [{"a": 1}, {"b": {"$lte": 2**64}}]},
                     f"where.$or[1].b.$lte: {INT_RULE}", id="big-range-in-or"),
        pytest.param({"a": deep(300)},
                     "where.a[0][0][0][0][0][0] ...117 more... [0][0]: " + DEPTH_RULE,
                     id="300-deep-array"),
    ],
)
async def test_subscribe_with_a_refused_value(ws: Ws, where: Any, words: str) -> None:
    query = {**Q, "where": where}
    await _refused(ws, {"type": "subscribe", "sub": "q", "query": query}, "invalid_query", "q",
                   words=words)
    await ws.subscribe("q", Q)  # it was not created: the name is still free


async def test_subscribe_with_a_big_cursor_or_limit(ws: Ws) -> None:
    await _refused(ws, {"type": "subscribe", "sub": "q", "query": {**Q, "after": BIG}},
                   "invalid_query", "q", words=f"after: {INT_RULE}")
    await _refused(ws, {"type": "subscribe", "sub": "q", "query": {**Q, "limit": 2**63}},
                   "invalid_query", "q", words=f"limit: {INT_RULE}")
    await ws.subscribe("q", Q)


async def test_reanchor_with_a_big_limit_keeps_the_window(ws: Ws) -> None:
    await ws.subscribe("a", Q)
    await _refused(ws, {"type": "reanchor", "sub": "a", "after": None, "limit": 2**63},
                   "invalid_query", "a", words=f"limit: {INT_RULE}")
    await _refused(ws, {"type": "reanchor", "sub": "a", "after": deep(300)},
                   "invalid_query", "a", words=DEPTH_RULE)
    await _refused(ws, {"type": "subscribe", "sub": "a", "query": Q}, "duplicate_subscription",
                   "a")


async def test_a_big_ping_is_refused_not_echoed_rounded(ws: Ws) -> None:
    await _refused(ws, {"type": "ping", "t": BIG}, "invalid_message", words=f"t: {INT_RULE}")
    await _refused(ws, {"type": "ping", "t": deep(300)}, "invalid_message", words=DEPTH_RULE)
    await _refused(ws, "[" * 2000 + "]" * 2000, "invalid_message", words=DEPTH_RULE)
    await ws.send({"type": "ping", "t": 2**63 - 1})
    pong = await ws.until(lambda m: m["type"] == "pong" and m.get("t") != "alive")
    assert pong == {"type": "pong", "t": 2**63 - 1}


async def test_duplicate_sub(ws: Ws) -> None:
    await ws.subscribe("a", Q)
    await _refused(ws, {"type": "subscribe", "sub": "a", "query": Q}, "duplicate_subscription",
                   "a")


async def test_too_many_subscriptions(strict: Ws) -> None:
    for i in range(3):
        await strict.subscribe(f"s{i}", Q)
    await _refused(strict, {"type": "subscribe", "sub": "s3", "query": Q},
                   "too_many_subscriptions", "s3", words="at most 3")


async def test_unknown_subscription(ws: Ws) -> None:
    await _refused(ws, {"type": "unsubscribe", "sub": "nope"}, "unknown_subscription", "nope")
    await _refused(ws, {"type": "reanchor", "sub": "nope", "after": None},
                   "unknown_subscription", "nope")


async def test_reanchor_in_changes_mode(ws: Ws) -> None:
    await ws.subscribe("c", {"entity": "tasks", "mode": "changes"})
    await _refused(ws, {"type": "reanchor", "sub": "c", "after": None}, "invalid_query", "c",
                   words="window")


async def test_reanchor_with_a_bad_limit(ws: Ws) -> None:
    await ws.subscribe("a", Q)
    await _refused(ws, {"type": "reanchor", "sub": "a", "after": None, "limit": 0},
                   "invalid_query", "a", words="limit")


async def test_oversized_frame_closes_1009(strict: Ws) -> None:
    await strict.send({"type": "ping", "t": "x" * 5000})
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await strict.read()
    assert strict.ws.close_code == 1009


async def test_binary_frame_closes_4400(ws: Ws) -> None:
    await ws.send(b'{"type": "ping"}')
    await ws.ws.wait_closed()
    assert ws.ws.close_code == 4400


async def test_rate_limited_messages_are_dropped(strict: Ws) -> None:
    for i in range(12):
        await strict.send({"type": "ping", "t": i})
    answers: list[dict[str, Any]] = []
    while len(answers) < 12:
        answers += await strict.read()
    codes = [m.get("code") for m in answers if m["type"] == "error"]
    pongs = [m["t"] for m in answers if m["type"] == "pong"]
    assert codes and set(codes) == {"rate_limited"}
    assert len(pongs) + len(codes) == 12 and pongs == sorted(pongs)


async def test_unauthenticated_subscribe(cluster: LiveCluster) -> None:
    ws = await Ws.connect(cluster.ws_url())
    try:
        await _refused(ws, {"type": "subscribe", "sub": "a", "query": Q}, "unauthorized", "a",
                       words="authenticate first")
    finally:
        await ws.close()


async def test_no_authentication_in_time_closes_4408(cluster: LiveCluster) -> None:
    ws = await Ws.connect(cluster.ws_url(1))
    assert (await ws.error(timeout=5))["code"] == "unauthorized"
    await ws.ws.wait_closed()
    assert ws.ws.close_code == 4408


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda: token(new_tenant(), ttl=-10), id="expired"),
        pytest.param(lambda: jwt.encode({"tenant": "a", "exp": 2**40}, "",
                                        algorithm="none"), id="alg-none"),
        pytest.param(lambda: token(new_tenant(), key="another-key-" + "x" * 40), id="wrong-key"),
        pytest.param(lambda: token(None), id="no-tenant"),
    ],
)
@pytest.mark.parametrize("where", ["header", "query"])
async def test_bad_token_at_the_handshake_closes_4401(
    cluster: LiveCluster, bad: Any, where: str
) -> None:
    ws = await Ws.connect(cluster.ws_url(), bad(), query_token=where == "query")
    assert (await ws.error())["code"] == "unauthorized"
    await ws.ws.wait_closed()
    assert ws.ws.close_code == 4401


async def test_bad_token_in_an_auth_message_keeps_the_connection(cluster: LiveCluster) -> None:
    ws = await Ws.connect(cluster.ws_url())
    try:
        await _refused(ws, {"type": "auth", "token": token(new_tenant(), ttl=-5)},
                       "unauthorized", words="expired")
    finally:
        await ws.close()


async def test_missing_scope_is_forbidden(cluster: LiveCluster) -> None:
    ws = await Ws.connect(cluster.ws_url(), token(new_tenant(), scope="lq:read:notes"))
    try:
        await _refused(ws, {"type": "subscribe", "sub": "a", "query": Q}, "forbidden", "a",
                       words="lq:read:tasks")
        await ws.subscribe("n", {"entity": "notes", "limit": 2})
    finally:
        await ws.close()


async def test_a_second_tenant_sees_only_its_own_rows(cluster: LiveCluster) -> None:
    a, b = token(new_tenant()), token(new_tenant())
    async with httpx.AsyncClient(base_url=cluster.url()) as http:
        await http.put("/v1/entities/tasks/rows/secret", json={"priority": 1}, headers=auth(a))
        ws = await Ws.connect(cluster.ws_url(), b)
        try:
            view = await ws.subscribe("a", Q)
            assert view.current() == []
            await http.put("/v1/entities/tasks/rows/secret2", json={"priority": 2},
                           headers=auth(a))
            await http.put("/v1/entities/tasks/rows/mine", json={"priority": 3}, headers=auth(b))
            await ws.settle(lambda: len(view.current()) == 1)
            assert [r.id for r in view.current()] == ["mine"]
        finally:
            await ws.close()


# -- SSE and long polling refusals (4xx JSON before anything starts)


@pytest.fixture
async def http(cluster: LiveCluster) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=cluster.url(), timeout=10) as client:
        yield client


@pytest.mark.parametrize("path", ["/v1/sse", "/v1/poll"])
@pytest.mark.parametrize(
    ("params", "headers", "status", "code"),
    [
        pytest.param({"q": json.dumps(Q)}, {}, 401, "unauthorized", id="no-token"),
        pytest.param({"q": json.dumps(Q)}, auth(token(scope="lq:read:notes")), 403, "forbidden",
                     id="missing-scope"),
        pytest.param({"q": "{not json"}, auth(token()), 400, "invalid_query", id="not-json"),
        pytest.param({"q": json.dumps({"entity": "tasks"})}, auth(token()), 400,
                     "invalid_query", id="no-limit"),
        pytest.param({}, auth(token()), 400, "invalid_query", id="no-q"),
        pytest.param({"q": json.dumps(Q), "x": "1"}, auth(token()), 400, "invalid_request",
                     id="unknown-param"),
        pytest.param({"q": json.dumps(Q), "token": token(ttl=-9)}, {}, 401, "unauthorized",
                     id="expired-query-token"),
    ],
)
async def test_http_live_refusals(http: httpx.AsyncClient, path: str, params: dict[str, str],
                                  headers: dict[str, str], status: int, code: str) -> None:
    r = await http.get(path, params=params, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"]["code"] == code


@pytest.mark.parametrize("path", ["/v1/sse", "/v1/poll"])
@pytest.mark.parametrize(
    ("q", "words"),
    [
        pytest.param(json.dumps({**Q, "where": {"price": {"$gt": BIG}}}),
                     f"where.price.$gt: {INT_RULE}; got {BIG}", id="big-integer"),
        pytest.param(json.dumps({**Q, "where": {"a": {"$in": [2**63]}}}),
                     f"where.a.$in[0]: {INT_RULE}", id="2**63-in"),
        pytest.param(json.dumps({**Q, "where": {"a": {"$gte": 0, "$lt": 2**64}}}),
                     f"where.a.$lt: {INT_RULE}", id="big-range"),
        pytest.param(json.dumps({**Q, "after": -(2**63) - 1}), f"after: {INT_RULE}",
                     id="big-after"),
        pytest.param(json.dumps({**Q, "where": {"a": deep(300)}}),
                     "where.a[0][0][0][0][0][0] ...118 more... [0][0]: " + DEPTH_RULE,
                     id="300-deep"),
        pytest.param("[" * 2000 + "]" * 2000, f"q: {DEPTH_RULE}", id="2000-deep"),
    ],
)
async def test_http_live_refuses_values_naming_where(http: httpx.AsyncClient, path: str, q: str,
                                                     words: str) -> None:
    r = await http.get(path, params={"q": q, "wait": "0"} if path == "/v1/poll" else {"q": q},
                       headers=auth(token()))
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert error["code"] == "invalid_query"
    assert words in error["message"]


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        pytest.param({"poll": "nope"}, 410, "gone", id="unknown-handle"),
        pytest.param({"poll": "nope", "q": json.dumps(Q)}, 400, "invalid_request", id="both"),
        pytest.param({"q": json.dumps(Q), "wait": "soon"}, 400, "invalid_request", id="bad-wait"),
        pytest.param({"q": json.dumps(Q), "after": "3"}, 400, "invalid_request",
                     id="after-without-handle"),
    ],
)
async def test_poll_refusals(http: httpx.AsyncClient, params: dict[str, str], status: int,
                             code: str) -> None:
    r = await http.get("/v1/poll", params=params, headers=auth(token()))
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


@pytest.mark.parametrize("after", ["\u00b2", "\u0661", "1_0", "9" * 19, "-1"])
async def test_poll_after_is_an_ascii_seq(http: httpx.AsyncClient, after: str) -> None:
    r = await http.get("/v1/poll", params={"q": json.dumps(Q), "wait": "0"},
                       headers=auth(token()))
    handle = r.json()["poll"]
    r = await http.get("/v1/poll", params={"poll": handle, "after": after, "wait": "0"},
                       headers=auth(token()))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_request"


async def test_a_poll_handle_of_another_tenant_is_gone(http: httpx.AsyncClient) -> None:
    a, b = token(new_tenant()), token(new_tenant())
    r = await http.get("/v1/poll", params={"q": json.dumps(Q), "wait": "5"}, headers=auth(a))
    handle = r.json()["poll"]
    for method in ("GET", "DELETE"):
        other = await http.request(method, "/v1/poll", params={"poll": handle}, headers=auth(b))
        assert other.status_code == 410 and other.json()["error"]["code"] == "gone"
    assert (await http.delete("/v1/poll", params={"poll": handle}, headers=auth(a))).status_code \
        == 200
    again = await http.get("/v1/poll", params={"poll": handle, "wait": "0"}, headers=auth(a))
    assert again.status_code == 410


async def test_admin_scope_guards_the_cluster_view(http: httpx.AsyncClient) -> None:
    assert (await http.get("/v1/cluster")).status_code == 401
    r = await http.get("/v1/cluster", headers=auth(token()))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = await http.get("/v1/cluster", headers=auth(token(scope="lq:admin")))
    assert r.status_code == 200
    body = r.json()
    assert [s["id"] for s in body["shards"]] == ["shard-0"]
    assert body["shards"][0]["owns"] == 256 and "subscriptions" in body["shards"][0]
    assert body["gateway"] in {g["id"] for g in body["gateways"]}
    assert len(body["gateways"]) == 2


# -- fuzzing the live socket (the parser itself: tests/test_live_wire.py)

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                  max_size=3),
    max_leaves=8,
)
_messages = st.one_of(
    st.text(max_size=40),
    _json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["subscribe", "unsubscribe", "reanchor", "ping", "auth"])},
        optional={"sub": _json_values, "query": _json_values, "after": _json_values,
                  "limit": _json_values, "t": _json_values, "token": _json_values},
    ).map(json.dumps),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(_messages, min_size=1, max_size=4))
def test_fuzzed_messages_never_break_the_connection(cluster: LiveCluster,
                                                    batch: list[str]) -> None:
    async def run() -> None:
        ws = await Ws.connect(cluster.ws_url(), token(new_tenant()))
        try:
            for message in batch:
                await ws.send(message)
            await _still_open(ws)
            assert not [m for m in ws.messages if m.get("code") == "internal"]
        finally:
            await ws.close()

    asyncio.run(run())



