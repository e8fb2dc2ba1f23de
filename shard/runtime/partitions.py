"""Per-partition state of a shard: a small state machine and what it serves.

CLAIMING -> SERVING -> DROPPED; nothing else. While CLAIMING, the change log is not
tailed for the partition (its position is the claim's mark) and control messages for it
wait for the claim. `position` is the id of the last log entry *applied* to the
matcher, and `version` the version that entry logged (0 for a marker): together the
`cluster.logpos` pos of a changes-mode `synced`; both only move under `lock`, which also
covers collection loads, so a load's replay always starts at or before what the tail
will re-deliver. `advanced` is set (and replaced by a fresh event) each time `position`
moves, so a reader can wait for the partition to apply the log up to a position.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field

__all__ = ["Partition", "PartitionState", "SubInfo"]


class PartitionState(enum.Enum):
    CLAIMING = "claiming"
    SERVING = "serving"
    DROPPED = "dropped"


_ALLOWED = {
    PartitionState.CLAIMING: {PartitionState.SERVING, PartitionState.DROPPED},
    PartitionState.SERVING: {PartitionState.DROPPED},
    PartitionState.DROPPED: set(),
}


@dataclass(frozen=True, slots=True)
class SubInfo:
    """What the shard keeps of a registration it serves."""

    tenant: str
    entity: str
    gateway: str


@dataclass(slots=True)
class Partition:
    p: int
    epoch: int
    position: str = "0-0"
    version: int = 0
    state: PartitionState = PartitionState.CLAIMING
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    claimed: asyncio.Event = field(default_factory=asyncio.Event)
    advanced: asyncio.Event = field(default_factory=asyncio.Event)
    subs: dict[str, SubInfo] = field(default_factory=dict)

    def move(self, to: PartitionState) -> None:
        if to not in _ALLOWED[self.state]:
            raise RuntimeError(f"partition {self.p}: {self.state.value} -> {to.value} refused")
        self.state = to
        if to is not PartitionState.CLAIMING:
            self.claimed.set()

    def moved(self, position: str, version: int) -> None:
        """The log was applied up to `position` (whose entry logged `version`): wake
        whoever waits for it (caller holds `lock`)."""
        self.position, self.version = position, version
        woken, self.advanced = self.advanced, asyncio.Event()
        woken.set()

    @property
    def serving(self) -> bool:
        return self.state is PartitionState.SERVING
