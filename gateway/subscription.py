"""One client subscription on this gateway: its fences, its numbering, its mirror.

Lifecycle (a state machine that refuses other transitions): PENDING (registered, no
`reset` yet) -> LIVE (a `reset` was accepted) -> RESETTING (a gap or lost stream: a
resync was asked for) -> LIVE ...; any state -> CLOSED, which is final.

Invariants (DESIGN.md sections 2 and 6, PROTOCOL.md rule 3):
- per subscription the newest epoch seen is kept; a group of an older epoch is dropped,
  and a newer epoch is accepted only from a group that starts with `reset` (a newer
  epoch without one asks its shard for a resync);
- while PENDING or RESETTING only a group starting with `reset` is accepted, so the
  client never sees a delta that does not follow from its current list;
- `seq` is given by the outbox as messages leave, so it never restarts and never skips.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from cluster.query import Mode, Query

from .mirror import Mirror
from .outbox import Outbox

__all__ = ["SubState", "Subscription"]

Source = tuple[str, str]
"""(shard id, incarnation) of the frame that last reset a subscription."""


class SubState(enum.Enum):
    PENDING = "pending"
    LIVE = "live"
    RESETTING = "resetting"
    CLOSED = "closed"


_ALLOWED = {
    SubState.PENDING: {SubState.LIVE, SubState.CLOSED},
    SubState.LIVE: {SubState.RESETTING, SubState.CLOSED},
    SubState.RESETTING: {SubState.LIVE, SubState.CLOSED},
    SubState.CLOSED: set(),
}


class Subscription:
    __slots__ = (
        "behind", "epoch", "mirror", "outbox", "p", "query", "queued", "request_resync",
        "retry_at", "rid", "sent_to", "seq", "source", "state", "sub", "sub_json", "tenant",
    )

    def __init__(
        self,
        rid: str,
        sub: str,
        tenant: str,
        p: int,
        query: Query,
        outbox: Outbox,
        mirror_max_bytes: int,
        request_resync: Callable[[Subscription], None],
    ) -> None:
        self.rid = rid
        self.sub = sub
        self.sub_json = orjson.dumps(sub)
        self.tenant = tenant
        self.p = p
        self.query = query
        self.outbox = outbox
        self.request_resync = request_resync
        window = query.mode is Mode.WINDOW
        self.mirror = Mirror(window, query.limit, mirror_max_bytes, query.sort_key)
        self.state = SubState.PENDING
        self.epoch = 0
        self.source: Source | None = None
        self.seq = 0
        self.queued = 0
        self.behind = True  # nothing goes to the client before `subscribed`
        self.retry_at: float | None = None
        self.sent_to: str | None = None

    def __repr__(self) -> str:
        return f"Subscription({self.rid!r}, sub={self.sub!r}, {self.state.value})"

    def move(self, to: SubState) -> None:
        if to is self.state:
            return
        if to not in _ALLOWED[self.state]:
            raise RuntimeError(f"subscription {self.rid}: {self.state.value} -> {to.value}")
        self.state = to

    def rename(self, sub: str) -> None:
        """A new client-side name (an SSE stream that starts over): seq starts again."""
        self.sub = sub
        self.sub_json = orjson.dumps(sub)
        self.seq = 0

    @property
    def closed(self) -> bool:
        return self.state is SubState.CLOSED

    def deliver(
        self,
        epoch: int,
        source: Source,
        messages: Sequence[dict[str, Any]],
        ops: Sequence[str],
        bodies: Sequence[bytes],
        unit: int,
    ) -> bool:
        """Apply one group of a frame; False when the fences drop it."""
        state = self.state
        if state is SubState.CLOSED or epoch < self.epoch:
            return False
        if ops[0] == "reset":
            self.epoch = epoch
            self.source = source
            self.retry_at = None
            if state is not SubState.LIVE:
                self.move(SubState.LIVE)
        elif epoch > self.epoch and state is SubState.LIVE:
            # A new owner whose claim `reset` never arrived (lost to an overflow or a
            # publish error on its side): ask it for one instead of waiting forever.
            self.move(SubState.RESETTING)
            self.request_resync(self)
            return False
        elif epoch > self.epoch or state is not SubState.LIVE:
            return False
        self.mirror.apply(messages, unit)
        if not self.behind:
            self.outbox.push_deltas(self, ops, bodies)
        return True

    def caught_up(self) -> list[tuple[str, bytes]] | None:
        """The outbox has room again: what to send to catch this subscription up.

        The mirror's snapshot when it can serve; None when a `reset` is on its way
        anyway (PENDING, RESETTING) or had to be asked for (the mirror is incomplete).
        """
        self.behind = False
        if self.state is not SubState.LIVE:
            return None
        snapshot = self.mirror.snapshot()
        if snapshot is None:
            self.move(SubState.RESETTING)
            self.request_resync(self)
        return snapshot

    def needs_reset(self) -> None:
        """Frames may have been lost: drop everything until the next reset."""
        if self.state is SubState.LIVE:
            self.move(SubState.RESETTING)
