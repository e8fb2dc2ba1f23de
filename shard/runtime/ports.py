"""What the shard runtime needs of the outside world, as small `Protocol`s.

The matcher itself is pure: it takes changes and rows as arguments and returns frames.
These ports are where the runtime (next to it in `shard/`) plugs in `storage`: a source
of a collection's rows with the log position they are current at, a feed of changes,
and a sink for view deltas. Tests can implement them with in-memory doubles.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ._types import Change, Row, ViewDelta

__all__ = ["ChangeFeed", "DeltaSink", "RowSource"]


class RowSource(Protocol):
    """Loads every stored row of one (tenant, entity)."""

    async def load_rows(self, partition: int, tenant: str, entity: str) -> list[Row]: ...


class ChangeFeed(Protocol):
    """The next changes of a set of partitions, in log order per partition."""

    async def next_changes(self, partitions: Sequence[int]) -> list[tuple[int, Change]]: ...


class DeltaSink(Protocol):
    """Receives view deltas of one partition; batches them per route (gateway).

    `send` must not block: a runtime buffers and flushes once per event-loop turn.
    """

    def send(self, partition: int, deltas: Sequence[ViewDelta]) -> None: ...
