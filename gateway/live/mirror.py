"""A subscription's copy of its window (DESIGN.md section 6, "Mirror").

Invariant: while `complete`, the mirror equals what a client holds after applying every
live message so far (PROTOCOL.md section 3), so `snapshot()` (reset, the rows, synced)
can replace any number of dropped deltas. It is bounded: at most `limit` rows and
`max_bytes` of (estimated) row bytes. When a bound is passed, an index is out of range,
or a changes-mode snapshot was truncated, the mirror empties itself and stays
incomplete until the next `reset` + `synced`; the caller then asks the shard to resync
instead of serving from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

__all__ = ["Mirror"]

# (id, version, row, cursor, estimated bytes); the row dict is shared, never mutated.
Entry = tuple[str, int, Any, Any, int]
SortKey = Callable[[str, dict[str, Any]], bytes]


class Mirror:
    __slots__ = (
        "by_id", "complete", "filling", "limit", "max_bytes", "rows", "size", "sort_key", "window",
    )

    def __init__(self, window: bool, limit: int, max_bytes: int, sort_key: SortKey) -> None:
        self.window = window
        self.limit = limit
        self.max_bytes = max_bytes
        self.sort_key = sort_key
        self.rows: list[Entry] = []
        self.by_id: dict[str, Entry] = {}
        self.size = 0
        self.complete = False
        self.filling = False

    def _broken(self) -> None:
        self.rows = []
        self.by_id = {}
        self.size = 0
        self.complete = False
        self.filling = False

    def apply(self, messages: Sequence[dict[str, Any]], unit: int) -> None:
        """Apply one group of messages; `unit` is the estimated bytes of one message."""
        for m in messages:
            op = m.get("op")
            if op == "reset":
                self._broken()
                self.filling = True
            elif op == "synced":
                if self.filling and not m.get("truncated", False):
                    self.complete = True
                    self.filling = False
                else:
                    self._broken()
            elif self.complete or self.filling:
                try:
                    ok = self._window(op, m, unit) if self.window else self._changes(op, m, unit)
                except (KeyError, TypeError, IndexError, ValueError):
                    ok = False
                if not ok or self.size > self.max_bytes:
                    self._broken()

    def _window(self, op: Any, m: dict[str, Any], unit: int) -> bool:
        rows = self.rows
        if op == "enter":
            to = m["to"]
            if not 0 <= to <= len(rows) or len(rows) >= self.limit:
                return False
            rows.insert(to, (m["id"], m["version"], m["row"], m.get("cursor"), unit))
            self.size += unit
        elif op == "leave":
            src = m["from"]
            if not 0 <= src < len(rows):
                return False
            self.size -= rows.pop(src)[4]
        elif op in ("move", "update"):
            src, to = m["from"], m["to"]
            if not 0 <= src < len(rows):
                return False
            self.size -= rows.pop(src)[4]
            if not 0 <= to <= len(rows):
                return False
            rows.insert(to, (m["id"], m["version"], m["row"], m.get("cursor"), unit))
            self.size += unit
        else:
            return False
        return True

    def _changes(self, op: Any, m: dict[str, Any], unit: int) -> bool:
        by_id = self.by_id
        rid = m["id"]
        old = by_id.pop(rid, None)
        if old is not None:
            self.size -= old[4]
        if op in ("match", "update"):
            if len(by_id) >= self.limit:
                return False  # more rows than a snapshot may hold: let the shard resync
            by_id[rid] = (rid, m["version"], m["row"], None, unit)
            self.size += unit
        elif op != "unmatch":
            return False
        return True

    def snapshot(self) -> list[tuple[str, bytes]] | None:
        """(op, body) of reset, the rows in order and synced; None when incomplete."""
        if not self.complete:
            return None
        out: list[tuple[str, bytes]] = [("reset", b'"op":"reset"}')]
        dumps = orjson.dumps
        if self.window:
            for i, (rid, version, row, cursor, _) in enumerate(self.rows):
                body = {"op": "enter", "id": rid, "version": version, "row": row,
                        "from": -1, "to": i, "cursor": cursor}
                out.append(("enter", dumps(body)[1:]))
            out.append(("synced", dumps({"op": "synced", "count": len(self.rows)})[1:]))
            return out
        key = self.sort_key
        ordered = sorted(self.by_id.values(), key=lambda e: key(e[0], e[2] or {}))
        for rid, version, row, _, _ in ordered:
            body = {"op": "match", "id": rid, "version": version, "row": row}
            out.append(("match", dumps(body)[1:]))
        synced = {"op": "synced", "count": len(ordered), "truncated": False}
        out.append(("synced", dumps(synced)[1:]))
        return out

    def __len__(self) -> int:
        return len(self.rows) if self.window else len(self.by_id)
