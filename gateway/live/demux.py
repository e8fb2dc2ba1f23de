"""The one reader of `lq:delta:<gateway>`: frames in, fenced groups out to subscriptions.

Invariants:
- frames are read in stream order on a client kept for blocking reads; each group's
  messages are decoded and re-encoded once, whatever the number of subscriptions on
  this gateway that it goes to;
- per (shard, incarnation) the frame counter `n` must advance by one
  (`gateway.live.delivery.FrameCounters`); when it does not, the gap policy
  (`gateway.live.delivery.gap_targets`) names the subscriptions to resync, whose fences
  drop deltas until their `reset` arrives;
- when the stream is gone (expired, Redis restarted) or the read position was trimmed,
  the stream is created again and every subscription is resynced: never a silent gap;
- one-shot query answers on the stream go to the hub's `Asks` (they carry no `n`);
- a frame is handed to its subscriptions in slices, the loop turning between two
  (`asyncio.sleep(0)`), so the flusher writes the first subscribers' messages before the
  later ones are queued: the first `_SLICE`, then as many again, then twice that and so
  on (about log2(n / _SLICE) turns for n: 5 at 5,000, so the first writes come early and
  few turns are added). Frames are still dispatched one after the other, whole, in
  stream order (the read loop awaits each), so every subscription sees its groups in
  order, and what runs between two slices (a client's unsubscribe, a resync) acts on
  each subscription before or after its share of the frame, as between two frames;
- `read_once` is one turn of the read loop, run under `cluster.loops.guarded` (other
  faults are logged there and retried with backoff; cancellation always stops it).
"""

from __future__ import annotations

import asyncio
import logging

from cluster.logfmt import emit
from storage import DeltaFrame, Deltas, DeltaStreamGone, DeltaTrimmed

from .delivery import FrameCounters, FrameVerdict
from .group import Group
from .hub import Hub
from .stats import LiveStats

__all__ = ["Demux"]

log = logging.getLogger("lq.gateway")
_SLICE = 256  # subscriptions handed a frame before the first turn of the loop (then doubling)


class Demux:
    def __init__(
        self, hub: Hub, stats: LiveStats, deltas: Deltas, ttl_s: int, block_ms: int
    ) -> None:
        self.hub = hub
        self.stats = stats
        self.deltas = deltas
        self.ttl_s = ttl_s
        self.block_ms = block_ms
        self.position: str | None = None
        self.counters = FrameCounters()
        self.ready = asyncio.Event()

    async def create(self) -> None:
        """Create (or keep) the stream; read from its end from now on."""
        self.position = await self.deltas.create(self.hub.gateway_id, self.ttl_s)
        self.hub.asks.online = True
        self.ready.set()

    async def read_once(self) -> None:
        """Read one batch of frames (blocking up to `block_ms`) and dispatch it."""
        try:
            if self.position is None:
                await self.create()
                self.hub.resync_all()
            assert self.position is not None
            read = await self.deltas.read(
                self.hub.gateway_id, self.position, count=500, block_ms=self.block_ms
            )
        except (DeltaStreamGone, DeltaTrimmed) as e:
            emit(log, logging.WARNING, msg="delta stream lost; resync all",
                 gateway=self.hub.gateway_id, error=str(e))
            self.position = None
            self.hub.asks.online = False
            return
        self.position = read.position
        for frame in read.frames:
            await self.dispatch(frame)
        for answer in read.answers:
            self.hub.asks.settle(answer)

    def _check_counter(self, frame: DeltaFrame) -> None:
        """A gap resyncs what the gap policy names."""
        source = (frame.shard, frame.inc)
        expected = self.counters.expected(source)
        if self.counters.check(source, frame.n) is FrameVerdict.GAP:
            self.stats.gap()
            hit = self.hub.resync_after_gap(source)
            emit(log, logging.WARNING, msg="delta frame gap", shard=frame.shard,
                 inc=frame.inc, expected=expected, got=frame.n, resync=hit)

    async def dispatch(self, frame: DeltaFrame) -> None:
        """Fan one frame out to its subscriptions (through the fences), in slices."""
        self._check_counter(frame)
        subs = self.hub.subs
        source = (frame.shard, frame.inc)
        dropped = 0
        handed = 0
        pause = _SLICE  # the next turn of the loop: after this many subscriptions
        for rids, payload in frame.groups:
            targets = [s for r in rids if (s := subs.get(r)) is not None]
            if not targets:
                continue
            try:
                group = Group.decode(payload)
            except (ValueError, KeyError, TypeError) as e:
                emit(log, logging.WARNING, msg="malformed delta group", shard=frame.shard,
                     error=repr(e))
                for sub in targets:
                    sub.lost()
                    self.hub.request_resync(sub)
                continue
            if not group.ops:
                continue
            for sub in targets:
                if not sub.deliver(frame.epoch, source, group):
                    dropped += 1
                handed += 1
                if handed == pause:  # the flusher writes these before the next slice
                    pause *= 2
                    await asyncio.sleep(0)
        self.stats.frame(dropped)
