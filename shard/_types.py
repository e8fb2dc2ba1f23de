"""The values the matcher takes in and hands out: changes, rows, frames, view deltas.

Invariants: a `Change` is one write of one row as the partition's change log records it
(`values` None means a delete); a `Frame` is a list of PROTOCOL.md section 3 messages
(without `sub` and `seq`) together with its JSON encoding, made once and shared by every
subscriber it goes to. Row values are never mutated once handed to the matcher, so a
frame may hold references to them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from cluster.messages import Change  # one change type from the log to the matcher

__all__ = ["Change", "Frame", "MatcherSettings", "Message", "Routes", "Row", "ViewDelta"]

_COMPACT_BELOW = 3072
_new_tuple = tuple.__new__  # a named tuple from its fields, without its Python __new__
_RESET = b'[{"type":"delta","op":"reset"}'  # how every snapshot frame's payload starts

Message = dict[str, Any]
"""One live message of PROTOCOL.md section 3 without `sub` and `seq`."""

Routes = Mapping[str, tuple[str, ...]]
"""Route (normally a gateway id) -> the subscriber ids behind it."""


@dataclass(frozen=True, slots=True)
class MatcherSettings:
    """Memory/time trade-offs of the matcher (none changes what clients receive)."""

    max_dead: int = field(
        default=100_000, metadata={"help": "deletes remembered per collection against stale puts"}
    )
    min_spare: int = field(
        default=8, metadata={"help": "fewest rows a window keeps beyond `limit` as spares"}
    )
    max_spare: int = field(
        default=256, metadata={"help": "most rows a window keeps beyond `limit` as spares"}
    )

    snapshot_cache: int = field(
        default=64, metadata={"help": "snapshot frames kept for subscriptions still arriving"}
    )

    def spare(self, limit: int) -> int:
        """Spares of a window: `limit` itself, within [min_spare, max_spare]."""
        return min(max(limit, self.min_spare), self.max_spare)


class Row(NamedTuple):
    """A stored row as a collection loads it."""

    id: str
    version: int
    values: dict[str, Any]


class Frame(NamedTuple):
    """Messages for one view, encoded once (`payload` is the JSON array of `messages`)."""

    messages: Sequence[Message]
    payload: bytes

    def because(self, reason: str, pos: str | None = None) -> Frame:
        """This snapshot frame with its leading `reset` saying why (PROTOCOL.md section
        3) and, given `pos`, its closing `synced` naming that log position (changes
        mode): the shared frame stays as it is, the copy costs one copy of the payload."""
        first, last = self.messages[0], self.messages[-1]
        if (first.get("op") != "reset" or not self.payload.startswith(_RESET)
                or last.get("op") != "synced" or not self.payload.endswith(b"}]")):
            raise ValueError("not a snapshot frame")
        head = {**first, "reason": reason}
        body = self.payload[len(_RESET):]
        messages = [head, *self.messages[1:]]
        if pos is not None:
            messages[-1] = {**last, "pos": pos}
            body = b"%b,\"pos\":%b}]" % (body[:-2], orjson.dumps(pos))
        payload = b"%b,\"reason\":%b}%b" % (_RESET[:-1], orjson.dumps(reason), body)
        return Frame(messages, payload)

    @classmethod
    def of(cls, messages: list[Message]) -> Frame:
        payload = orjson.dumps(messages)
        if len(payload) < _COMPACT_BELOW:
            # orjson's output sits in a buffer of at least 4 KiB; frames wait in
            # batches and queues, so keep an exact-size copy of small ones.
            payload = bytes(memoryview(payload))
        return _new_tuple(cls, (messages, payload))  # no generated __new__ per frame


class ViewDelta(NamedTuple):
    """What one change (or a reload) does to one view, and who must receive it.

    `routes` is shared and must not be mutated; a runtime batches frames per route.
    (A named tuple, not a dataclass: one is made per view per change.)
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
