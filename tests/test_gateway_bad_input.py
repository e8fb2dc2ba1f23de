"""The bad-input table: each row one request with its documented status and error code.

Every refused request must also leave the data unchanged: the test checks that the one
row written before it is still there, with the same version, and nothing else exists.
"""

from __future__ import annotations

import json
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


BIG = b"12345678901234567890123"
INT_RULE = "integers must fit in signed 64 bits (-9223372036854775808 to 9223372036854775807)"
DEPTH_RULE = "nested too deep: arrays and objects nest at most 128 levels"
DEEP = b"[" * 300 + b"]" * 300
# the path to the 129th level, as error messages show it (first 8 steps, last 2)
DEEP_ROW = "row" + "[0]" * 8 + " ...118 more... [0][0]"


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
    # integers outside signed 64 bits and deep nesting: refused naming where, never rounded
    "put big integer": row(400, "invalid_request", content=b'{"a": {"b": ' + BIG + b"}}",
                           contains=f"row.a.b: {INT_RULE}; got 12345678901234567890123"),
    "put 2**63": row(400, "invalid_request", content=b'{"n": 9223372036854775808}',
                     contains=f"row.n: {INT_RULE}"),
    "put -2**63-1": row(400, "invalid_request", content=b'{"n": [-9223372036854775809]}',
                        contains=f"row.n[0]: {INT_RULE}"),
    "put 2**64": row(400, "invalid_request", content=b'{"n": 18446744073709551616}',
                     contains="row.n: integers must fit"),
    "put 400 digits": row(400, "invalid_request", content=b'{"n": ' + b"9" * 400 + b"}",
                          contains="row.n: integers must fit"),
    "put 300-deep array": row(400, "invalid_request", content=b'{"a": ' + DEEP + b"}",
                              contains="row.a[0][0][0][0][0][0][0] ...118 more... [0][0]: "
                              + DEPTH_RULE),
    "put 300-deep object": row(400, "invalid_request",
                               content=b'{"k":' * 300 + b"1" + b"}" * 300,
                               contains="row.k.k.k.k.k.k.k.k ...118 more... .k.k: "
                               + DEPTH_RULE),
    "put 300-deep array body": row(400, "invalid_request", content=DEEP,
                                   contains=f"{DEEP_ROW}: {DEPTH_RULE}"),
    "patch big integer": row(400, "invalid_request", "PATCH", rid="keep",
                             content=b'{"n": ' + BIG + b"}", contains=f"patch.n: {INT_RULE}"),
    "patch 2**63": row(400, "invalid_request", "PATCH", rid="keep",
                       content=b'{"n": {"m": 9223372036854775808}}',
                       contains="patch.n.m: integers must fit"),
    "patch 300-deep": row(400, "invalid_request", "PATCH", rid="keep",
                          content=b'{"n": ' + DEEP + b"}", contains="patch.n[0]"),
    "batch big integer": Case(
        "POST", "/v1/batch", 400, "invalid_request",
        content=b'{"ops": [{"op": "put", "entity": "tasks", "id": "b1", "row": {"a": 1}},'
                b' {"op": "patch", "entity": "tasks", "id": "keep", "row": {"x": ' + BIG
                + b"}}]}",
        contains=f"ops[1].row.x: {INT_RULE}"),
    "batch -2**63-1 if_match": Case(
        "POST", "/v1/batch", 400, "invalid_request",
        content=b'{"ops": [{"op": "delete", "entity": "tasks", "id": "keep",'
                b' "if_match": -9223372036854775809}]}',
        contains="ops[0].if_match: integers must fit"),
    "batch 300-deep": Case(
        "POST", "/v1/batch", 400, "invalid_request",
        content=b'{"ops": [{"op": "put", "entity": "tasks", "id": "b1", "row": {"a": '
                + DEEP + b"}}]}",
        contains="ops[0].row.a[0][0][0][0] ...118 more... [0][0]: " + DEPTH_RULE),
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
    "ttl with underscore": row(400, "invalid_request", json={}, params={"ttl": "1_0"}),
    "ttl with spaces": row(400, "invalid_request", json={}, params={"ttl": " 5 "}),
    "ttl arabic digit": row(400, "invalid_request", json={}, params={"ttl": "\u0665"}),
    "unknown parameter": row(400, "invalid_request", json={}, params={"tll": "5"}),
    "if-match garbage": row(400, "invalid_request", json={}, headers={"If-Match": "abc"}),
    "if-match list": row(400, "invalid_request", json={}, headers={"If-Match": '"1", "2"'}),
    "if-match 2**63": row(400, "invalid_request", json={},
                          headers={"If-Match": '"9223372036854775808"'}),
    "if-match 20 digits": row(400, "invalid_request", "DELETE", rid="keep",
                              headers={"If-Match": "18446744073709551615"}),
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
    "query big $gt": query(
        400, IQ, content=b'{"where": {"price": {"$gt": ' + BIG + b'}}, "limit": 5}',
        contains=f"where.price.$gt: {INT_RULE}"),
    "query 2**63 in $in": query(
        400, IQ, content=b'{"where": {"a": {"$in": [1, 9223372036854775808]}}, "limit": 5}',
        contains="where.a.$in[1]: integers must fit"),
    "query -2**63-1 bare": query(
        400, IQ, content=b'{"where": {"a.b": -9223372036854775809}, "limit": 5}',
        contains="where.a.b: integers must fit"),
    "query big range": query(
        400, IQ, content=b'{"where": {"a": {"$gte": 0, "$lt": 18446744073709551616}},'
                         b' "limit": 5}', contains="where.a.$lt: integers must fit"),
    "query big after": query(400, IQ, content=b'{"after": ' + BIG + b', "limit": 5}',
                             contains=f"after: {INT_RULE}"),
    "query big limit": query(400, IQ, content=b'{"limit": 9223372036854775808}',
                             contains="limit: integers must fit"),
    "query 300-deep value": query(
        400, IQ, content=b'{"where": {"a": ' + DEEP + b'}, "limit": 5}',
        contains="where.a[0][0][0][0][0][0] ...118 more... [0][0]: " + DEPTH_RULE),
    "query 2000-deep": query(400, IQ, content=b"[" * 2000 + b"]" * 2000,
                             contains=f"query: {DEPTH_RULE}"),
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


