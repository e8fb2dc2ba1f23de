"""The one-shot query: scan one collection, keep the best `limit + 1` rows, page on.

Memory is O(limit) however large the collection: the hash is read with HSCAN in
batches and only the current best `limit + 1` rows (by sort key) are kept. Expired rows
are hidden by Redis's clock (as of one `now` read before the scan). The page, its cursors
and `next` come from `cluster.query.page_of`, the rule the in-memory answer of the owner
shard uses too. HSCAN may repeat a row; a repeat replaces the copy held (newest version
wins).
"""

from __future__ import annotations

from typing import Any

from sortedcontainers import SortedList

from cluster import codec
from cluster.keys import Keys
from cluster.partition import partition_of
from cluster.query import CursorSigner, Query, QueryPage, QueryRow, page_of

from . import _lua
from ._scan import hscan_batches
from .connection import RedisClient

__all__ = ["QueryPage", "QueryRow", "run_query"]

_NOW = _lua.load("now")


class _Best:
    """The `size` smallest (key, id, version, values) seen, one entry per id."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: Any = SortedList()
        self.keys: dict[str, tuple[bytes, str, int, Any]] = {}

    def offer(self, key: bytes, row_id: str, version: int, values: Any) -> None:
        held = self.keys.get(row_id)
        if held is not None:
            if held[2] >= version:
                return
            self.items.remove(held)
            del self.keys[row_id]
        item = (key, row_id, version, values)
        self.items.add(item)
        self.keys[row_id] = item
        if len(self.items) > self.size:
            dropped = self.items.pop()
            del self.keys[dropped[1]]

    def worst(self) -> bytes | None:
        return self.items[-1][0] if len(self.items) >= self.size else None


async def run_query(
    client: RedisClient,
    keys: Keys,
    tenant: str,
    query: Query,
    signer: CursorSigner,
    scan_count: int = 1000,
) -> QueryPage:
    """The first `query.limit` rows after `query.position`, with cursors and `next`."""
    key = keys.rows(partition_of(tenant, query.entity), tenant, query.entity)
    now = int(await _NOW(client, [key], []))
    best = _Best(query.limit + 1)
    matches, sort_key, position = query.matches, query.sort_key, query.position
    async for items in hscan_batches(client, key, scan_count):
        worst = best.worst()
        for raw_id, raw in items.items():
            version, expiry, payload = raw.split(b":", 2)
            if expiry != b"0" and int(expiry) <= now:
                continue
            values = codec.decode(payload)
            if not matches(values):
                continue
            row_id = raw_id.decode()
            k = sort_key(row_id, values)
            if (position is not None and k <= position) or (worst is not None and k > worst):
                continue
            best.offer(k, row_id, int(version), values)
            worst = best.worst()
    return page_of(query, signer, list(best.items))
