"""Builders of the live messages of PROTOCOL.md section 3, without `sub` and `seq`.

Field order follows the protocol's examples. Window messages carry `from`/`to` indexes
into the client's list and a `cursor` for the row's position; changes-mode messages
carry only `id`, `version` and `row` (`row` is null in an `unmatch` caused by a delete).
"""

from __future__ import annotations

from typing import Any

from ._types import Message

__all__ = [
    "enter",
    "leave",
    "match",
    "move",
    "replace",
    "reset",
    "synced",
    "unmatch",
]


def reset() -> Message:
    """A snapshot's `reset`, without its reason: `Frame.because` adds it per send."""
    return {"type": "delta", "op": "reset"}


def synced(count: int, truncated: bool | None = None, digest: str | None = None) -> Message:
    msg: Message = {"type": "delta", "op": "synced", "count": count}
    if truncated is not None:
        msg["truncated"] = truncated
    if digest is not None:
        msg["digest"] = digest
    return msg


def enter(rid: str, version: int, row: dict[str, Any], to: int, cursor: str) -> Message:
    return {"type": "delta", "op": "enter", "id": rid, "version": version, "row": row,
            "from": -1, "to": to, "cursor": cursor}


def leave(rid: str, version: int, index: int) -> Message:
    return {"type": "delta", "op": "leave", "id": rid, "version": version,
            "from": index, "to": -1}


def move(rid: str, version: int, row: dict[str, Any], src: int, dst: int, cursor: str) -> Message:
    """`move`, or window mode's `update` when the row keeps its index (`src == dst`)."""
    op = "update" if src == dst else "move"
    return {"type": "delta", "op": op, "id": rid, "version": version, "row": row,
            "from": src, "to": dst, "cursor": cursor}


def match(rid: str, version: int, row: dict[str, Any]) -> Message:
    return {"type": "delta", "op": "match", "id": rid, "version": version, "row": row}


def replace(rid: str, version: int, row: dict[str, Any]) -> Message:
    return {"type": "delta", "op": "update", "id": rid, "version": version, "row": row}


def unmatch(rid: str, version: int, row: dict[str, Any] | None) -> Message:
    return {"type": "delta", "op": "unmatch", "id": rid, "version": version, "row": row}

