"""`cluster.loops`: the guarded loop's backoff, its cancellation, and the Python 3.11
lost-cancellation guard (a body that swallows `CancelledError`, as `asyncio.wait_for`
can on 3.11, must still stop the loop)."""

from __future__ import annotations

import asyncio

import pytest

from cluster.loops import cancel_all, cancel_requested, guarded


async def test_errors_are_reported_and_backed_off_with_a_cap_and_a_reset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        delays.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)  # what `guarded` sleeps with
    errors: list[tuple[str, str]] = []
    calls = 0

    async def body() -> None:
        nonlocal calls
        calls += 1
        if calls == 7:
            return  # a good turn resets the backoff
        if calls == 9:
            raise asyncio.CancelledError
        raise ValueError(calls)

    with pytest.raises(asyncio.CancelledError):
        await guarded("demo", body, on_error=lambda name, e: errors.append((name, repr(e))),
                      backoff_s=0.05, backoff_max_s=0.5)
    assert delays == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5, 0.05]
    assert errors[0] == ("demo", "ValueError(1)") and len(errors) == 7


async def test_a_cancellation_swallowed_by_the_body_still_ends_the_loop() -> None:
    started = asyncio.Event()

    async def body() -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return  # lost, as inside `wait_for` on Python 3.11

    task = asyncio.create_task(guarded("demo", body, on_error=lambda n, e: None))
    await started.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done and task.cancelled()


async def test_cancel_all_cancels_again_a_task_that_kept_running() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1

    async def failing() -> None:
        raise ValueError("retrieved, not raised")

    tasks = [asyncio.create_task(stubborn()), asyncio.create_task(failing())]
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_all(tasks, retry_s=0.01), 2)
    assert swallowed == 1 and tasks[0].cancelled() and tasks[1].done()


async def test_cancel_requested_outside_and_inside_a_cancelled_task() -> None:
    assert not cancel_requested()
    seen: list[bool] = []

    async def look() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append(cancel_requested())

    task = asyncio.create_task(look())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait({task})
    assert seen == [True]
