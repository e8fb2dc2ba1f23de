"""A live list: PROTOCOL.md section 3 applied exactly, and checked.

Pure (no I/O, the standard library only, nothing else of `lq_client` imported), so it
can be imported where neither `websockets` nor `httpx` is installed, and any program
that follows a subscription (this client, the server's own tests and tools) applies
the protocol with this one module instead of restating its rules. Invariant: `apply`
either moves the list to exactly what the protocol says, or raises `ProtocolViolation`
(the caller then starts the subscription over). It checks what a client may rely on:
`seq` grows by exactly one, a subscription starts with `reset`, indexes and ids agree, a
window never holds more than `limit` rows, a row's version never goes backwards, and
`synced` counts what the list holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ProtocolViolation", "Row", "ViewState"]


class ProtocolViolation(Exception):
    """The server's messages broke a rule of PROTOCOL.md section 3."""


@dataclass(frozen=True, slots=True)
class Row:
    """One row of a live list: `values` as written, without `id`."""

    id: str
    version: int
    values: dict[str, Any]
    cursor: str | None = None


class ViewState:
    """The list of one subscription on one connection."""

    def __init__(self, window: bool, limit: int | None) -> None:
        self.window = window
        self.limit = limit
        self.rows: list[Row] = []
        self.by_id: dict[str, Row] = {}
        self.seq = 0
        self.synced = False
        self.started = False
        self.truncated = False

    def restart(self) -> None:
        """A new subscription on a new connection: seq starts again, a reset is due."""
        self.seq = 0
        self.started = False
        self.synced = False

    def current(self) -> list[Row]:
        return list(self.rows) if self.window else list(self.by_id.values())

    def apply(self, m: dict[str, Any]) -> None:
        seq = m.get("seq")
        if seq != self.seq + 1:
            raise ProtocolViolation(f"seq {seq} after {self.seq}")
        self.seq = seq
        op = m.get("op")
        if not self.started and op != "reset":
            raise ProtocolViolation(f"the first message is {op!r}, not reset")
        if op == "reset":
            self.started = True
            self.synced = False
            self.rows = []
            self.by_id = {}
        elif op == "synced":
            count = len(self.rows) if self.window else len(self.by_id)
            if m.get("count") != count:
                raise ProtocolViolation(f"synced count {m.get('count')}, list holds {count}")
            self.synced = True
            self.truncated = bool(m.get("truncated", False))
        elif self.window:
            self._window(op, m)
        else:
            self._changes(op, m)

    def _row(self, m: dict[str, Any]) -> Row:
        return Row(m["id"], m["version"], m["row"], m.get("cursor"))

    def _at(self, index: Any, rid: Any) -> Row:
        if not isinstance(index, int) or not 0 <= index < len(self.rows):
            raise ProtocolViolation(f"index {index} outside a list of {len(self.rows)}")
        row = self.rows[index]
        if row.id != rid:
            raise ProtocolViolation(f"index {index} holds {row.id!r}, not {rid!r}")
        return row

    def _window(self, op: Any, m: dict[str, Any]) -> None:
        rows = self.rows
        if op == "enter":
            to = m.get("to")
            if m.get("from") != -1 or not isinstance(to, int) or not 0 <= to <= len(rows):
                raise ProtocolViolation(f"enter at {to} into a list of {len(rows)}")
            if any(r.id == m["id"] for r in rows):
                raise ProtocolViolation(f"enter of {m['id']!r}, already in the list")
            rows.insert(to, self._row(m))
            if self.limit is not None and len(rows) > self.limit:
                raise ProtocolViolation(f"the window holds {len(rows)} > limit {self.limit}")
        elif op == "leave":
            self._at(m.get("from"), m.get("id"))
            if m.get("to") != -1:
                raise ProtocolViolation("leave with to != -1")
            rows.pop(m["from"])
        elif op in ("move", "update"):
            old = self._at(m.get("from"), m.get("id"))
            if op == "update" and m.get("to") != m.get("from"):
                raise ProtocolViolation("update with from != to")
            if m["version"] < old.version:
                raise ProtocolViolation(f"version of {old.id!r} went backwards")
            rows.pop(m["from"])
            to = m.get("to")
            if not isinstance(to, int) or not 0 <= to <= len(rows):
                raise ProtocolViolation(f"{op} to {to} in a list of {len(rows) + 1}")
            rows.insert(to, self._row(m))
        else:
            raise ProtocolViolation(f"op {op!r} in window mode")

    def _changes(self, op: Any, m: dict[str, Any]) -> None:
        rid = m.get("id")
        if not isinstance(rid, str):
            raise ProtocolViolation(f"{op} without an id")
        old = self.by_id.get(rid)
        if old is not None and m.get("version", 0) < old.version:
            raise ProtocolViolation(f"version of {rid!r} went backwards")
        if op in ("match", "update"):
            self.by_id[rid] = Row(rid, m["version"], m["row"])
        elif op == "unmatch":
            self.by_id.pop(rid, None)
        else:
            raise ProtocolViolation(f"op {op!r} in changes mode")
