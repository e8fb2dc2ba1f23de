"""Delta publishing: view deltas batched per gateway per loop turn, fenced, numbered.

Frames are one XADD per (gateway, partition) per flush, pipelined into one round trip.
Invariants:
- a frame carries the epoch its deltas were computed under and is sent only while that
  lease is still served (checked just before publishing); otherwise it is dropped and
  counted as a fenced publish;
- `n` counts from 1 per (incarnation, gateway) and advances for every frame sent, even
  when NOMKSTREAM refused it or Redis failed, so a lost frame is a visible gap;
- the buffer per gateway is bounded (`max_bytes`, or one payload when a single one is
  larger: an oversized snapshot must still get through, or its subscription would
  overflow, resync and overflow again forever). Overflow policy: that gateway's
  buffered frames are dropped and `n` skips one number, so the gateway sees a gap and
  resyncs its subscriptions (a reset, never a silent loss). The next flush carries the
  gap even when nothing else is buffered for that gateway (a frame without groups), so
  the gateway learns of it at once, not at its next delta;
- snapshots (claims, subscribe, reanchor, resync) wait for `room` before they are
  buffered: a burst of them paces itself on the flushes instead of overflowing (a
  claim of a partition with many subscriptions produces them without yielding);
- flushes never overlap (one lock): the frames of one flush are in Redis before the next
  flush numbers any, so `n` reaches each stream in order even when the drain flushes
  while the flusher task is mid-publish.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cluster.loops import cancel_requested
from shard import ViewDelta
from storage import DeltaFrame

from .events import Events
from .ports import FrameSink

__all__ = ["Publisher", "PublisherStats"]

Group = tuple[tuple[str, ...], bytes]


@dataclass(slots=True)
class PublisherStats:
    frames: int = 0
    fenced: int = 0
    overflows: int = 0
    refused_no_stream: int = 0
    errors: int = 0


@dataclass(slots=True)
class _Buffer:
    parts: dict[tuple[int, int], list[Group]] = field(default_factory=lambda: defaultdict(list))
    size: int = 0


class Publisher:
    """The engine's `ports.DeltaSink`, publishing through a `ports.FrameSink`; `fence(p,
    epoch)` says whether frames of `p` computed under `epoch` may still go out (the
    shard's `Ownership.serving`)."""

    def __init__(
        self,
        sink: FrameSink,
        fence: Callable[[int, int], bool],
        shard_id: str,
        inc: str,
        max_bytes: int,
        events: Events,
    ) -> None:
        self.events = events
        self.sink = sink
        self.fence = fence
        self.shard_id = shard_id
        self.inc = inc
        self.max_bytes = max_bytes
        self.stats = PublisherStats()
        self._buffers: dict[str, _Buffer] = defaultdict(_Buffer)
        self._n: dict[str, int] = defaultdict(int)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._flushing = asyncio.Lock()
        self._flushed = asyncio.Event()
        self._gap_notices: dict[str, tuple[int, int]] = {}

    def send(self, p: int, epoch: int, deltas: Sequence[ViewDelta]) -> None:
        """Buffer the deltas of one change (or snapshot) of partition `p`."""
        for delta in deltas:
            for gateway, rids in delta.routes.items():
                self.send_to(p, epoch, gateway, tuple(rids), delta.frame.payload)

    def send_to(
        self, p: int, epoch: int, gateway: str, rids: tuple[str, ...], payload: bytes
    ) -> None:
        buf = self._buffers[gateway]
        if buf.size and buf.size + len(payload) > self.max_bytes:
            self.stats.overflows += 1
            self.events.warning("publish_overflow", gateway=gateway, p=p)
            self._buffers[gateway] = _Buffer()
            self._n[gateway] += 1  # the deliberate gap makes the gateway resync
            self._gap_notices[gateway] = (p, epoch)
        else:
            buf.parts[(p, epoch)].append((rids, payload))
            buf.size += len(payload)
        self._idle.clear()
        self._wake.set()

    async def room(self, gateway: str, size: int) -> None:
        """Wait until `size` more bytes fit in `gateway`'s buffer (or it is empty)."""
        while (buf := self._buffers.get(gateway)) is not None and buf.size and (
            buf.size + size > self.max_bytes
        ):
            self._wake.set()
            await self._flushed.wait()

    def _frames(self, buffers: dict[str, _Buffer]) -> list[tuple[str, DeltaFrame]]:
        frames: list[tuple[str, DeltaFrame]] = []
        notices, self._gap_notices = self._gap_notices, {}
        for gateway, (p, epoch) in notices.items():
            if gateway not in buffers or not buffers[gateway].parts:
                # no deltas, so nothing stale to fence: it only shows the gap
                self._n[gateway] += 1
                frames.append((gateway, DeltaFrame(self.shard_id, self.inc, self._n[gateway],
                                                   p, epoch, ())))
        for gateway, buf in buffers.items():
            for (p, epoch), groups in buf.parts.items():
                if not self.fence(p, epoch):
                    self.stats.fenced += 1
                    continue
                self._n[gateway] += 1
                n = self._n[gateway]
                frames.append(
                    (gateway, DeltaFrame(self.shard_id, self.inc, n, p, epoch, tuple(groups)))
                )
        return frames

    async def flush(self) -> None:
        """Publish everything buffered so far (one pipeline)."""
        async with self._flushing:
            try:
                await self._flush()
            finally:
                done, self._flushed = self._flushed, asyncio.Event()
                done.set()

    async def _flush(self) -> None:
        buffers, self._buffers = self._buffers, defaultdict(_Buffer)
        frames = self._frames(buffers)
        if not frames:
            return
        try:
            added = await self.sink.publish(frames)
        except Exception as e:
            self.stats.errors += 1
            self.events.error("publish_failed", frames=len(frames), error=repr(e))
            return
        self.stats.frames += len(frames)
        self.stats.refused_no_stream += added.count(False)

    async def run(self) -> None:
        """Flush once per loop turn whenever something is buffered; runs until cancelled."""
        while True:
            if cancel_requested():  # a lost cancellation: see cluster.loops
                raise asyncio.CancelledError
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0)  # let the rest of this turn add to the batch
            await self.flush()
            if not self._wake.is_set():
                self._idle.set()

    async def drained(self) -> None:
        """Wait until everything buffered so far has been flushed."""
        await self._idle.wait()
