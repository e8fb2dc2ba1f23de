"""The HTTP data API end to end: a real gateway (uvicorn on loopback) over real Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx
import pytest
import redis

from cluster.keys import Keys
from cluster.logfmt import JsonLinesFormatter
from tests.gateway_helpers import ThreadServer, auth, token

pytest_plugins = ["tests.gateway_fixtures"]

H = auth(token("acme"))
ROW = "/v1/entities/tasks/rows/{}"


def put(
    http: httpx.Client, row_id: str, row: object, headers: dict[str, str] | None = None
) -> httpx.Response:
    return http.put(ROW.format(row_id), json=row, headers={**H, **(headers or {})})


def test_put_get_patch_delete_round_trip(http: httpx.Client) -> None:
    r = put(http, "t1", {"title": "write docs", "owner": {"name": "ada", "team": "core"}})
    assert r.status_code == 200, r.text
    v1 = r.json()["version"]
    assert r.json() == {"id": "t1", "version": v1}
    assert r.headers["etag"] == f'"{v1}"'
    r = http.get(ROW.format("t1"), headers=H)
    assert r.status_code == 200
    written = {"title": "write docs", "owner": {"name": "ada", "team": "core"}}
    assert r.json() == {"id": "t1", "version": v1, "row": written}
    assert r.headers["etag"] == f'"{v1}"'
    assert r.headers["content-type"] == "application/json"
    r = http.patch(
        ROW.format("t1"),
        content=json.dumps({"owner": {"team": None}, "done": True}),
        headers={**H, "Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    v2 = r.json()["version"]
    assert v2 > v1
    row = http.get(ROW.format("t1"), headers=H).json()["row"]
    assert row == {"title": "write docs", "owner": {"name": "ada"}, "done": True}
    r = http.delete(ROW.format("t1"), headers=H)
    assert r.status_code == 200
    assert r.json()["version"] > v2
    assert http.get(ROW.format("t1"), headers=H).status_code == 404
    assert http.delete(ROW.format("t1"), headers=H).status_code == 404
    r = http.patch(ROW.format("t1"), json={"a": 1}, headers=H)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    r = put(http, "t1", {"again": 1})
    assert r.json()["version"] > v2, "a re-created row keeps growing its version"


def test_ids_with_slashes_and_unicode_are_one_segment(http: httpx.Client) -> None:
    for row_id, path in (("a/b", "a%2Fb"), ("../x", "..%2Fx"), ("€ 1", "%E2%82%AC%201")):
        r = http.put(ROW.format(path), json={"k": row_id}, headers=H)
        assert r.status_code == 200, r.text
        assert r.json()["id"] == row_id
        assert http.get(ROW.format(path), headers=H).json()["row"] == {"k": row_id}
    r = http.post("/v1/entities/tasks/query", json={"limit": 10}, headers=H)
    assert sorted(x["id"] for x in r.json()["rows"]) == sorted(["a/b", "../x", "€ 1"])


def test_preconditions(http: httpx.Client) -> None:
    r = put(http, "p", {"n": 1}, headers={"If-None-Match": "*"})
    assert r.status_code == 200
    v1 = r.json()["version"]
    r = put(http, "p", {"n": 2}, headers={"If-None-Match": "*"})
    assert r.status_code == 412
    assert r.json()["error"] == {
        "code": "precondition_failed", "message": r.json()["error"]["message"], "version": v1
    }
    r = put(http, "p", {"n": 2}, headers={"If-Match": f'"{v1 + 1}"'})
    assert (r.status_code, r.json()["error"]["version"]) == (412, v1)
    r = put(http, "p", {"n": 2}, headers={"If-Match": f'"{v1}"'})
    assert r.status_code == 200
    v2 = r.json()["version"]
    r = http.patch(ROW.format("p"), json={"n": 3}, headers={**H, "If-Match": f'"{v1}"'})
    assert (r.status_code, r.json()["error"]["version"]) == (412, v2)
    r = http.patch(ROW.format("p"), json={"n": 3}, headers={**H, "If-Match": "*"})
    assert r.status_code == 200
    v3 = r.json()["version"]
    r = http.delete(ROW.format("p"), headers={**H, "If-Match": f'"{v2}"'})
    assert (r.status_code, r.json()["error"]["version"]) == (412, v3)
    assert http.get(ROW.format("p"), headers=H).json()["row"] == {"n": 3}
    r = http.get(ROW.format("p"), headers={**H, "If-None-Match": f'"{v3}"'})
    assert r.status_code == 304
    assert r.headers["etag"] == f'"{v3}"'
    assert http.delete(ROW.format("p"), headers={**H, "If-Match": f'"{v3}"'}).status_code == 200
    for method in ("PUT", "PATCH", "DELETE"):
        r = http.request(
            method, ROW.format("p"), headers={**H, "If-Match": f'"{v3}"'},
            json=None if method == "DELETE" else {"n": 4},
        )
        assert (r.status_code, r.json()["error"]["version"]) == (412, None), method
    assert http.get(ROW.format("p"), headers=H).status_code == 404


async def test_two_writers_with_one_if_match_exactly_one_wins(ahttp: httpx.AsyncClient) -> None:
    r = await ahttp.put(ROW.format("race"), json={"n": 0}, headers=H)
    version = r.json()["version"]
    for round_ in range(15):
        headers = {**H, "If-Match": f'"{version}"'}
        answers = await asyncio.gather(
            ahttp.put(ROW.format("race"), json={"n": round_, "w": "a"}, headers=headers),
            ahttp.patch(ROW.format("race"), json={"n": round_, "w": "b"}, headers=headers),
        )
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200, 412], statuses
        winner = next(a for a in answers if a.status_code == 200)
        loser = next(a for a in answers if a.status_code == 412)
        assert loser.json()["error"]["version"] == winner.json()["version"]
        version = winner.json()["version"]
        got = (await ahttp.get(ROW.format("race"), headers=H)).json()
        assert got["version"] == version


def test_ttl_rows_disappear_from_reads(http: httpx.Client) -> None:
    r = http.put(ROW.format("short"), json={"n": 1}, params={"ttl": "0.4"}, headers=H)
    assert r.status_code == 200, r.text
    put(http, "long", {"n": 2})
    r = http.put(ROW.format("patched"), json={"n": 3}, params={"ttl": "0.4"}, headers=H)
    assert http.patch(ROW.format("patched"), json={"m": 1}, headers=H).status_code == 200
    assert http.get(ROW.format("short"), headers=H).status_code == 200
    time.sleep(0.6)
    for row_id in ("short", "patched"):  # a patch keeps the row's expiry
        assert http.get(ROW.format(row_id), headers=H).status_code == 404
        assert http.delete(ROW.format(row_id), headers=H).status_code == 404
        assert http.patch(ROW.format(row_id), json={"n": 9}, headers=H).status_code == 404
    rows = http.post("/v1/entities/tasks/query", json={"limit": 10}, headers=H).json()["rows"]
    assert [x["id"] for x in rows] == ["long"]
    r = put(http, "short", {"n": 4}, headers={"If-None-Match": "*"})
    assert r.status_code == 200, "an expired row no longer exists for create-only"


def test_query_pages_with_cursors(http: httpx.Client) -> None:
    for i in range(7):
        put(http, f"r{i}", {"priority": i % 3, "status": "open" if i != 3 else "done"})
    body = {"where": {"status": "open"}, "sort": ["-priority"], "limit": 4}
    page = http.post("/v1/entities/tasks/query", json=body, headers=H).json()
    ids = [x["id"] for x in page["rows"]]
    assert ids == ["r2", "r5", "r1", "r4"]
    assert page["next"] == page["rows"][-1]["cursor"]
    assert all(set(x) == {"id", "version", "row", "cursor"} for x in page["rows"])
    page2 = http.post(
        "/v1/entities/tasks/query", json={**body, "after": page["next"]}, headers=H
    ).json()
    assert [x["id"] for x in page2["rows"]] == ["r0", "r6"]
    assert page2["next"] is None
    r = http.post(
        "/v1/entities/other/query", json={"limit": 4, "after": page["next"]}, headers=H
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_query"


def test_batch_each_op_its_own_result_in_order(http: httpx.Client) -> None:
    put(http, "b1", {"n": 1})
    ops = [
        {"op": "put", "entity": "tasks", "id": "b2", "row": {"n": 2}, "ttl": 60},
        {"op": "patch", "entity": "tasks", "id": "b1", "row": {"m": 1}},
        {"op": "delete", "entity": "tasks", "id": "missing"},
        {"op": "put", "entity": "bad-name", "id": "x", "row": {}},
        {"op": "put", "entity": "tasks", "id": "b3", "row": [1]},
        {"op": "put", "entity": "tasks", "id": "b1", "row": {"n": 5}, "if_match": 1},
        {"op": "nope", "entity": "tasks", "id": "x"},
        {"op": "delete", "entity": "tasks", "id": "b2"},
        "not an op",
    ]
    r = http.post("/v1/batch", json={"ops": ops}, headers=H)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == [200, 200, 404, 400, 422, 412, 400, 200, 400]
    assert results[0]["id"] == "b2" and results[7]["version"] > results[0]["version"]
    assert results[2]["error"]["code"] == "not_found"
    assert results[3]["error"]["code"] == "invalid_request"
    assert results[4]["error"]["code"] == "invalid_row"
    assert results[5]["error"]["code"] == "precondition_failed"
    assert results[5]["error"]["version"] == results[1]["version"]
    assert http.get(ROW.format("b1"), headers=H).json()["row"] == {"n": 1, "m": 1}
    assert http.get(ROW.format("b2"), headers=H).status_code == 404
    assert http.post("/v1/batch", json={"ops": []}, headers=H).json() == {"results": []}


def test_batch_scopes_are_per_op(http: httpx.Client) -> None:
    h = auth(token("acme", "lq:write:tasks"))
    ops = [
        {"op": "put", "entity": "tasks", "id": "a", "row": {}},
        {"op": "put", "entity": "notes", "id": "a", "row": {}},
    ]
    results = http.post("/v1/batch", json={"ops": ops}, headers=h).json()["results"]
    assert [x["status"] for x in results] == [200, 403]
    assert results[1]["error"]["code"] == "forbidden"


def test_health_ready_and_live_shards(http: httpx.Client, redis_url: str) -> None:
    assert http.get("/healthz").json() == {"ok": True}
    assert http.get("/readyz").json() == {"ready": True, "live_shards": 0}
    members = Keys().members()
    plain = redis_url.replace("redis+cluster", "redis")
    cls: Any = redis.RedisCluster if "cluster" in redis_url else redis.Redis
    client: Any = cls.from_url(plain)
    with client:
        now_ms = int(client.time()[0]) * 1000
        client.zadd(members, {"shard-0": now_ms + 60_000, "shard-1": now_ms + 60_000})
        client.zadd(members, {"shard-dead": now_ms - 1})
    assert http.get("/readyz").json() == {"ready": True, "live_shards": 2}


def test_metrics_count_requests_by_route_template(http: httpx.Client) -> None:
    put(http, "m1", {"n": 1})
    http.get(ROW.format("does-not-exist"), headers=H)
    text = http.get("/metrics").text
    route = 'route="/v1/entities/{entity}/rows/{id}"'
    assert f'lq_http_requests_total{{method="PUT",{route},status="200"}}' in text
    assert f'lq_http_requests_total{{method="GET",{route},status="404"}}' in text
    assert "lq_http_request_duration_seconds_bucket" in text
    assert "lq_redis_breaker_state 0.0" in text
    assert "m1" not in text and "does-not-exist" not in text


def _lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[dict[str, Any]]:
    """The JSON lines `lq gateway` writes for `logger`'s records (its formatter's)."""
    render = JsonLinesFormatter().format
    return [json.loads(render(r)) for r in caplog.records if r.name == logger]


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return _lines(caplog, "lq.gateway.access")


def test_one_json_log_line_per_request_without_the_token(
    http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    tok = token("acme")
    with caplog.at_level(logging.INFO, logger="lq.gateway.access"):
        http.put(ROW.format("l1"), json={"n": 1}, headers=auth(tok))
        http.get(ROW.format("l1"))
        deadline = time.monotonic() + 2  # the line is written just after the answer is sent
        while len(_access_lines(caplog)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = _access_lines(caplog)
    assert len(lines) == 2
    first, second = lines
    assert list(first)[:3] == ["ts", "level", "msg"] and first["level"] == "info"
    assert first["method"] == "PUT" and first["status"] == 200 and first["tenant"] == "acme"
    assert first["route"] == "/v1/entities/{entity}/rows/{id}"
    assert first["duration_ms"] >= 0
    assert second["status"] == 401 and second["tenant"] is None
    rendered = json.dumps(lines)
    assert tok not in caplog.text and "Bearer" not in caplog.text
    assert tok not in rendered and "Bearer" not in rendered


def test_openapi_describes_exactly_the_routes(gateway: ThreadServer, http: httpx.Client) -> None:
    from starlette.routing import Route, WebSocketRoute

    document = http.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    described = {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "put", "post", "patch", "delete"}
    }
    served = set()
    for route in gateway.app.routes:
        if isinstance(route, WebSocketRoute):
            continue  # OpenAPI does not describe WebSockets (docs/live.md does)
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":
                served.add((route.path, method))
    assert described == served


async def test_an_unexpected_exception_is_a_logged_500(caplog: pytest.LogCaptureFixture) -> None:
    from starlette.types import Receive, Scope, Send

    from gateway.access import Access
    from gateway.cors import OriginRules
    from gateway.front import Front
    from gateway.metrics import Metrics

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("bug with secret detail")

    metrics = Metrics()
    app = Front(broken, broken, Access(metrics), OriginRules.parse(""))
    transport = httpx.ASGITransport(app=app)
    with caplog.at_level(logging.INFO, logger="lq.gateway"):
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            r = await client.get("/anything", headers=H)
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "internal", "message": "internal error"}}
    errors = _lines(caplog, "lq.gateway")
    assert errors and "RuntimeError" in errors[0]["error"]
    assert _access_lines(caplog)[0]["status"] == 500
    assert 'route="unmatched",status="500"' in metrics.render().decode()
    assert H["Authorization"] not in caplog.text
    assert H["Authorization"] not in json.dumps([*errors, *_access_lines(caplog)])
