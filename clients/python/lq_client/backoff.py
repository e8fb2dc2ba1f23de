"""Capped, jittered exponential backoff between reconnects (standard library only).

Invariant: the pause before retry `n` (0 for the first retry of an outage) is
`min(cap, first * factor**n)` scaled by a uniform factor in `[1 - jitter, 1 + jitter]`,
and never more than `cap`; so many clients that lost the same gateway spread out
instead of reconnecting in step, and none waits longer than `cap` between tries.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff"]

_MAX_DOUBLINGS = 64  # past this `first * factor**n` is at the cap anyway (and floats overflow)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Pauses between reconnects: `first` seconds, times `factor` per retry, up to `cap`."""

    first: float = 0.1
    cap: float = 5.0
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.cap:
            raise ValueError("backoff: need 0 < first <= cap")
        if self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("backoff: need factor >= 1 and 0 <= jitter <= 1")

    def delay(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """The pause before retry number `retry` (0-based) of one outage."""
        base = min(self.cap, self.first * self.factor ** min(retry, _MAX_DOUBLINGS))
        return min(self.cap, base * (1 - self.jitter + 2 * self.jitter * rand()))
