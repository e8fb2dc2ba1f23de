"""One ordered index of a collection: every row's sort key under one sort, in byte order.

Invariants: `keys` holds exactly one key per row of the collection, `key_of` maps each
row id to its key and `id_of` maps each key back (keys are unique per row because the id
ends them, see `cluster.query._order`), and plain byte order of the keys is the query's
total order. After `update`, `old` and `new` hold the changed row's key before and after
the change (None when absent), which is what views read to place the row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sortedcontainers import SortedList

from cluster.query import SortKey

__all__ = ["RowMap", "SortIndex"]

RowMap = dict[str, tuple[int, dict[str, Any]]]
"""A collection's rows: id -> (version, values)."""


class SortIndex:
    """The rows of one collection ordered by one `sort_spec`, shared by its views."""

    __slots__ = ("id_of", "key_of", "keys", "new", "old", "sort_key", "spec", "users")

    def __init__(self, spec: str, sort_key: SortKey, rows: Mapping[str, tuple[int, Any]]) -> None:
        self.spec = spec
        self.sort_key = sort_key
        self.users = 0
        self.old: bytes | None = None
        self.new: bytes | None = None
        self.rebuild(rows)

    def rebuild(self, rows: Mapping[str, tuple[int, Any]]) -> None:
        """Index every row of `rows` anew (a bulk load: one sort, not n insertions)."""
        sort_key = self.sort_key
        self.key_of: dict[str, bytes] = {rid: sort_key(rid, row[1]) for rid, row in rows.items()}
        self.id_of: dict[bytes, str] = {k: rid for rid, k in self.key_of.items()}
        self.keys = SortedList(self.key_of.values())

    def update(self, rid: str, values: dict[str, Any] | None) -> None:
        """Re-key one row (None: it was deleted); sets `old` and `new`."""
        old = self.key_of.get(rid)
        new = None if values is None else self.sort_key(rid, values)
        self.old, self.new = old, new
        if old == new:
            return
        if old is not None:
            self.keys.remove(old)
            del self.id_of[old]
        if new is None:
            del self.key_of[rid]
            return
        self.keys.add(new)
        self.id_of[new] = rid
        self.key_of[rid] = new

    def after(self, position: bytes | None) -> Iterator[bytes]:
        """Keys strictly after `position` (all keys when None), in order."""
        if position is None:
            return iter(self.keys)
        it: Iterator[bytes] = self.keys.irange(position, None, (False, True))
        return it

    def walk(
        self, position: bytes | None, matches: Callable[[dict[str, Any]], bool], rows: RowMap
    ) -> Iterator[bytes]:
        """Keys strictly after `position` of the rows that `matches`, in order."""
        id_of = self.id_of
        for key in self.after(position):
            if matches(rows[id_of[key]][1]):
                yield key

    def __len__(self) -> int:
        return len(self.keys)
