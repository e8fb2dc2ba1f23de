"""Long-running asyncio loops that survive errors and always stop when cancelled.

Shared by every process (shard, gateway, the benchmarks' simulations). Invariants:
- `guarded` runs a body forever; an `Exception` from it is reported to `on_error` and
  followed by a sleep that doubles from `backoff_s` up to `backoff_max_s` (reset by the
  next body that returns normally); `CancelledError` is never caught, so cancelling the
  task ends the loop;
- a cancellation lost inside `asyncio.wait_for` on Python 3.11 (fixed in 3.12: when the
  inner future completes in the same turn as the cancellation, `wait_for` returns
  normally) is caught by `cancel_requested()` on every turn, so it only delays the stop
  by one turn of the body; `cancel_all` re-cancels tasks that kept running for it.

Standard library only: callers pass their own logging as `on_error`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

__all__ = ["ErrorHook", "cancel_all", "cancel_requested", "guarded"]

ErrorHook = Callable[[str, Exception], None]
"""(loop name, the exception) -> None; called before each backoff sleep. Must not raise."""


def cancel_requested() -> bool:
    """Whether the current task has been asked to stop (a cancellation is pending).

    redis-py sends every command through `asyncio.wait_for`, which on Python 3.11 can
    swallow a `CancelledError`; a loop that checks this on every turn still stops.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def guarded(
    name: str,
    body: Callable[[], Awaitable[None]],
    *,
    on_error: ErrorHook,
    backoff_s: float = 0.05,
    backoff_max_s: float = 2.0,
) -> None:
    """Await `body()` over and over until cancelled; errors go to `on_error`, then a
    capped exponential backoff. Never returns normally."""
    delay = backoff_s
    while True:
        if cancel_requested():
            raise asyncio.CancelledError
        try:
            await body()
            delay = backoff_s
        except asyncio.CancelledError:
            raise
        except Exception as e:
            on_error(name, e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, backoff_max_s)


async def cancel_all(tasks: Iterable[asyncio.Task[Any]], *, retry_s: float = 0.05) -> None:
    """Cancel `tasks` and wait until every one has finished, cancelling again, every
    `retry_s`, any that a lost cancellation kept running. Their exceptions are retrieved
    (so none is reported as never retrieved) and not raised."""
    tasks = list(tasks)
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=retry_s)
    for task in tasks:
        if not task.cancelled():
            task.exception()
