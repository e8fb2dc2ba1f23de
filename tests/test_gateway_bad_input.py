"""The bad-input table: each row one request with its documented status and error code.

Every refused request must also leave the data unchanged: the test checks that the one
row written before it is still there, with the same version, and nothing else exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.gateway_helpers import auth, token

pytest_plugins = ["tests.gateway_fixtures"]

H = auth(token("acme"))
ROWS = "/v1/entities/tasks/rows/"
QUERY = "/v1/entities/tasks/query"
MIB = 1024 * 1024
IQ = "invalid_query"


@dataclass
class Case:
    method: str
    path: str
    status: int
    code: str
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    params: Any = None
    chunked: bool = False
    contains: str = ""


def _chunks(size: int) -> Iterator[bytes]:
    yield b'{"a": "'
    for _ in range(size // 65536):
        yield b"x" * 65536
    yield b'"}'


def entity(method: str, name: str, **kw: Any) -> Case:
    return Case(method, f"/v1/entities/{name}/rows/r1", 400, "invalid_request", **kw)


def query(status: int, code: str, body: Any = None, **kw: Any) -> Case:
    return Case("POST", QUERY, status, code, json=body, **kw)


def batch(status: int, code: str, body: Any) -> Case:
    return Case("POST", "/v1/batch", status, code, json=body)


def row(status: int, code: str, method: str = "PUT", rid: str = "r1", **kw: Any) -> Case:
    return Case(method, ROWS + rid, status, code, **kw)


CASES = {
    # bodies
    "malformed json": row(400, "invalid_request", content=b'{"a": '),
    "empty body": row(400, "invalid_request", content=b""),
    "trailing garbage": row(400, "invalid_request", content=b'{"a": 1} x'),
    "NaN is not JSON": row(400, "invalid_request", content=b'{"a": NaN}'),
    "too deep": row(400, "invalid_request", content=b"[" * 2000 + b"]" * 2000),
    "invalid utf-8": row(400, "invalid_request", content=b'{"a": "\xff"}'),
    "array body": row(422, "invalid_row", json=[1, 2]),
    "string body": row(422, "invalid_row", json="row"),
    "null body": row(422, "invalid_row", json=None, content=b"null"),
    "patch with array": row(422, "invalid_row", "PATCH", json=[{"a": 1}]),
    "oversized body": row(413, "too_large", content=b'{"a": "' + b"x" * (MIB + 10) + b'"}'),
    "oversized chunked body": row(413, "too_large", chunked=True),
    "oversized row": row(413, "too_large", json={"a": "x" * (300 * 1024)}),
    # names and ids
    "entity with dash": entity("PUT", "bad-name", json={}),
    "entity starting with digit": entity("GET", "1tasks"),
    "entity too long": entity("GET", "e" * 65),
    "entity with encoded slash": entity("GET", "a%2Fb"),
    "entity path trick": entity("GET", "..%2F..%2Fx"),
    "entity with NUL": entity("GET", "ta%00sks"),
    "entity with colon": entity("GET", "a%3Ab"),
    "query entity bad": Case(
        "POST", "/v1/entities/no-no/query", 400, "invalid_request", json={"limit": 1}
    ),
    "id with NUL": row(400, "invalid_request", "GET", rid="a%00b"),
    "id with newline": row(400, "invalid_request", "PUT", rid="a%0Ab", json={}),
    "id with DEL": row(400, "invalid_request", "DELETE", rid="a%7Fb"),
    "id too long": row(400, "invalid_request", "GET", rid="i" * 257),
    "id not utf-8": row(400, "invalid_request", "GET", rid="%FF%FE"),
    "unencoded slash in id": row(404, "not_found", "GET", rid="a/b"),
    "slash in entity segment": Case("GET", "/v1/entities/tasks%2Frows/r1", 404, "not_found"),
    # parameters and headers
    "ttl not a number": row(400, "invalid_request", json={}, params={"ttl": "soon"}),
    "ttl zero": row(400, "invalid_request", json={}, params={"ttl": "0"}),
    "ttl negative": row(400, "invalid_request", json={}, params={"ttl": "-5"}),
    "ttl nan": row(400, "invalid_request", json={}, params={"ttl": "nan"}),
    "ttl inf": row(400, "invalid_request", json={}, params={"ttl": "inf"}),
    "ttl too large": row(400, "invalid_request", json={}, params={"ttl": "1e12"}),
    "ttl twice": row(400, "invalid_request", json={}, params=[("ttl", "1"), ("ttl", "2")]),
    "ttl on delete": row(400, "invalid_request", "DELETE", params={"ttl": "5"}),
    "unknown parameter": row(400, "invalid_request", json={}, params={"tll": "5"}),
    "if-match garbage": row(400, "invalid_request", json={}, headers={"If-Match": "abc"}),
    "if-match list": row(400, "invalid_request", json={}, headers={"If-Match": '"1", "2"'}),
    "both preconditions": row(
        400, "invalid_request", json={}, headers={"If-Match": '"1"', "If-None-Match": "*"}
    ),
    "if-none-match version on put": row(
        400, "invalid_request", json={}, headers={"If-None-Match": '"5"'}
    ),
    "if-none-match on patch": row(
        400, "invalid_request", "PATCH", json={}, headers={"If-None-Match": "*"}
    ),
    # queries
    "query unknown operator": query(
        400, IQ, {"where": {"a": {"$regex": "x"}}, "limit": 5}, contains="$regex"
    ),
    "query unknown top operator": query(
        400, IQ, {"where": {"$where": "1"}, "limit": 5}, contains="$where"
    ),
    "query with entity": query(400, IQ, {"entity": "tasks", "limit": 5}, contains="entity"),
    "query with mode": query(400, IQ, {"mode": "changes", "limit": 5}, contains="mode"),
    "query without limit": query(400, IQ, {}, contains="limit"),
    "query limit too big": query(400, IQ, {"limit": 1001}),
    "query bad cursor": query(400, IQ, {"limit": 5, "after": "AAAA"}, contains="after"),
    "query array body": query(400, IQ, []),
    "query malformed json": query(400, "invalid_request", content=b"{"),
    # batches
    "batch not an object": batch(400, "invalid_request", []),
    "batch without ops": batch(400, "invalid_request", {}),
    "batch extra field": batch(400, "invalid_request", {"ops": [], "x": 1}),
    "batch too many ops": batch(
        413, "too_large", {"ops": [{"op": "delete", "entity": "tasks", "id": "x"}] * 1001}
    ),
    # endpoints
    "no such endpoint": Case("GET", "/v1/nothing", 404, "not_found"),
    "method not allowed": Case("POST", ROWS + "r1", 405, "invalid_request", json={}),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_input(shttp: httpx.Client, case: Case) -> None:
    before = shttp.put(ROWS + "keep", json={"n": 1}, headers=H).json()["version"]
    kwargs: dict[str, Any] = {"headers": {**H, **case.headers}, "params": case.params}
    if case.chunked:
        kwargs["content"] = _chunks(MIB + 100)
    elif case.content is not None:
        kwargs["content"] = case.content
        kwargs["headers"]["Content-Type"] = "application/json"
    elif case.json is not None:
        kwargs["json"] = case.json
    r = shttp.request(case.method, case.path, **kwargs)
    assert r.status_code == case.status, r.text
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert error["code"] == case.code
    assert isinstance(error["message"], str) and error["message"]
    assert case.contains in error["message"]
    if case.status == 405:
        assert "GET" in r.headers["allow"]
    page = shttp.post(QUERY, json={"limit": 10}, headers=H).json()
    assert [(x["id"], x["version"]) for x in page["rows"]] == [("keep", before)]


def test_batch_op_row_over_the_limit_fails_alone(shttp: httpx.Client) -> None:
    ops = [
        {"op": "put", "entity": "tasks", "id": "big", "row": {"a": "x" * (300 * 1024)}},
        {"op": "put", "entity": "tasks", "id": "small", "row": {"a": 1}},
    ]
    results = shttp.post("/v1/batch", json={"ops": ops}, headers=H).json()["results"]
    assert [x["status"] for x in results] == [413, 200]
    assert results[0]["error"]["code"] == "too_large"


def test_a_dotted_id_is_just_an_id(shttp: httpx.Client) -> None:
    r = shttp.put(ROWS + "..%2F..%2Fadmin", json={"n": 1}, headers=H)
    assert r.status_code == 200
    assert r.json()["id"] == "../../admin"
    assert shttp.get(ROWS + "..%2F..%2Fadmin", headers=H).json()["row"] == {"n": 1}
