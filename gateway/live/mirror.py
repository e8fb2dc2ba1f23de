"""A subscription's copy of its window (DESIGN.md section 6, "Mirror").

Invariant: while `complete`, the mirror holds what a client holds after applying every
live message so far, applied by the client's own rules (`lq_client.view.ViewState`, so a
message the client would refuse breaks the mirror too), and `snapshot()` (reset, the
rows, synced) can replace any number of dropped deltas. It is bounded: at most `limit`
rows and `max_bytes` of (estimated) row bytes. When a bound is passed, a message breaks
a rule of PROTOCOL.md section 3, or a changes-mode snapshot was truncated, the mirror
empties itself and stays incomplete until the next `reset` + `synced`; the caller then
asks the shard to resync instead of serving from it.

Each message is read once per group for all its subscriptions (`live.group.Group`:
checked alone, its row built) and only stepped per mirror.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson
from lq_client.view import Delta, ProtocolViolation, ViewState

from .group import read_all

__all__ = ["Mirror"]

SortKey = Callable[[str, dict[str, Any]], bytes]
Messages = Sequence[dict[str, Any]]

class Mirror:
    __slots__ = ("_limit", "max_bytes", "size", "sizes", "sort_key", "view")

    def __init__(self, window: bool, limit: int, max_bytes: int, sort_key: SortKey) -> None:
        self.view = ViewState(window, limit, numbered=False, verify=False)
        self._limit = limit
        self.max_bytes = max_bytes
        self.sort_key = sort_key
        self.sizes: dict[str, int] = {}  # row id -> the estimated bytes it came with
        self.size = 0

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, limit: int) -> None:
        self._limit = limit
        self.view.limit = limit

    @property
    def complete(self) -> bool:
        """The list equals the client's: `snapshot()` can serve."""
        return self.view.started and self.view.synced

    @property
    def filling(self) -> bool:
        """A reset came and its snapshot is being applied."""
        return self.view.started and not self.view.synced

    def _broken(self) -> None:
        self.view.drop()
        self.sizes = {}
        self.size = 0

    def apply(self, messages: Messages, unit: int) -> None:
        """Apply one group of messages; `unit` is the estimated bytes of one message."""
        self.apply_reads(read_all(messages), unit)

    def apply_reads(self, reads: Sequence[Delta], unit: int) -> None:
        """Apply one group's messages as read once for every mirror (`Group.reads`)."""
        view = self.view
        for d in reads:
            if not view.started and d[0] != "reset":
                continue  # broken (or never reset): only a reset starts it again
            try:
                view.step(d)
            except ProtocolViolation:
                self._broken()
                continue
            if d[5] is None:  # left, unmatched, reset or synced
                self._without_row(d)
                continue
            sizes = self.sizes  # entered, moved, updated or matched
            prev = sizes.get(d[1])
            if prev != unit:
                sizes[d[1]] = unit
                self.size += unit - (prev or 0)
                if self.size > self.max_bytes or (prev is None and len(sizes) > self._limit):
                    self._broken()  # (a changes-mode list may grow past its limit)

    def _without_row(self, d: Delta) -> None:
        op = d[0]
        if op == "leave" or op == "unmatch":
            self.size -= self.sizes.pop(d[1], 0)
        elif op == "reset":
            self.sizes = {}
            self.size = 0
        elif d[7]:  # a truncated snapshot: not the client's whole list
            self._broken()

    def snapshot(self, reason: str = "overflow") -> list[tuple[str, bytes]] | None:
        """(op, body) of reset (saying `reason`), the rows in order and synced (with the
        window's digest, hashed from these rows); None when incomplete."""
        if not self.complete:
            return None
        dumps = orjson.dumps
        out: list[tuple[str, bytes]] = [
            ("reset", dumps({"op": "reset", "reason": reason})[1:])]
        view = self.view
        if view.window:
            for i, r in enumerate(view.rows):
                body = {"op": "enter", "id": r.id, "version": r.version, "row": r.values,
                        "from": -1, "to": i, "cursor": r.cursor}
                out.append(("enter", dumps(body)[1:]))
            synced = {"op": "synced", "count": len(view.rows), "digest": view.digest()}
            out.append(("synced", dumps(synced)[1:]))
            return out
        key = self.sort_key
        ordered = sorted(view.by_id.values(), key=lambda r: key(r.id, r.values))
        for r in ordered:
            body = {"op": "match", "id": r.id, "version": r.version, "row": r.values}
            out.append(("match", dumps(body)[1:]))
        closing: dict[str, Any] = {"op": "synced", "count": len(ordered), "truncated": False}
        if view.pos is not None:  # the log position of the last message it applied
            closing["pos"] = view.pos
        out.append(("synced", dumps(closing)[1:]))
        return out

    def check(self) -> bytes | None:
        """The body of a `check` message (window mode, complete only), else None."""
        view = self.view
        if not view.window or not self.complete:
            return None
        body = {"op": "check", "count": len(view.rows), "digest": view.digest()}
        return orjson.dumps(body)[1:]

    def __len__(self) -> int:
        return len(self.view.by_id)
