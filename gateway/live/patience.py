"""When an overdue request for a `reset` is sent again (the hub's re-send schedule).

A subscribe (or reanchor, or resync) sent to a shard is overdue when no `reset` came
within `subscribe_timeout`. On a busy box that is often not a lost message but a queue:
thousands of subscribes at once take the shard longer than the timeout to answer, and
re-sending them all asks it for thousands more snapshots (a storm that feeds itself).
So an overdue request waits while the shard it went to keeps answering other requests,
and is sent again when that shard has answered nothing for a whole timeout (it is stuck,
gone, or the message was lost on an idle shard) or when it has waited `patience` times
the timeout in all.

Invariants:
- a request is never deferred for longer than `patience` x `timeout` since it was sent:
  past that it is sent again, whatever the shard's progress, and the hub waits for it
  anew; so no request waits forever while its shard lives, and a gone shard's requests
  go to the new owner at once (the hub re-sends when the owner changed, before asking
  here);
- the record of answers is one time per shard, kept for the live shards only.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["PATIENCE", "Patience"]

PATIENCE = 10
"""At most this many timeouts between two sends of one request."""


class Patience:
    __slots__ = ("answered_at", "longest", "timeout")

    def __init__(self, timeout: float, patience: int = PATIENCE) -> None:
        self.timeout = timeout
        self.longest = timeout * patience
        self.answered_at: dict[str, float] = {}  # shard -> when an answer of it was last seen

    def answered(self, shard: str | None, now: float) -> None:
        """A request sent to `shard` was answered (seen at `now`)."""
        if shard is not None:
            self.answered_at[shard] = now

    def resend_now(self, shard: str | None, sent_at: float, now: float) -> bool:
        """Whether an overdue request, sent to `shard` at `sent_at`, goes again now."""
        if shard is None or now - sent_at >= self.longest:
            return True
        last = self.answered_at.get(shard)
        return last is None or now - last >= self.timeout

    def live(self, shards: Iterable[str]) -> None:
        """Only these shards are live: forget the others' answers."""
        alive = set(shards)
        for shard in [s for s in self.answered_at if s not in alive]:
            del self.answered_at[shard]
