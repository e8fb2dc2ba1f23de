"""Row ids by the value of one column: a hash index for views filed under `$eq`/`$in`.

A view whose filter requires `column in {v1, ...}` (its dispatch plan, see `_dispatch`)
can find its rows among the few with those values instead of walking the whole sort
index past every row that fails the filter: gather, test, sort the keys (all in C but
the test). Invariant: `ids[x]` holds exactly the ids of the rows whose value at `path`
encodes to `x` (`encode_value`, so missing and null share `b"\\x01"`); there is one index
per path in use, dropped with its last view. A row's old encoding is recomputed from
its old values rather than stored, which keeps the index at one set entry per row.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from cluster.query import MISSING, resolve

from ._encode import encoded

__all__ = ["PointIndex"]

_PLAIN = (str, int, float, bool, type(None))


class PointIndex:
    """Ids of a collection's rows by the encoded value at one path."""

    __slots__ = ("_name", "ids", "path", "users")

    def __init__(self, path: tuple[str, ...], rows: Mapping[str, tuple[int, Any]]) -> None:
        self.path = path
        self._name = path[0] if len(path) == 1 else None  # top-level: no call per change
        self.users = 0
        self.rebuild(rows)

    def _value(self, values: dict[str, Any]) -> Any:
        path = self.path
        return values.get(path[0], MISSING) if len(path) == 1 else resolve(values, path)

    def rebuild(self, rows: Mapping[str, tuple[int, Any]]) -> None:
        self.ids: dict[bytes, set[str]] = {}
        for rid, row in rows.items():
            self._add(rid, encoded(self._value(row[1])))

    def _add(self, rid: str, x: bytes) -> None:
        bucket = self.ids.get(x)
        if bucket is None:
            self.ids[x] = {rid}
        else:
            bucket.add(rid)

    def update(self, rid: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """Move row `rid` from its `old` values' bucket to its `new` one (None: absent)."""
        name = self._name
        if name is not None:
            a = None if old is None else old.get(name, MISSING)
            b = None if new is None else new.get(name, MISSING)
        else:
            a = None if old is None else self._value(old)
            b = None if new is None else self._value(new)
        if old is not None and new is not None:
            if a is b or (type(a) is type(b) and type(a) in _PLAIN and a == b):
                return
        x = None if new is None else encoded(b)
        if old is not None:
            was = encoded(a)
            if was == x:
                return
            bucket = self.ids[was]
            bucket.discard(rid)
            if not bucket:
                del self.ids[was]
        if x is not None:
            self._add(rid, x)

    def verify(self, rows: Mapping[str, tuple[int, Any]]) -> None:
        """Check the invariant of the module docstring against `rows`."""
        grouped: dict[bytes, set[str]] = {}
        for rid, row in rows.items():
            grouped.setdefault(encoded(self._value(row[1])), set()).add(rid)
        assert self.ids == grouped

    def count(self, points: Collection[bytes]) -> int:
        """How many rows hold one of `points`."""
        ids = self.ids
        return sum(len(ids.get(p, ())) for p in points)

    def gather(self, points: Iterable[bytes]) -> Iterable[str]:
        """The ids of the rows holding one of `points` (each once: points are distinct)."""
        ids = self.ids
        for p in points:
            yield from ids.get(p, ())
