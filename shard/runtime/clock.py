"""Redis's clock as this shard last saw it.

Liveness, leases and row expiry are decided on Redis's clock (DESIGN.md section 2), never
on a process clock. The ownership loop is the one writer: every heartbeat reports Redis
time and `observe` keeps the offset from the local wall clock; readers (the tail's lag,
the expiry sweep) ask `now_ms`. Until the first heartbeat the offset is 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["RedisClock"]


class RedisClock:
    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._offset_ms = 0.0

    def observe(self, redis_now_ms: float) -> None:
        """Redis said it is `redis_now_ms` (just now)."""
        self._offset_ms = redis_now_ms - self._wall() * 1000

    def now_ms(self) -> float:
        """Redis time in ms, estimated from the wall clock and the last observation."""
        return self._wall() * 1000 + self._offset_ms
