"""A circuit breaker for Redis: closed -> open -> half-open -> closed, as a state machine.

Invariant: while open, no request reaches Redis until the cooldown has passed; then
exactly one trial request is let through (half-open) and its outcome decides: success
closes the breaker, failure opens it again for a fresh cooldown. Only availability faults
count as failures; a refusal from a healthy Redis (a failed precondition, a missing row)
is a success. Single event loop: no locks needed, every transition is synchronous.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from cluster.errors import StorageUnavailable

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(enum.IntEnum):
    """The gauge value of each state (closed 0, half-open 1, open 2)."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Counts consecutive failures; `admit()` before each Redis call, then one outcome."""

    def __init__(
        self,
        failures: int = 3,
        cooldown: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        if failures < 1 or cooldown < 0:
            raise ValueError("failures >= 1 and cooldown >= 0")
        self.threshold = failures
        self.cooldown = cooldown
        self.clock = clock
        self.on_change = on_change
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.trial_out = False

    def _move(self, state: BreakerState) -> None:
        if state is not self.state:
            self.state = state
            if self.on_change is not None:
                self.on_change(state)

    def admit(self) -> bool:
        """Let a call through (True if it is the half-open trial) or raise StorageUnavailable."""
        if self.state is BreakerState.CLOSED:
            return False
        if self.state is BreakerState.OPEN:
            wait = self.opened_at + self.cooldown - self.clock()
            if wait > 0:
                raise StorageUnavailable(
                    f"Redis is unavailable (circuit breaker open, next try in {wait:.1f} s);"
                    " nothing was written"
                )
            self._move(BreakerState.HALF_OPEN)
        if self.trial_out:
            raise StorageUnavailable(
                "Redis is unavailable (circuit breaker testing the connection);"
                " nothing was written"
            )
        self.trial_out = True
        return True

    def succeeded(self, trial: bool) -> None:
        if trial:
            self.trial_out = False
        self.failures = 0
        self._move(BreakerState.CLOSED)

    def failed(self, trial: bool) -> None:
        if trial:
            self.trial_out = False
        self.failures += 1
        if trial or self.state is BreakerState.HALF_OPEN or self.failures >= self.threshold:
            self.opened_at = self.clock()
            self._move(BreakerState.OPEN)

    def abandoned(self, trial: bool) -> None:
        """The call ended without an outcome (cancelled): free the trial slot, change nothing."""
        if trial:
            self.trial_out = False
