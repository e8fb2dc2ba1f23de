"""The expiry loop: the owner of a partition deletes its rows whose TTL has passed.

Every `interval_ms` it asks Redis (on Redis's clock) for the due rows of the partitions
served here and deletes each through the ordinary write script, so subscribers see
ordinary leaves; a partition no longer served by the time its turn comes is skipped
(its new owner sweeps it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .clock import RedisClock
from .engine import Engine

__all__ = ["DueRows", "ExpireRow", "ExpiryLoop"]

DueRows = Callable[[Sequence[int], int], Awaitable[dict[int, list[tuple[str, str, str]]]]]
"""(partitions, Redis now in ms) -> per partition, (tenant, entity, id) of due rows."""

ExpireRow = Callable[[str, str, str], Awaitable[Any]]
"""(tenant, entity, id) -> delete the row if its expiry has passed."""


class ExpiryLoop:
    def __init__(
        self,
        *,
        interval_ms: int,
        engine: Engine,
        serving: Callable[[int], bool],
        due: DueRows,
        expire: ExpireRow,
        clock: RedisClock,
    ) -> None:
        self._interval_s = interval_ms / 1000
        self._engine = engine
        self._serving = serving
        self._due = due
        self._expire = expire
        self._clock = clock

    async def once(self) -> None:
        await asyncio.sleep(self._interval_s)
        due = await self._due(self._engine.serving(), int(self._clock.now_ms()))
        for p, items in due.items():
            for tenant, entity, row_id in items:
                if self._serving(p):
                    await self._expire(tenant, entity, row_id)
