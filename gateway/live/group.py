"""One group of a delta frame, decoded once for all the subscriptions it goes to.

Invariant: a `Group` is built once per group by the demux and never changed; every
subscription of the group is handed the same one, so the JSON is decoded once, each
message's shared body (`wire.delta_body`) encoded once, and each message read once by the
client's own rules (`lq_client.view.read`: checked alone, its row built). A message that
`read` refuses is kept as a refusal that no list takes, so the mirrors it reaches break.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from lq_client.view import Delta, ProtocolViolation, read

from .wire import delta_body

__all__ = ["Group", "read_all"]

# What `read` refused: no list takes it (`step` refuses the op in either mode).
_REFUSED: Delta = ("refused", "", 0, None, None, None, None, False, None)


def read_all(messages: Sequence[dict[str, Any]]) -> list[Delta]:
    reads = []
    for m in messages:
        try:
            reads.append(read(m))
        except ProtocolViolation:
            reads.append(_REFUSED)
    return reads


@dataclass(frozen=True, slots=True)
class Group:
    messages: list[dict[str, Any]]
    ops: list[str]
    bodies: list[bytes]
    reads: list[Delta]
    unit: int  # estimated bytes of one message (for the mirrors' byte bound)

    @classmethod
    def of(cls, messages: list[dict[str, Any]], unit: int) -> Group:
        """KeyError or TypeError when a message has no `op` or is not an object."""
        ops = [m["op"] for m in messages]
        return cls(messages, ops, [delta_body(m) for m in messages], read_all(messages), unit)

    @classmethod
    def decode(cls, payload: bytes) -> Group:
        """The group of a frame's payload; ValueError, KeyError or TypeError when it is
        malformed."""
        messages: list[dict[str, Any]] = orjson.loads(payload)
        return cls.of(messages, len(payload) // max(1, len(messages)) + 1)
