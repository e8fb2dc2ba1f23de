"""The flusher's own rules (gateway/live/flush.py), without a server: a send that runs to
its end is done when stepped once; one that suspends is finished by the task that awaits
the `Resumed`; a connection is flushed at most once per loop turn, and one that cannot be
flushed, or whose flush fails, gets its writer woken. Delivery through real connections
is covered by the test_live_* suites."""

from __future__ import annotations

import asyncio

import pytest

from gateway.live.flush import Flusher, Wake, send_now


class Conn:
    def __init__(self, flushable: bool = True, fails: bool = False) -> None:
        self.flushable = flushable
        self.fails = fails
        self.flushed = 0

    def can_flush(self) -> bool:
        return self.flushable

    def flush_now(self) -> None:
        self.flushed += 1
        if self.fails:
            raise RuntimeError("a bug")


async def test_a_send_that_does_not_suspend_is_done_when_stepped() -> None:
    out: list[int] = []
    ready = asyncio.Event()
    ready.set()

    async def send(x: int) -> None:
        await ready.wait()
        out.append(x)

    assert send_now(send(1)) is None
    assert out == [1]


async def test_a_suspended_send_is_finished_by_the_task_that_awaits_it() -> None:
    out: list[str] = []
    writable = asyncio.Event()

    async def send(x: str) -> None:
        await writable.wait()
        out.append(x)

    resumed = send_now(send("frame"))
    assert resumed is not None and out == []

    async def writer() -> None:
        await resumed
        out.append("after")

    task = asyncio.create_task(writer())
    await asyncio.sleep(0.01)
    assert out == [] and not task.done()
    writable.set()
    await asyncio.wait_for(task, 1)
    assert out == ["frame", "after"]


async def test_a_cancelled_writer_cancels_the_send_it_finishes() -> None:
    never = asyncio.Event()

    async def send() -> None:
        await never.wait()

    resumed = send_now(send())
    assert resumed is not None

    async def writer() -> None:
        await resumed

    task = asyncio.create_task(writer())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_marked_connections_are_flushed_once_per_turn_or_their_writer_woken() -> None:
    flusher = Flusher()
    ok, busy, broken = Conn(), Conn(flushable=False), Conn(fails=True)
    wakes = [Wake(flusher, c) for c in (ok, busy, broken)]
    for _ in range(3):  # three pushes in one turn
        for wake in wakes:
            wake.set()
    assert len(flusher.dirty) == 2  # `busy` woke its writer at once instead
    assert wakes[1].is_set() and not wakes[0].is_set()
    await asyncio.sleep(0)  # the turn ends: one callback
    assert (ok.flushed, busy.flushed, broken.flushed) == (1, 0, 1)
    assert not wakes[0].is_set()
    assert wakes[2].is_set()  # its flush failed: the writer takes over
    assert flusher.dirty == [] and not flusher.scheduled
    wakes[0].set()  # marked again in a later turn
    await asyncio.sleep(0)
    assert ok.flushed == 2
