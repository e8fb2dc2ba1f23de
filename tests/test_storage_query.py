"""The one-shot query (`run_query`) against the plain-Python oracle, paged with cursors."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.query import CursorSigner, parse_query
from cluster.settings import StorageSettings
from lq.chaos.oracle import oracle_query
from storage import QueryPage, RedisClient, RowStore, WriteOp, WriteResult, run_batch, run_query
from storage import oneshot as oneshot_module
from tests.storage_helpers import KEYS, open_client

SIGNER = CursorSigner(b"s" * 32)
ENTITY = "items"
_tenants = itertools.count()

# -- strategies -------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.sampled_from([0.5, -1.5, 2.0, 1e20, 2**53 + 1]),
    st.text(alphabet="abAé\U0001f600", max_size=3),
)
values = st.one_of(
    scalars,
    st.lists(st.integers(0, 3), max_size=2),
    st.fixed_dictionaries({}, optional={"x": scalars, "y": scalars}),
)
row_values = st.fixed_dictionaries({}, optional={"a": values, "b": values, "c": values})
row_sets = st.dictionaries(
    st.text(alphabet="pqrß", min_size=1, max_size=4), row_values, min_size=50, max_size=200
)

COLUMNS = ("a", "b", "c", "a.x", "b.y")
ops_on_scalars = st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"])


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    column = draw(st.sampled_from(COLUMNS))
    kind = draw(st.sampled_from(["cmp", "in", "exists", "bare", "prefix", "contains"]))
    if kind == "cmp":
        op = draw(ops_on_scalars)
        operand = draw(scalars.filter(lambda v: v is not None or op in ("$eq", "$ne")))
        return {column: {op: operand}}
    if kind == "in":
        return {column: {draw(st.sampled_from(["$in", "$nin"])): draw(st.lists(scalars,
                                                                             max_size=3))}}
    if kind == "exists":
        return {column: {"$exists": draw(st.booleans())}}
    if kind == "prefix":
        return {column: {"$prefix": draw(st.text(alphabet="abA", max_size=1))}}
    if kind == "contains":
        return {column: {"$contains": draw(st.one_of(st.integers(0, 3), st.just("a")))}}
    return {column: draw(scalars)}


@st.composite
def filters(draw: st.DrawFn) -> dict[str, Any]:
    shape = draw(st.sampled_from(["none", "one", "and", "or", "not"]))
    if shape == "none":
        return {}
    if shape == "one":
        return draw(conditions())
    if shape == "not":
        return {"$not": draw(conditions())}
    parts = draw(st.lists(conditions(), min_size=1, max_size=3))
    return {"$and" if shape == "and" else "$or": parts}


@st.composite
def queries(draw: st.DrawFn) -> dict[str, Any]:
    columns = draw(st.lists(st.sampled_from(COLUMNS), unique=True, max_size=2))
    sort = [("-" if draw(st.booleans()) else "") + c for c in columns]
    return {"where": draw(filters()), "sort": sort, "limit": draw(st.integers(1, 25))}


# -- helpers ----------------------------------------------------------------------------


async def write_rows(client: RedisClient, tenant: str, rows: dict[str, dict[str, Any]]) -> None:
    store = RowStore(client, StorageSettings())
    results = await run_batch(
        store, tenant, [WriteOp("put", ENTITY, rid, vals) for rid, vals in rows.items()]
    )
    assert all(isinstance(r, WriteResult) for r in results), results


async def page_through(
    client: RedisClient, tenant: str, query_json: dict[str, Any], scan_count: int = 1000
) -> list[QueryPage]:
    pages: list[QueryPage] = []
    after: str | None = None
    while True:
        query = parse_query({"entity": ENTITY, **query_json, "after": after}, signer=SIGNER)
        page = await run_query(client, KEYS, tenant, query, SIGNER, scan_count=scan_count)
        pages.append(page)
        assert len(page.rows) <= query.limit
        if page.next is None:
            return pages
        assert len(page.rows) == query.limit and page.next == page.rows[-1].cursor
        after = page.next
        assert len(pages) < 1000


async def check_against_oracle(
    client: RedisClient, tenant: str, rows: dict[str, dict[str, Any]], query_json: dict[str, Any]
) -> None:
    pages = await page_through(client, tenant, query_json, scan_count=37)
    got = [r.id for page in pages for r in page.rows]
    listed = list(rows.items())
    expected = oracle_query(listed, {**query_json, "limit": None})
    assert got == expected, (query_json, got, expected)
    # each page is the oracle's first `limit` rows after the previous page's last row
    previous: tuple[str, dict[str, Any]] | None = None
    for page in pages:
        assert [r.id for r in page.rows] == oracle_query(listed, query_json, after=previous)
        for r in page.rows:
            assert r.values == rows[r.id] and r.version > 0
        if page.rows:
            previous = (page.rows[-1].id, rows[page.rows[-1].id])
    if pages[-1].rows or len(pages) > 1:
        assert pages[-1].next is None


# -- tests ------------------------------------------------------------------------------


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RedisClient]:
    async with open_client(redis_url) as c:
        yield c


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=row_sets, query_list=st.lists(queries(), min_size=3, max_size=3))
async def test_query_pages_match_the_oracle(
    client: RedisClient, rows: dict[str, dict[str, Any]], query_list: list[dict[str, Any]]
) -> None:
    tenant = f"t{next(_tenants)}"
    await write_rows(client, tenant, rows)
    for query_json in query_list:
        await check_against_oracle(client, tenant, rows, query_json)


FIXED_QUERIES: list[dict[str, Any]] = [
    {"sort": [], "limit": 7},
    {"sort": ["-a"], "limit": 3},
    {"sort": ["b", "-a"], "limit": 11},
    {"where": {"a": {"$gte": 0}}, "sort": ["a"], "limit": 4},
    {"where": {"$or": [{"b": "a"}, {"c": {"$exists": False}}]}, "sort": ["-c"], "limit": 5},
]


async def test_fixed_queries_match_the_oracle(client: RedisClient) -> None:
    rows = {
        f"r{i:03d}": {k: v for k, v in (("a", i % 7 - 2), ("b", "ab"[i % 2]), ("c", i % 3))
                      if (i + len(k)) % 5}
        for i in range(120)
    }
    await write_rows(client, "fixed", rows)
    for query_json in FIXED_QUERIES:
        await check_against_oracle(client, "fixed", rows, query_json)


async def test_tenants_and_entities_are_separate(client: RedisClient) -> None:
    await write_rows(client, "one", {"a": {"n": 1}})
    await write_rows(client, "two", {"b": {"n": 2}})
    store = RowStore(client, StorageSettings())
    await store.put("one", "others", "c", {"n": 3})
    query = parse_query({"entity": ENTITY, "limit": 10}, signer=SIGNER)
    assert [r.id for r in (await run_query(client, KEYS, "one", query, SIGNER)).rows] == ["a"]
    assert [r.id for r in (await run_query(client, KEYS, "two", query, SIGNER)).rows] == ["b"]
    empty = await run_query(client, KEYS, "three", query, SIGNER)
    assert empty.rows == [] and empty.next is None


async def test_exact_page_boundary(client: RedisClient) -> None:
    await write_rows(client, "edge", {f"r{i}": {"n": i} for i in range(6)})
    pages = await page_through(client, "edge", {"sort": ["n"], "limit": 3})
    assert [[r.id for r in p.rows] for p in pages] == [["r0", "r1", "r2"], ["r3", "r4", "r5"]]
    assert pages[-1].next is None


async def test_memory_is_bounded_by_the_limit(
    client: RedisClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On 5,000 rows with limit 5 the kept set never holds more than limit + 1 rows."""
    rows = {f"r{i:05d}": {"n": (i * 7919) % 5000, "s": "ab"[i % 2]} for i in range(5000)}
    await write_rows(client, "big", rows)
    peak = 0
    offers = 0

    class Recording(oneshot_module._Best):
        def offer(self, key: bytes, row_id: str, version: int, values: Any) -> None:
            nonlocal peak, offers
            super().offer(key, row_id, version, values)
            offers += 1
            peak = max(peak, len(self.items), len(self.keys))

    monkeypatch.setattr(oneshot_module, "_Best", Recording)
    for sort in (["n"], ["-n"], ["s", "-n"], []):
        peak = 0
        query = parse_query({"entity": ENTITY, "sort": sort, "limit": 5}, signer=SIGNER)
        page = await run_query(client, KEYS, "big", query, SIGNER, scan_count=500)
        assert [r.id for r in page.rows] == oracle_query(list(rows.items()), {"sort": sort,
                                                                             "limit": 5})
        assert page.next == page.rows[-1].cursor
        assert 0 < peak <= 6
    assert offers > 0
