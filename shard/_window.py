"""Window mode: the exact first `limit` rows after `position`, kept by minimal deltas.

Invariant: `keys` (ascending) are the keys of the first `limit` rows of the result in
the index's order, i.e. rows that match, whose key is strictly after `position`; when
fewer than `limit` are held, no other row of the collection is in the result. Each
change is handled by at most one of: nothing, `update`, `move`, `leave`, `enter`, or
`leave` then `enter` (PROTOCOL.md section 3, rule 5), with indexes that are exact for a
client list equal to `keys` before the change:
- a row outside that comes in: the evicted last row's `leave` (from `limit - 1`) first,
  then its `enter`;
- a row inside that stays among the first `limit`: `move` (or `update` at one index);
- a row inside that drops out: its `leave`, then the next row of the result, found by a
  walk of the index from the old last key, `enter`s at the end.
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import islice
from typing import Any

from . import _messages as m
from ._types import Message
from ._view import View

__all__ = ["WindowView"]


class WindowView(View):
    """One window-mode query shape's window over a collection."""

    __slots__ = ("keys", "limit", "position")

    def refresh(self) -> None:
        self.limit = self.query.limit
        self.position = self.query.position
        self.keys: list[bytes] = list(
            islice(self.index.walk(self.position, self.matches, self.rows), self.limit)
        )
        self._snapshot = None

    def snapshot_messages(self) -> list[Message]:
        msgs = [m.reset()]
        id_of, rows, cursor = self.index.id_of, self.rows, self.cursor
        for i, key in enumerate(self.keys):
            rid = id_of[key]
            version, values = rows[rid]
            msgs.append(m.enter(rid, version, values, i, cursor(key)))
        msgs.append(m.synced(len(self.keys)))
        return msgs

    def apply(
        self, rid: str, version: int, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> list[Message] | None:
        keys = self.keys
        old_key, new_key = self.index.old, self.index.new
        if old_key is not None:
            i = bisect_left(keys, old_key)
            if i < len(keys) and keys[i] == old_key:
                return self._inside(i, rid, version, new, new_key)
        if new_key is None:
            return None
        full = len(keys) >= self.limit
        if full and new_key > keys[-1]:
            return None
        position = self.position
        if position is not None and new_key <= position:
            return None
        if new is None or not self.matches(new):
            return None
        out: list[Message] = []
        if full:
            out.append(self._evict_last())
        to = bisect_left(keys, new_key)
        keys.insert(to, new_key)
        out.append(m.enter(rid, version, new, to, self.cursor(new_key)))
        return out

    def _evict_last(self) -> Message:
        keys = self.keys
        gone = keys.pop()
        gone_id = self.index.id_of[gone]
        return m.leave(gone_id, self.rows[gone_id][0], len(keys))

    def _inside(
        self, at: int, rid: str, version: int, new: dict[str, Any] | None, new_key: bytes | None
    ) -> list[Message]:
        """Row `rid`, held at index `at`, changed (or was deleted: `new` is None)."""
        keys = self.keys
        last = keys[-1]
        full = len(keys) >= self.limit
        del keys[at]
        position = self.position
        if (
            new is None
            or new_key is None
            or (position is not None and new_key <= position)
            or not self.matches(new)
        ):
            return self._drop(at, rid, version, last if full else None)
        if not full or new_key <= last:
            to = bisect_left(keys, new_key)
            keys.insert(to, new_key)
            return [m.move(rid, version, new, at, to, self.cursor(new_key))]
        if self._next_after(last) == new_key:
            # It moved past the old end but is still the next row of the result.
            keys.append(new_key)
            return [m.move(rid, version, new, at, len(keys) - 1, self.cursor(new_key))]
        return self._drop(at, rid, version, last)

    def _drop(self, at: int, rid: str, version: int, last: bytes | None) -> list[Message]:
        """`rid` left (from `at`); when the window was full (`last` given), promote."""
        out = [m.leave(rid, version, at)]
        nxt = None
        if nxt is not None:
            keys = self.keys
            keys.append(nxt)
            nid = self.index.id_of[nxt]
            nversion, nvalues = self.rows[nid]
            out.append(m.enter(nid, nversion, nvalues, len(keys) - 1, self.cursor(nxt)))
        return out

    def _next_after(self, last: bytes) -> bytes | None:
        """The first key of the result after `last` (the index already holds the change)."""
        return next(self.index.walk(last, self.matches, self.rows), None)
