"""The tail loop: read the change logs of the served partitions, apply, publish.

Each turn reads every served partition from its applied position (one blocking read on
standalone Redis, pipelined polls on a cluster), hands each partition's changes to the
engine (which ignores a partition dropped, re-claimed or moved since the read was built),
re-claims partitions whose position was trimmed away (never a silent gap), and flushes
the deltas before the next read goes out.

Readiness (`unready`): the last read that found changes was at most `max_lag_ms` behind
the newest of them (a read that finds nothing means caught up: `lag_ms` is then 0, so
the `tail_lag_ms` gauge does not keep an old burst's lag while idle), and, while it serves
partitions, a read came back within `max_lag_ms` plus its block time (a stuck loop).
"""

from __future__ import annotations

import time
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
        self.lag_ms = 0.0  # age of the newest entry of the last read; 0 once one finds none
        self.caught_up = True  # the last read found nothing new: no lag now
        self.read_at = time.monotonic()  # when the last read came back

    def unready(self, max_lag_ms: float) -> str | None:
        """Why the tail is not within its bound (None: it is)."""
        if not self.caught_up and self.lag_ms > max_lag_ms:
            return f"tail lag {self.lag_ms:.0f} ms over the bound of {max_lag_ms:.0f} ms"
        silent_ms = (time.monotonic() - self.read_at) * 1000
        if self._engine.serving_positions() and silent_ms > max_lag_ms + self._block_ms:
            return f"no change log read came back for {silent_ms:.0f} ms"
        return None

    async def once(self) -> None:
        engine = self._engine
        positions = engine.serving_positions()
        read = await self._feed.read(
            positions, count=self._count, block_ms=self._block_ms, wanted=engine.wanted
        )
        self.read_at = time.monotonic()
        self.caught_up = not read.positions
        if self.caught_up:  # else the gauge would show an old burst's lag while idle
            self.lag_ms = 0.0
        for p in read.trimmed:
            self._events.warning("log_trimmed", p=p)
            self._reclaim(p)
        for p, position in read.positions.items():
            await engine.advance(p, positions[p], read.changes.get(p, ()), position,
                                 read.versions.get(p, 0))
        if read.positions:
            newest = max(int(pos.split("-")[0]) for pos in read.positions.values())
            self.lag_ms = max(0.0, self._clock.now_ms() - newest)
            # Publish before the next read goes out: building that read (every served
            # partition's stream) would otherwise delay these deltas by most of a ms.
            # Changes that arrive meanwhile wait in the logs and come in the next read.
            await engine.flush()
