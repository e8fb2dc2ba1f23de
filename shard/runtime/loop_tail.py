"""The tail loop: read the change logs of the served partitions, apply, publish.

Each turn reads every served partition from its applied position (one blocking read on
standalone Redis, pipelined polls on a cluster), hands each partition's changes to the
engine (which ignores a partition dropped, re-claimed or moved since the read was built),
re-claims partitions whose position was trimmed away (never a silent gap), and flushes
the deltas before the next read goes out.
"""

from __future__ import annotations

from collections.abc import Callable

from .clock import RedisClock
from .engine import Engine
from .events import Events
from .ports import ChangeFeed

__all__ = ["TailLoop"]


class TailLoop:
    def __init__(
        self,
        *,
        feed: ChangeFeed,
        engine: Engine,
        count: int,
        block_ms: int,
        reclaim: Callable[[int], None],
        clock: RedisClock,
        events: Events,
    ) -> None:
        self._feed = feed
        self._engine = engine
        self._count = count
        self._block_ms = block_ms
        self._reclaim = reclaim
        self._clock = clock
        self._events = events
        self.lag_ms = 0.0  # age of the newest entry of the last read that found any

    async def once(self) -> None:
        engine = self._engine
        positions = engine.serving_positions()
        read = await self._feed.read(
            positions, count=self._count, block_ms=self._block_ms, wanted=engine.wanted
        )
        for p in read.trimmed:
            self._events.warning("log_trimmed", p=p)
            self._reclaim(p)
        for p, position in read.positions.items():
            await engine.advance(p, positions[p], read.changes.get(p, ()), position)
        if read.positions:
            newest = max(int(pos.split("-")[0]) for pos in read.positions.values())
            self.lag_ms = max(0.0, self._clock.now_ms() - newest)
            # Publish before the next read goes out: building that read (every served
            # partition's stream) would otherwise delay these deltas by most of a ms.
            # Changes that arrive meanwhile wait in the logs and come in the next read.
            await engine.flush()
