"""One-shot queries from memory (`shard.first_rows` + `cluster.query.page_of`) equal the
scan (`storage.run_query`) on random data and random queries, page by page: the same
rows, versions, values, order, cursors and `next`, down to the bytes of the answer.

The collection is loaded the way a shard loads it (`ChangeLog.load_collection`), its
sort index made by a window view of the same sort (as a subscription would), and the
rows expired but not yet deleted hidden with `ChangeLog.query_mark`, as the shard does.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.partition import partition_of
from cluster.query import CursorSigner, Query, page_of, parse_query
from cluster.settings import StorageSettings
from shard import Matcher, Row, first_rows
from storage import ChangeLog, RedisClient, RowStore, run_query
from tests.storage_helpers import KEYS, open_client
from tests.test_storage_query import ENTITY, queries, row_sets, write_rows

SIGNER = CursorSigner(b"s" * 32)
_tenants = itertools.count()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RedisClient]:
    async with open_client(redis_url) as c:
        yield c


async def load(client: RedisClient, tenant: str, sorts: list[list[str]]) -> Matcher:
    """The collection as a shard holds it, with one window view (an index) per sort."""
    log = ChangeLog(client, StorageSettings())
    loaded = await log.load_collection(tenant, ENTITY)
    matcher = Matcher(SIGNER)
    matcher.load(tenant, ENTITY, [Row(r.id, r.version, r.values) for r in loaded.rows])
    for change in loaded.changes:
        matcher.apply(change)
    for i, sort in enumerate(sorts):
        q = parse_query({"entity": ENTITY, "sort": sort, "limit": 1}, signer=SIGNER)
        matcher.subscribe(f"s{i}", tenant, q)
    return matcher


async def memory_page(client: RedisClient, matcher: Matcher, tenant: str, query: Query,
                      budget: int = 1_000_000) -> bytes | None:
    coll = matcher.collection(tenant, ENTITY)
    assert coll is not None
    _, _, hidden = await ChangeLog(client, StorageSettings()).query_mark(tenant, ENTITY, 1000)
    assert hidden is not None
    ranked = first_rows(coll, query, hidden, budget)
    return None if ranked is None else page_of(query, SIGNER, ranked).encode()


async def compare_pages(client: RedisClient, matcher: Matcher, tenant: str,
                        query_json: dict[str, Any]) -> int:
    """Page through both paths with the same cursors; how many pages matched."""
    after: str | None = None
    for n in range(1, 501):
        query = parse_query({"entity": ENTITY, **query_json, "after": after}, signer=SIGNER)
        scanned = await run_query(client, KEYS, tenant, query, SIGNER, scan_count=53)
        memory = await memory_page(client, matcher, tenant, query)
        assert memory == scanned.encode(), (query_json, after)
        if scanned.next is None:
            return n
        after = scanned.next
    raise AssertionError(f"more than 500 pages: {query_json}")


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=row_sets, query_list=st.lists(queries(), min_size=4, max_size=4),
       indexed=st.booleans())
async def test_memory_equals_the_scan(
    client: RedisClient, rows: dict[str, dict[str, Any]], query_list: list[dict[str, Any]],
    indexed: bool,
) -> None:
    """Random rows, filters, sorts and limits, every page: with the sort's index held
    (the walk), and without it (a small collection sorted whole)."""
    tenant = f"t{next(_tenants)}"
    await write_rows(client, tenant, rows)
    sorts = [q["sort"] for q in query_list] if indexed else []
    matcher = await load(client, tenant, sorts)
    for query_json in query_list:
        await compare_pages(client, matcher, tenant, query_json)


async def test_memory_follows_changes_and_hides_expired_rows(client: RedisClient) -> None:
    """After puts, deletes and re-creates applied from the log (as the tail does), and
    with rows whose TTL has passed but which the owner has not deleted yet."""
    rng = random.Random(7)
    tenant = "changing"
    store = RowStore(client, StorageSettings())
    log = ChangeLog(client, StorageSettings())
    for i in range(150):
        await store.put(tenant, ENTITY, f"r{i:03d}", {"n": rng.randint(0, 20), "s": "ab"[i % 2]})
    matcher = await load(client, tenant, [["n"], ["-s", "n"]])
    position, _ = await log.mark(partition_of(tenant, ENTITY))
    for i in rng.sample(range(150), 40):
        rid = f"r{i:03d}"
        if i % 3 == 0:
            await store.delete(tenant, ENTITY, rid)
        else:
            await store.put(tenant, ENTITY, rid, {"n": rng.randint(0, 20), "s": "b"})
    for i in range(150, 160):  # short-lived rows: expired before the queries below
        await store.put(tenant, ENTITY, f"r{i:03d}", {"n": 5, "s": "a"}, ttl_ms=30)
    read = await log.read(partition_of(tenant, ENTITY), position)
    for change in read.changes:
        matcher.apply(change)
    await asyncio.sleep(0.1)
    _, _, hidden = await log.query_mark(tenant, ENTITY, 1000)
    assert hidden is not None and len(hidden) == 10  # expired, still stored
    for query_json in ({"sort": ["n"], "limit": 7}, {"sort": ["-s", "n"], "limit": 13},
                       {"where": {"n": {"$gte": 4, "$lt": 9}}, "sort": ["n"], "limit": 5},
                       {"where": {"s": "a"}, "sort": [], "limit": 9}):
        assert await compare_pages(client, matcher, tenant, query_json) >= 2


async def test_a_walk_over_budget_gives_way_to_the_scan(client: RedisClient) -> None:
    tenant = "budget"
    await write_rows(client, tenant, {f"r{i}": {"n": i} for i in range(300)})
    matcher = await load(client, tenant, [["n"]])
    rare = parse_query({"entity": ENTITY, "where": {"n": 299}, "sort": [], "limit": 5},
                       signer=SIGNER)
    assert await memory_page(client, matcher, tenant, rare, budget=100) is None
    assert await memory_page(client, matcher, tenant, rare, budget=1000) is not None
    # the filter bounds the walk on the first sort column: 1 row tested, not 300
    bounded = parse_query({"entity": ENTITY, "where": {"n": 299}, "sort": ["n"], "limit": 5},
                          signer=SIGNER)
    page = await memory_page(client, matcher, tenant, bounded, budget=2)
    assert page is not None and b'"r299"' in page

