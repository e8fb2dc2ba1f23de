"""What the shard runtime needs of the outside world, as small `Protocol`s.

Declared here, where they are used, and implemented structurally (no inheritance) by
`storage` and by the runtime's own publisher:

| port           | called by            | implemented by            |
|----------------|----------------------|---------------------------|
| `RowSource`    | `Engine` (claims, collection loads) | `storage.ChangeLog` |
| `Registrations`| `Engine` (claims, subscribe, reanchor) | `storage.Registry` |
| `DeltaSink`    | `Engine` (snapshots, deltas) | `runtime.publisher.Publisher` |
| `FrameSink`    | `Publisher` (one pipeline per flush) | `storage.Deltas` |
| `ChangeFeed`   | the tail loop        | `storage.PartitionTail`   |

Tests run the engine over in-memory doubles of these *in addition to* the real-Redis
process tests (`tests/shard_doubles.py`, `tests/test_shard_engine.py`). The value types
they carry (`Loaded`, `TailRead`, `DeltaFrame`, `Registration`, `Change`) are plain data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from cluster.messages import Registration
from shard import ViewDelta
from storage import DeltaFrame, Loaded, TailRead, Wanted

__all__ = ["ChangeFeed", "DeltaSink", "FrameSink", "Registrations", "RowSource"]


class RowSource(Protocol):
    """A partition's change log and the rows of its collections."""

    async def mark(self, p: int) -> tuple[str, int]:
        """The log's current end as a position (a real entry id), and the time in ms."""
        ...

    async def end(self, p: int) -> tuple[str, int]:
        """The log's current end as a position, and the version its entry logged."""
        ...

    async def changed_since(
        self, p: int, stream_id: str, version: int, tenant: str, entity: str, most: int
    ) -> list[tuple[str, int]] | None:
        """(row id, version) of the changes of (tenant, entity) after the entry
        `stream_id` up to the log's end; None when that entry is gone, logged another
        write than `version`, or more than `most` entries follow it."""
        ...

    async def load_collection(self, tenant: str, entity: str, *,
                              since: str | None = None) -> Loaded:
        """Every row of (tenant, entity), plus the changes of the log after `since`
        (a position at or before the scan's start) up to the returned position."""
        ...


class Registrations(Protocol):
    """The durable subscription registry (read only: shards never write it)."""

    async def by_partition(self, p: int) -> dict[str, Registration]: ...

    async def get(self, p: int, rid: str) -> Registration | None: ...


class DeltaSink(Protocol):
    """Takes snapshots and deltas under the epoch they were computed in; publishes them
    later, batched per gateway. `send` and `send_to` never block; `room` is how a
    snapshot waits for its gateway's buffer instead of overflowing it."""

    def send(self, p: int, epoch: int, deltas: Sequence[ViewDelta]) -> None: ...

    def send_to(
        self, p: int, epoch: int, gateway: str, rids: tuple[str, ...], payload: bytes
    ) -> None: ...

    async def room(self, gateway: str, size: int) -> None: ...

    async def flush(self) -> None:
        """Publish everything taken so far."""
        ...


class FrameSink(Protocol):
    """The delta streams, shard side."""

    async def publish(self, frames: Sequence[tuple[str, DeltaFrame]]) -> list[bool]:
        """Append each (gateway, frame); per frame, whether its stream still existed."""
        ...


class ChangeFeed(Protocol):
    """Reads the change logs of many partitions from given positions."""

    async def read(
        self,
        positions: Mapping[int, str],
        *,
        count: int = 500,
        block_ms: int = 1000,
        wanted: Wanted | None = None,
    ) -> TailRead:
        """At most `count` wanted changes per partition after its position (waiting up
        to `block_ms` for the first), the new positions, and the partitions whose
        position was trimmed away."""
        ...
