"""The live side's counters: one typed object, owned by `LiveService`.

Invariant: every counter only grows, and only through a method named for the event it
counts, called by the part that saw the event (the hub for subscribes, re-sends and
resyncs; the demux for frames, gaps and dropped groups; an outbox for overflows; a
subscription for the resets it passes on, by reason, and for its resume or its miss).
Nothing else writes them.
`as_dict` is what `/v1/cluster`, `lq status` (through the gateway's
liveness value) and the `lq_live_<name>` Prometheus counters read, so its keys are part
of the public surface: rename nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["LiveStats"]


@dataclass(slots=True)
class LiveStats:
    subscribes: int = 0  # subscriptions registered
    resends: int = 0  # control requests re-sent after their deadline
    resyncs: int = 0  # fresh snapshots asked for (gaps, lost resets, broken mirrors)
    gaps: int = 0  # frame counter gaps seen
    dropped: int = 0  # (frame group, subscription) pairs the fences dropped
    overflows: int = 0  # subscriptions that fell behind a full outbox
    frames: int = 0  # delta frames read
    checks: int = 0  # check messages queued
    resumes: int = 0  # subscribes answered by a state-diff resume (no snapshot sent)
    resume_misses: int = 0  # subscribes that declared rows but got reset + snapshot
    # resets passed on to clients, by reason (`lq_live_resets_total{reason}`)
    resets: dict[str, int] = field(default_factory=dict)

    def reset(self, reason: str) -> None:
        self.resets[reason] = self.resets.get(reason, 0) + 1

    def resumed(self, kept: bool) -> None:
        """A subscribe that declared its rows was answered: by a resume when `kept`."""
        if kept:
            self.resumes += 1
        else:
            self.resume_misses += 1

    def checked(self) -> None:
        self.checks += 1

    def subscribed(self) -> None:
        self.subscribes += 1

    def resent(self) -> None:
        self.resends += 1

    def resynced(self) -> None:
        self.resyncs += 1

    def gap(self) -> None:
        self.gaps += 1

    def frame(self, dropped: int) -> None:
        """One frame read, of which the fences dropped `dropped` subscription groups."""
        self.frames += 1
        self.dropped += dropped

    def overflowed(self) -> None:
        self.overflows += 1

    def as_dict(self) -> dict[str, int | dict[str, int]]:
        return asdict(self)
