"""Window mode: the exact first `limit` rows after `position`, kept by minimal deltas.

The view keeps a *prefix* of the result: `keys` (ascending) are the keys of the first
`len(keys)` rows of the result (rows that match, with a key strictly after `position`,
in the index's order), at most `cap` of them. The first `limit` are the client's window;
the rest are spares, so that a row leaving the window is usually replaced from memory
instead of by a walk of the index (a walk refills the spares when fewer than `limit`
rows are left). `complete` says that no row of the result lies beyond `keys`.
Invariants: `keys` is such a prefix; if not `complete`, `limit <= len(keys) <= cap`.

Messages compare the window before and after a change (PROTOCOL.md section 3, rule 5):
- the row stays in the window: `move` (`update` when its index is unchanged);
- it leaves the window: its `leave`, then the row now at `limit - 1`, if any, `enter`s;
- it comes in: if the window was full, the `leave` of the row pushed out of
  `limit - 1` first, then its `enter`;
- otherwise the window is unchanged and nothing is sent.
Indexes are exact for a client list equal to the window before the change.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from lq_client.view import digest

from . import _messages as m
from ._types import Message
from ._view import View

__all__ = ["WindowView"]

class WindowView(View):
    """One window-mode query shape's window (and spares) over a collection."""

    __slots__ = ("cap", "complete", "keys", "limit", "position")

    def refresh(self) -> None:
        limit = self.query.limit
        self.limit = limit
        self.cap = limit + self.settings.spare(limit)
        self.position = self.query.position
        self.keys: list[bytes] = self.walk(self.position, self.cap)
        self.complete = len(self.keys) < self.cap
        self._snapshot = None

    def snapshot_messages(self) -> list[Message]:
        msgs = [m.reset()]
        id_of, rows, cursor = self.index.id_of, self.rows, self.cursor
        window = self.keys[: self.limit]
        pairs = []
        for i, key in enumerate(window):
            rid = id_of[key]
            version, values = rows[rid]
            pairs.append((rid, version))
            msgs.append(m.enter(rid, version, values, i, cursor(key)))
        # hashed once per snapshot frame (cached with it), never per delta
        msgs.append(m.synced(len(window), digest=digest(pairs)))
        return msgs

    def apply(
        self, rid: str, version: int, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> list[Message] | None:
        keys = self.keys
        index = self.index
        old_key, new_key = index.old, index.new
        at = None
        # Most candidates do not hold the row: one comparison with the last key held
        # spares them the bisection.
        if old_key is not None and keys and old_key <= keys[-1]:
            i = bisect_left(keys, old_key)
            if keys[i] == old_key:
                at = i
        admit = (
            new_key is not None
            and (self.complete or new_key < keys[-1])
            and (self.position is None or new_key > self.position)
            and new is not None
            and self.matches(new)
        )
        if at is None and not admit:
            return None
        limit = self.limit
        edge = keys[limit - 1] if len(keys) >= limit else None
        if at is not None:
            del keys[at]
        now = None
        if admit:
            assert new_key is not None
            now = bisect_left(keys, new_key)
            keys.insert(now, new_key)
        if len(keys) > self.cap:
            keys.pop()
            self.complete = False
        if len(keys) < limit and not self.complete:
            self._refill()
            if now is None and new_key is not None:
                now = self._find(new_key)
        return self._messages(rid, version, new, at, now, edge)

    def verify(self) -> None:
        everything = list(self.index.walk(self.position, self.matches, self.rows))
        keys = self.keys
        assert keys == everything[: len(keys)], "the window is not a prefix of the result"
        assert not self.complete or len(keys) == len(everything)
        assert len(keys) <= self.cap and (self.complete or len(keys) >= self.limit)
        assert self.walk(self.position, self.cap) == everything[: self.cap]

    def _messages(
        self,
        rid: str,
        version: int,
        new: dict[str, Any] | None,
        at: int | None,
        now: int | None,
        edge: bytes | None,
    ) -> list[Message] | None:
        """What the client sees: the row was at `at`, is at `now` (None: not held)."""
        limit, keys = self.limit, self.keys
        was_in = at is not None and at < limit
        is_in = now is not None and now < limit
        if was_in and is_in:
            assert at is not None and now is not None and new is not None
            return [m.move(rid, version, new, at, now, self.cursor(keys[now]))]
        if was_in:
            assert at is not None
            out = [m.leave(rid, version, at)]
            if len(keys) >= limit:
                out.append(self._enter(keys[limit - 1], limit - 1))
            return out
        if is_in:
            assert now is not None and new is not None
            out = [] if edge is None else [self._leave(edge, limit - 1)]
            out.append(m.enter(rid, version, new, now, self.cursor(keys[now])))
            return out
        return None

    def _enter(self, key: bytes, index: int) -> Message:
        rid = self.index.id_of[key]
        version, values = self.rows[rid]
        return m.enter(rid, version, values, index, self.cursor(key))

    def _leave(self, key: bytes, index: int) -> Message:
        rid = self.index.id_of[key]
        return m.leave(rid, self.rows[rid][0], index)

    def _find(self, key: bytes) -> int | None:
        i = bisect_left(self.keys, key)
        return i if i < len(self.keys) and self.keys[i] == key else None

    def _refill(self) -> None:
        """Walk the index past the last key held for more rows of the result."""
        keys = self.keys
        start = keys[-1] if keys else self.position
        want = self.cap - len(keys)
        more = self.walk(start, want)
        keys.extend(more)
        if len(more) < want:
            self.complete = True
