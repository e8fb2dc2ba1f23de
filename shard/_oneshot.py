"""A one-shot query answered from a collection in memory: its first `limit + 1` rows.

What `storage.run_query` finds by scanning Redis, found here by walking the collection's
ordered index of the query's sort (seeking to the bounds its filter puts on the first
sort column), so the cost grows with the rows walked, not with the collection. The
caller turns the rows into a page with `cluster.query.page_of`, the rule both paths use.

Invariants: the result is the collection's rows as they are when called (no await
inside, so one applied log position), minus `hidden` (row id -> version: rows expired by
Redis's clock and not yet deleted, which the scan hides too), that match, strictly after
the query's position, in key order; at most `limit + 1` of them. The work is bounded:
when more than `budget` rows would be tested (or the sort has no index and the
collection holds more than `budget` rows), the answer is None and the caller scans.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import Any

from cluster.query import Query, Ranked

from ._bounds import key_bounds
from ._collection import Collection

__all__ = ["first_rows"]


class _OverBudget(Exception):
    """More rows would be tested than the budget allows."""


def first_rows(
    coll: Collection, query: Query, hidden: Mapping[str, int], budget: int
) -> list[Ranked] | None:
    """The first `query.limit + 1` rows of `query`'s result in `coll`, or None when it
    would cost more than `budget` rows tested (see the module docstring)."""
    want = query.limit + 1
    rows = coll.rows
    index = coll.sort_index(query.sort_spec)
    tested = 0
    matches = query.matches

    def visible(rid: str, version: int, values: dict[str, Any]) -> bool:
        nonlocal tested
        tested += 1
        if tested > budget:
            raise _OverBudget
        return hidden.get(rid) != version and matches(values)

    try:
        if index is None:
            if len(rows) > budget:
                return None
            sort_key, position = query.sort_key, query.position
            found: list[Ranked] = []
            for rid, (version, values) in rows.items():
                if visible(rid, version, values):
                    key = sort_key(rid, values)
                    if position is None or key > position:
                        found.append((key, rid, version, values))
            return heapq.nsmallest(want, found, key=lambda r: r[0])
        id_of = index.id_of
        out: list[Ranked] = []
        for key in index.walk(query.position, _every, rows, key_bounds(query)):
            rid = id_of[key]
            version, values = rows[rid]
            if visible(rid, version, values):
                out.append((key, rid, version, values))
                if len(out) >= want:
                    break
        return out
    except _OverBudget:
        return None


def _every(values: dict[str, Any]) -> bool:
    return True  # the walk's own test: every test happens where the row id is known
