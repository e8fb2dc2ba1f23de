"""Changes mode: every row that starts matching, changes while matching, or stops.

The view keeps no per-row state: whether the row matched before a change is decided by
its previous values, which the collection hands in, so the "set of matching ids" of the
design is the collection itself filtered by the predicate. Invariant: one change sends
at most one message (`match`, `update` or `unmatch`), which the collection stamps with
the change's log position (`stamps_pos`). The snapshot is the first `limit` matching
rows in the sort's order and `synced` says whether more matched; the runtime adds its
log position (PROTOCOL.md section 3, "Log position").
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from . import _messages as m
from ._types import Message
from ._view import View

__all__ = ["ChangesView"]


class ChangesView(View):
    """One changes-mode query shape over a collection."""

    __slots__ = ()
    stamps_pos = True

    def refresh(self) -> None:
        self._snapshot = None

    def snapshot_messages(self) -> list[Message]:
        limit = self.query.limit
        id_of, rows = self.index.id_of, self.rows
        keys = self.walk(None, limit + 1)
        msgs = [m.reset()]
        for key in keys[:limit]:
            rid = id_of[key]
            version, values = rows[rid]
            msgs.append(m.match(rid, version, values))
        msgs.append(m.synced(min(len(keys), limit), len(keys) > limit))
        return msgs

    def verify(self) -> None:
        want = self.query.limit + 1
        everything = list(islice(self.index.walk(None, self.matches, self.rows), want))
        assert self.walk(None, want) == everything

    def apply(
        self, rid: str, version: int, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> list[Message] | None:
        matches = self.matches
        was = old is not None and matches(old)
        if new is not None and matches(new):
            return [m.replace(rid, version, new) if was else m.match(rid, version, new)]
        if was:
            return [m.unmatch(rid, version, new)]
        return None