EDGE_ROW = (b'{"max": 9223372036854775807, "min": -9223372036854775808,'
            b' "f": 1.2345678901234568e+22, "g": 12345678901234567890.0,'
            b' "deep": ' + b"[" * 127 + b"]" * 127 + b"}")


def test_edge_values_are_stored_exactly(shttp: httpx.Client) -> None:
    """2**63-1 and -2**63 stay integers, floats stay floats, 128 levels are accepted."""
    headers = {**H, "Content-Type": "application/json"}
    assert shttp.put(ROWS + "edge", content=EDGE_ROW, headers=headers).status_code == 200
    row = json.loads(shttp.get(ROWS + "edge", headers=H).content)["row"]  # exact integers
    assert row == json.loads(EDGE_ROW)
    assert [type(row[k]) for k in ("max", "min", "f", "g")] == [int, int, float, float]
    patch = b'{"max": -9223372036854775808, "deep": null}'
    assert shttp.patch(ROWS + "edge", content=patch, headers=headers).status_code == 200
    row = json.loads(shttp.get(ROWS + "edge", headers=H).content)["row"]
    assert row["max"] == -(2**63) and "deep" not in row
    where = b'{"where": {"min": -9223372036854775808, "f": {"$gt": 1.2e22}}, "limit": 5}'
    page = shttp.post(QUERY, content=where, headers=headers).json()
    assert [r["id"] for r in page["rows"]] == ["edge"]
    where = b'{"where": {"max": {"$in": [9223372036854775807]}}, "limit": 5}'
    assert shttp.post(QUERY, content=where, headers=headers).json()["rows"] == []
