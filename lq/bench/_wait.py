"""The benches' one way to wait for a condition they cannot be told of."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["until"]


async def until(check: Callable[[], bool], timeout: float, what: str = "the condition",
                step: float = 0.002) -> float:
    """Poll `check` every `step` seconds until it holds; the seconds that took.

    TimeoutError naming `what` once `timeout` seconds have passed without it."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not reached within {timeout} s")
        await asyncio.sleep(step)
    return time.monotonic() - started
