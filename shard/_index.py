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

from cluster.query import MISSING, CursorSigner, Query, resolve

__all__ = ["RowMap", "SortIndex"]

RowMap = dict[str, tuple[int, dict[str, Any]]]
"""A collection's rows: id -> (version, values)."""

_PLAIN = (str, int, float, bool, type(None))
_CURSORS = 1024  # cursors cached per index (a row in several windows is signed once)


def _value(values: dict[str, Any], path: tuple[str, ...]) -> Any:
    return values.get(path[0], MISSING) if len(path) == 1 else resolve(values, path)


class SortIndex:
    """The rows of one collection ordered by one `sort_spec`, shared by its views."""

    __slots__ = (
        "_cursors",
        "_names",
        "_paths",
        "_sign",
        "id_of",
        "key_of",
        "keys",
        "new",
        "old",
        "sort_key",
        "spec",
        "users",
    )

    def __init__(
        self, query: Query, signer: CursorSigner, rows: Mapping[str, tuple[int, Any]]
    ) -> None:
        self.spec = query.sort_spec
        self.sort_key = query.sort_key
        self._paths = tuple(c.path for c in query.sort)
        self._names = (
            tuple(p[0] for p in self._paths) if all(len(p) == 1 for p in self._paths) else None
        )
        self._sign = signer.maker(query.entity, self.spec)
        self._cursors: dict[bytes, str] = {}
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

    def _unchanged(self, old: dict[str, Any], new: dict[str, Any]) -> bool:
        """Whether every sort column holds the same plain value (so the key is the same);
        nested paths only: `update` tests top-level columns inline, without a call."""
        for path in self._paths:
            a, b = _value(old, path), _value(new, path)
            if a is not b and (type(a) is not type(b) or type(a) not in _PLAIN or a != b):
                return False
        return True

    def update(self, rid: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """Re-key one row from its `old` to its `new` values (None: absent)."""
        if old is not None and new is not None:
            names = self._names
            if names is not None:  # top-level columns: no path walk, no call per change
                for name in names:
                    a, b = old.get(name, MISSING), new.get(name, MISSING)
                    if a is not b and (
                        type(a) is not type(b) or type(a) not in _PLAIN or a != b
                    ):
                        break
                else:
                    self.old = self.new = self.key_of[rid]
                    return
            elif self._unchanged(old, new):
                self.old = self.new = self.key_of[rid]
                return
        key = self.key_of.get(rid)
        fresh = None if new is None else self.sort_key(rid, new)
        self.old, self.new = key, fresh
        if key == fresh:
            return
        if key is not None:
            self.keys.remove(key)
            del self.id_of[key]
        if fresh is None:
            del self.key_of[rid]
            return
        self.keys.add(fresh)
        self.id_of[fresh] = rid
        self.key_of[rid] = fresh

    def cursor(self, key: bytes) -> str:
        """The cursor of a position in this sort (cached: signing is the costly part)."""
        text = self._cursors.get(key)
        if text is None:
            if len(self._cursors) >= _CURSORS:
                self._cursors.clear()
            text = self._sign(key)
            self._cursors[key] = text
        return text

    def walk(
        self,
        position: bytes | None,
        matches: Callable[[dict[str, Any]], bool],
        rows: RowMap,
        bounds: tuple[bytes | None, bytes | None] = (None, None),
    ) -> Iterator[bytes]:
        """Keys strictly after `position` of the rows that `matches`, in order.

        `bounds` (`[start, stop)`, see `_bounds`) must hold every matching key; the walk
        seeks to `start` and ends at `stop`.
        """
        start, stop = bounds
        if start is not None and (position is None or start > position):
            keys = self.keys.irange(start, stop, (True, False))
        else:
            keys = self.keys.irange(position, stop, (False, False))
        id_of = self.id_of
        for key in keys:
            if matches(rows[id_of[key]][1]):
                yield key

    def verify(self, rows: RowMap) -> None:
        """Check the invariants of the module docstring against `rows`."""
        assert self.key_of == {rid: self.sort_key(rid, row[1]) for rid, row in rows.items()}
        assert self.id_of == {k: rid for rid, k in self.key_of.items()}
        assert list(self.keys) == sorted(self.key_of.values())

    def __len__(self) -> int:
        return len(self.keys)
