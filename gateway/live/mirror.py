"""A subscription's copy of its window (DESIGN.md section 6, "Mirror").

Invariant: while `complete`, the mirror holds what a client holds after applying every
live message so far, applied by the client's own rules (`lq_client.view.ViewState`, so a
message the client would refuse breaks the mirror too), and `snapshot()` (reset, the
rows, synced) can replace any number of dropped deltas. It is bounded: at most `limit`
rows and `max_bytes` of (estimated) row bytes. When a bound is passed, a message breaks
a rule of PROTOCOL.md section 3, or a changes-mode snapshot was truncated, the mirror
empties itself and stays incomplete until the next `reset` + `synced`; the caller then
asks the shard to resync instead of serving from it.

Every subscription of a group is handed the same decoded messages in turn (the demux
decodes a group once and never changes it), so each message is read once
(`lq_client.view.read`: checked alone, its row built) and only stepped per mirror.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import orjson
from lq_client.view import Delta, ProtocolViolation, ViewState, read

__all__ = ["Mirror"]

SortKey = Callable[[str, dict[str, Any]], bytes]
Messages = Sequence[dict[str, Any]]

# What `read` refused: no list takes it (`step` refuses the op in either mode).
_REFUSED: Delta = ("refused", "", 0, None, None, None, None, False)


class Mirror:
    __slots__ = ("_limit", "max_bytes", "size", "sizes", "sort_key", "view")

    # The last group and its reads, shared by every mirror: a read depends on its message
    # alone, and the group is held here, so its identity cannot be reused meanwhile.
    # Mutated in place: rebinding a class attribute would invalidate the interpreter's
    # attribute caches for every Mirror, on every group.
    _read_last: ClassVar[list[Any]] = [(), []]

    def __init__(self, window: bool, limit: int, max_bytes: int, sort_key: SortKey) -> None:
        self.view = ViewState(window, limit, numbered=False)
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

    def _reads(self, messages: Messages) -> list[Delta]:
        last = self._read_last
        if last[0] is messages:
            reads: list[Delta] = last[1]
            return reads
        reads = []
        for m in messages:
            try:
                reads.append(read(m))
            except ProtocolViolation:
                reads.append(_REFUSED)
        last[0], last[1] = messages, reads
        return reads

    def apply(self, messages: Messages, unit: int) -> None:
        """Apply one group of messages; `unit` is the estimated bytes of one message."""
        view = self.view
        for d in self._reads(messages):
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

    def snapshot(self) -> list[tuple[str, bytes]] | None:
        """(op, body) of reset, the rows in order and synced; None when incomplete."""
        if not self.complete:
            return None
        out: list[tuple[str, bytes]] = [("reset", b'"op":"reset"}')]
        dumps = orjson.dumps
        view = self.view
        if view.window:
            for i, r in enumerate(view.rows):
                body = {"op": "enter", "id": r.id, "version": r.version, "row": r.values,
                        "from": -1, "to": i, "cursor": r.cursor}
                out.append(("enter", dumps(body)[1:]))
            out.append(("synced", dumps({"op": "synced", "count": len(view.rows)})[1:]))
            return out
        key = self.sort_key
        ordered = sorted(view.by_id.values(), key=lambda r: key(r.id, r.values))
        for r in ordered:
            body = {"op": "match", "id": r.id, "version": r.version, "row": r.values}
            out.append(("match", dumps(body)[1:]))
        synced = {"op": "synced", "count": len(ordered), "truncated": False}
        out.append(("synced", dumps(synced)[1:]))
        return out

    def __len__(self) -> int:
        return len(self.view.by_id)
