"""The values the matcher takes in and hands out: changes, rows, frames, view deltas.

Invariants: a `Change` is one write of one row as the partition's change log records it
(`values` None means a delete); a `Frame` is a list of PROTOCOL.md section 3 messages
(without `sub` and `seq`) together with its JSON encoding, made once and shared by every
subscriber it goes to. Row values are never mutated once handed to the matcher, so a
frame may hold references to them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

__all__ = ["Change", "Frame", "Message", "Routes", "Row", "ViewDelta"]

Message = dict[str, Any]
"""One live message of PROTOCOL.md section 3 without `sub` and `seq`."""

Routes = Mapping[str, tuple[str, ...]]
"""Route (normally a gateway id) -> the subscriber ids behind it."""


@dataclass(frozen=True, slots=True)
class Change:
    """One write of a row: a put (`values` is a dict) or a delete (`values` is None)."""

    tenant: str
    entity: str
    id: str
    version: int
    values: dict[str, Any] | None

    @property
    def deleted(self) -> bool:
        return self.values is None


class Row(NamedTuple):
    """A stored row as a collection loads it."""

    id: str
    version: int
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Frame:
    """Messages for one view, encoded once (`payload` is the JSON array of `messages`)."""

    messages: Sequence[Message]
    payload: bytes

    @classmethod
    def of(cls, messages: list[Message]) -> Frame:
        return cls(messages, orjson.dumps(messages))


@dataclass(frozen=True, slots=True)
class ViewDelta:
    """What one change (or a reload) does to one view, and who must receive it.

    `routes` is shared and must not be mutated; a runtime batches frames per route.
    """

    routes: Routes
    frame: Frame

    @property
    def subscribers(self) -> tuple[str, ...]:
        """Every subscriber id of the view, across routes."""
        out: tuple[str, ...] = ()
        for ids in self.routes.values():
            out += ids
        return out
