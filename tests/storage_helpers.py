"""Helpers shared by the storage tests (`tests/test_storage_*.py`).

Each test file defines its own small `client` fixture on top of `open_client`, so that
fixtures are never imported across modules.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from cluster.keys import Keys
from cluster.messages import Change
from cluster.partition import PARTITIONS, partition_of
from storage import RedisClient, StoredRow, connect
from storage._format import parse_stored

__all__ = [
    "KEYS",
    "PREFIX",
    "TENANT",
    "apply_changes",
    "entities_covering_partitions",
    "log_entries",
    "open_client",
    "redis_ms",
    "rows_key",
    "rows_state",
    "snapshot",
    "stored_rows",
]

TENANT = "acme"
PREFIX = "lq"  # the tests that build one adapter alone name its prefix
KEYS = Keys(PREFIX)


@asynccontextmanager
async def open_client(url: str, **options: Any) -> AsyncIterator[RedisClient]:
    """A client for `url`, closed on exit."""
    client = connect(url, **options)
    try:
        yield client
    finally:
        await client.aclose()


def rows_key(tenant: str, entity: str) -> str:
    return KEYS.rows(partition_of(tenant, entity), tenant, entity)


async def redis_ms(client: RedisClient) -> int:
    """Redis's clock in ms (all test servers run on this host, so any node will do)."""
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def log_entries(client: RedisClient, p: int) -> list[tuple[str, dict[str, bytes]]]:
    """Every entry of partition `p`'s log as (stream id, {field: value})."""
    raw: Any = await client.xrange(KEYS.events(p), "-", "+")
    return [(sid.decode(), {k.decode(): v for k, v in f.items()}) for sid, f in raw]


async def snapshot(client: RedisClient, tenant: str, entity: str) -> dict[str, Any]:
    """Everything a write to (tenant, entity) may touch, to compare before and after."""
    p = partition_of(tenant, entity)
    return {
        "rows": await client.hgetall(rows_key(tenant, entity)),
        "ver": await client.get(KEYS.version(p)),
        "ttl": await client.zrange(KEYS.ttl(p), 0, -1, withscores=True),
        "xlen": await client.xlen(KEYS.events(p)),
        "log": await client.xrange(KEYS.events(p), "-", "+"),
    }


async def stored_rows(
    client: RedisClient, tenant: str, entity: str
) -> dict[str, tuple[int, dict[str, Any]]]:
    """HGETALL of a collection: id -> (version, values), expired rows included."""
    raw: Any = await client.hgetall(rows_key(tenant, entity))
    out: dict[str, tuple[int, dict[str, Any]]] = {}
    for rid, value in raw.items():
        row = parse_stored(rid.decode(), value)
        out[row.id] = (row.version, row.values)
    return out


def apply_changes(
    state: dict[str, tuple[int, dict[str, Any]]],
    deleted: dict[str, int],
    changes: Iterable[Change],
) -> None:
    """Apply changes with the version rule: a change not newer than the last version
    applied for its id (a delete included) is ignored."""
    for change in changes:
        held = state.get(change.id)
        last = max(held[0] if held else 0, deleted.get(change.id, 0))
        if change.version <= last:
            continue
        if change.values is None:
            state.pop(change.id, None)
            deleted[change.id] = change.version
        else:
            state[change.id] = (change.version, change.values)


def rows_state(rows: Iterable[StoredRow]) -> dict[str, tuple[int, dict[str, Any]]]:
    return {r.id: (r.version, r.values) for r in rows}


def entities_covering_partitions(tenant: str = TENANT) -> dict[int, str]:
    """One entity name per partition (found by brute force), so that (tenant, entity)
    pairs cover all partitions."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < PARTITIONS:
        entity = f"e{n}"
        found.setdefault(partition_of(tenant, entity), entity)
        n += 1
    return found
