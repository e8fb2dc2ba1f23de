"""The answer to a changes-mode subscribe that named a log position (PROTOCOL.md section
3, "Log-position resume"), held until the client may receive it.

A resume is not something the gateway's mirror can serve again (the mirror never saw
the set the client kept), so when the shard's answer comes before `subscribed` has been
queued (the subscription is still `behind`), its groups, and those after it, are kept
here and handed over whole at the announce. Invariant: what is held starts with the
latest start group (`resume` or `reset`) and holds every group admitted after it, in
order; it is bounded (`MAX_MESSAGES`): past it, nothing is kept and the caller asks for
a resync (a fresh snapshot), never a silent loss.
"""

from __future__ import annotations

from collections.abc import Sequence

from .delivery import starts

__all__ = ["MAX_MESSAGES", "Held"]

MAX_MESSAGES = 5000


class Held:
    __slots__ = ("groups", "size")

    def __init__(self) -> None:
        self.groups: list[tuple[Sequence[str], Sequence[bytes]]] = []
        self.size = 0

    def keep(self, ops: Sequence[str], bodies: Sequence[bytes]) -> bool:
        """Keep one admitted group; False when the bound is passed (nothing kept)."""
        if starts(ops[0]):
            self.groups, self.size = [], 0
        self.groups.append((ops, bodies))
        self.size += len(ops)
        if self.size > MAX_MESSAGES:
            self.groups, self.size = [], 0
            return False
        return True

    def first_op(self) -> str | None:
        return self.groups[0][0][0] if self.groups else None

    def messages(self) -> list[tuple[str, bytes]]:
        return [(op, body) for ops, bodies in self.groups
                for op, body in zip(ops, bodies, strict=True)]
