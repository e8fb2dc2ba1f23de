"""The rules of delivery, written once: the epoch fence per subscription, the frame
counter per shard incarnation, and the gap policy (DESIGN.md sections 2, 5b, 6 and 7;
PROTOCOL.md section 3, rule 3).

Pure: no I/O, no asyncio, no clock. The real gateway (`Subscription`, `Demux`) and the
simulated gateway of the shard tests and benchmarks (`lq.bench._simgateway`) both call
it, so the shard is tested against the rules that users run.

Invariants:
- **Fence.** A subscription keeps the newest epoch it accepted. A group of an older
  epoch is dropped. A newer epoch is accepted only from a group that starts with
  `reset` (or `resume`, which starts a subscription's stream as a `reset` does:
  `starts`); a newer epoch without one means its `reset` was lost, so the group is dropped
  and a resync is due. While a `reset` is awaited (PENDING, RESETTING), only a group
  that starts with `reset` passes, so a client never sees a delta that does not follow
  from the list it holds. CLOSED is final and passes nothing.
- **Frames.** Per (shard, incarnation) the frame counter `n` starts at 1 for each
  gateway stream and grows by exactly one. Any other `n` is a gap: a skip, or a
  counter going backwards (which a correct shard never sends; treating it as a gap
  re-bases the counter instead of dropping that incarnation's frames for ever). The
  first frame seen from an incarnation counts from 0, so a lost first frame (a
  subscription's first `reset`, say) is a gap too. The frame that shows a gap is still
  delivered: every subscription it can concern is then waiting for a `reset`.
- **Gaps.** A gap in an incarnation's frames may have lost any frame it sent: deltas for
  the subscriptions it last reset, the first `reset` of a subscription still waiting
  for one, or the claim `reset` of a subscription whose partition that shard now owns.
  Each of those is resynced (`gap_targets`), and its fence drops everything until the
  `reset` arrives. Asking too often costs a snapshot; asking too rarely would leave a
  list stale for ever, so the policy errs on the first side.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

__all__ = [
    "FrameCounters",
    "FrameVerdict",
    "Phase",
    "Source",
    "SubFence",
    "Verdict",
    "gap_targets",
    "starts",
]

Source = tuple[str, str]
"""(shard id, incarnation): who sent a frame."""


_STARTS = frozenset({"reset", "resume"})


def starts(op: str) -> bool:
    """Whether a group whose first op is `op` starts a subscription's stream (a
    snapshot's `reset`, or a resume's `resume`): what the fence treats as a reset."""
    return op in _STARTS


class Phase(enum.Enum):
    """A subscription's lifecycle as the fence sees it."""

    PENDING = "pending"  # registered, no reset accepted yet
    LIVE = "live"  # a reset was accepted; deltas of its epoch pass
    RESETTING = "resetting"  # frames may have been lost; waiting for a reset
    CLOSED = "closed"  # final


class Verdict(enum.Enum):
    """What to do with one group of messages for one subscription."""

    DELIVER = "deliver"  # apply it and send it on
    STALE = "stale"  # an older epoch: drop
    WAITING = "waiting"  # a reset is awaited: drop until it comes
    LOST_RESET = "lost_reset"  # a newer epoch without its reset: drop, ask for a resync
    CLOSED = "closed"  # the subscription has ended: drop


_ALLOWED: dict[Phase, frozenset[Phase]] = {
    Phase.PENDING: frozenset({Phase.LIVE, Phase.CLOSED}),
    Phase.LIVE: frozenset({Phase.RESETTING, Phase.CLOSED}),
    Phase.RESETTING: frozenset({Phase.LIVE, Phase.CLOSED}),
    Phase.CLOSED: frozenset(),
}


class SubFence:
    """One subscription's fence: its phase, the newest epoch accepted and its source."""

    __slots__ = ("epoch", "phase", "source")

    def __init__(self) -> None:
        self.phase = Phase.PENDING
        self.epoch = 0
        self.source: Source | None = None

    def __repr__(self) -> str:
        return f"SubFence({self.phase.value}, epoch={self.epoch}, source={self.source})"

    def move(self, to: Phase) -> None:
        """Change phase; refuses a transition the lifecycle does not have."""
        if to is self.phase:
            return
        if to not in _ALLOWED[self.phase]:
            raise RuntimeError(f"subscription phase {self.phase.value} -> {to.value}")
        self.phase = to

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    @property
    def awaiting(self) -> bool:
        """A reset is due (none accepted yet, or frames may have been lost)."""
        return self.phase is Phase.PENDING or self.phase is Phase.RESETTING

    def admit(self, epoch: int, source: Source, starts_with_reset: bool) -> Verdict:
        """Decide one group; a `reset` that passes moves the fence to its epoch."""
        phase = self.phase
        if phase is Phase.CLOSED:
            return Verdict.CLOSED
        if epoch < self.epoch:
            return Verdict.STALE
        if starts_with_reset:
            self.epoch = epoch
            self.source = source
            self.move(Phase.LIVE)
            return Verdict.DELIVER
        if phase is not Phase.LIVE:
            return Verdict.WAITING
        if epoch > self.epoch:
            self.move(Phase.RESETTING)
            return Verdict.LOST_RESET
        return Verdict.DELIVER

    def lost(self) -> None:
        """Frames for this subscription may have been lost: wait for a reset."""
        if self.phase is Phase.LIVE:
            self.move(Phase.RESETTING)

    def close(self) -> None:
        self.move(Phase.CLOSED)


class FrameVerdict(enum.Enum):
    NEXT = "next"  # n is the one expected
    GAP = "gap"  # frames may have been lost: apply the gap policy, then deliver this one


class FrameCounters:
    """The last frame counter seen per incarnation; bounded (oldest forgotten first).

    A forgotten incarnation that sends again counts from 0, which looks like a gap: an
    extra resync, never a missed one."""

    __slots__ = ("bound", "last")

    def __init__(self, bound: int = 4096) -> None:
        self.bound = bound
        self.last: dict[Source, int] = {}

    def check(self, source: Source, n: int) -> FrameVerdict:
        last_seen = self.last
        last = last_seen.pop(source, 0)
        last_seen[source] = n
        if len(last_seen) > self.bound:
            del last_seen[next(iter(last_seen))]
        return FrameVerdict.NEXT if n == last + 1 else FrameVerdict.GAP

    def expected(self, source: Source) -> int:
        return self.last.get(source, 0) + 1


class Fenced(Protocol):
    """What the gap policy needs of a subscription."""

    @property
    def fence(self) -> SubFence: ...

    @property
    def p(self) -> int: ...


S = TypeVar("S", bound=Fenced)


def gap_targets(
    source: Source, subs: Iterable[S], owner_of: Callable[[int], str | None]
) -> list[S]:
    """The subscriptions to resync after a gap in `source`'s frames (see the module
    docstring): last reset by it, still waiting for a first reset, or in a partition
    that its shard owns now. `owner_of` is the owner as this gateway computes it."""
    shard = source[0]
    hit = []
    for sub in subs:
        fence = sub.fence
        if fence.closed:
            continue
        if fence.source == source or fence.phase is Phase.PENDING or owner_of(sub.p) == shard:
            hit.append(sub)
    return hit
