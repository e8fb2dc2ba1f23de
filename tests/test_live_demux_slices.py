"""The demux hands a frame to its subscriptions in slices (gateway/live/demux.py): the
loop turns after the first `_SLICE`, then after doubling counts, so what the flusher
schedules for the first subscribers runs before the later ones are handed the frame;
every subscription still gets each group once, in order. Stub subscriptions stand for the
real ones (whose delivery the test_live_* suites cover through real connections)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from gateway.live import demux as demux_module
from gateway.live.demux import Demux
from gateway.live.group import Group
from gateway.live.stats import LiveStats
from storage import DeltaFrame


class Sub:
    def __init__(self, i: int, log: list[tuple[int, str]]) -> None:
        self.i = i
        self.log = log

    def deliver(self, epoch: int, source: Any, group: Group) -> bool:
        self.log.append((self.i, group.ops[0]))
        return True


class Hub:
    def __init__(self, n: int, log: list[tuple[int, str]]) -> None:
        self.subs = {f"gw.{i}": Sub(i, log) for i in range(n)}


async def test_a_frame_is_handed_out_in_doubling_slices_in_order() -> None:
    n = 5000
    log: list[tuple[int, str]] = []
    hub = Hub(n, log)
    demux = Demux(hub, LiveStats(), None, 60, 100)  # type: ignore[arg-type]
    turns: list[int] = []  # how many were handed the frame when the loop turned

    def turned() -> None:
        turns.append(len(log))
        if len(log) < 2 * n:
            asyncio.get_running_loop().call_soon(turned)

    update = orjson.dumps([{"op": "update", "id": "r1", "version": 2, "row": {"a": 1},
                            "from": 0, "to": 0, "cursor": "c"}])
    leave = orjson.dumps([{"op": "leave", "id": "r1", "version": 3, "from": 0}])
    rids = tuple(hub.subs)
    frame = DeltaFrame("s0", "inc", 1, 7, 1, ((rids, update), (rids, leave)))
    asyncio.get_running_loop().call_soon(turned)
    await demux.dispatch(frame)

    assert log == [(i, "update") for i in range(n)] + [(i, "leave") for i in range(n)]
    s = demux_module._SLICE
    expected = [s]
    while expected[-1] * 2 < 2 * n:
        expected.append(expected[-1] * 2)
    # the loop turned after each slice, and at no other time within the dispatch
    assert [t for t in turns if 0 < t < 2 * n] == expected
