"""SSE streams that outlive their HTTP connection, for `Last-Event-ID` resume.

A stream is one subscription with its outbox and a ring of the last events sent. When
its connection ends it lingers for `sse_linger` seconds (still applying deltas to its
mirror, its outbox bounded as always), then ends. Invariants:
- a stream is found again only by the tenant and the exact query text that made it;
- resume continues after the client's last `seq` when the ring still holds every event
  after it; otherwise the stream starts over under a new name (seq from 1) with `reset`
  and a fresh snapshot (from the mirror when it can serve, else from the shard), or,
  when the reconnect declared its rows (`resume`), with a state-diff resume from them;
- the ring and the number of streams are bounded; the reaper ends lingering streams.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .outbox import Outbox
from .service import LiveService
from .subscription import Subscription

__all__ = ["SseStream", "SseStreams"]


def new_name() -> str:
    return f"s{secrets.token_urlsafe(9)}"


class SseStream:
    def __init__(self, name: str, tenant: str, q: str, outbox: Outbox) -> None:
        self.name = name
        self.tenant = tenant
        self.q = q
        self.outbox = outbox
        self.sub: Subscription | None = None
        self.ring: deque[tuple[int, bytes]] = deque()
        self.ring_bytes = 0
        self.detached_at: float | None = None
        self.end_response: Callable[[], None] | None = None

    def remember(self, seq: int, event: bytes) -> None:
        """Keep a sent event for resume; oldest first out past the outbox's bounds."""
        ring = self.ring
        ring.append((seq, event))
        self.ring_bytes += len(event)
        while ring and (
            len(ring) > self.outbox.max_messages or self.ring_bytes > self.outbox.max_bytes
        ):
            self.ring_bytes -= len(ring.popleft()[1])

    def start_over(self) -> None:
        """A new stream name, seq from 1, and a reset with a fresh snapshot next."""
        assert self.sub is not None
        self.name = new_name()
        self.ring.clear()
        self.ring_bytes = 0
        self.sub.start_over(self.name)
        self.outbox.wake.set()  # its response's next take catches it up: now, not at a keep-alive

    def replay_after(self, seq: int) -> list[bytes] | None:
        """The events after `seq` when they can all be replayed, else None."""
        assert self.sub is not None
        if seq == self.sub.seq:
            return []
        if seq < self.sub.seq and self.ring and self.ring[0][0] <= seq + 1:
            return [event for s, event in self.ring if s > seq]
        return None


class SseStreams:
    def __init__(self, live: LiveService) -> None:
        self.live = live
        self.linger = live.config.sse_linger
        self.by_name: dict[str, SseStream] = {}

    def add(self, stream: SseStream) -> None:
        self.by_name[stream.name] = stream

    def find(self, last_event_id: str, tenant: str, q: str, resume: list[Any] | None = None
             ) -> tuple[SseStream, list[bytes]] | None:
        """The stream to resume and the events to replay first, or None (start afresh);
        a stream that cannot be continued starts over, from the `resume` rows if any."""
        name, _, seq_text = last_event_id.strip().rpartition(".")
        stream = self.by_name.get(name)
        if stream is None or stream.tenant != tenant or stream.q != q or stream.sub is None:
            return None
        if stream.sub.closed or not seq_text.isdigit() or len(seq_text) > 18:
            return None
        if stream.end_response is not None:
            stream.end_response()  # the same stream on another connection: that one ends
        replay = stream.replay_after(int(seq_text))
        if replay is None:
            del self.by_name[stream.name]
            if resume is not None:
                self.live.declare(stream.sub, resume)
            stream.start_over()
            self.by_name[stream.name] = stream
            replay = []
        return stream, replay

    def detached(self, stream: SseStream) -> None:
        stream.detached_at = time.monotonic()
        stream.end_response = None

    async def remove(self, stream: SseStream) -> None:
        if self.by_name.get(stream.name) is stream:
            del self.by_name[stream.name]
        if stream.sub is not None:
            await self.live.unsubscribe(stream.sub)

    def room(self) -> bool:
        """Whether another stream may be made (lingering ones count)."""
        return len(self.by_name) < self.live.config.max_connections

    def end_all(self) -> None:
        """Drain: every open response ends; lingering streams are dropped."""
        for stream in list(self.by_name.values()):
            if stream.end_response is not None:
                stream.end_response()
        self.by_name.clear()

    async def reap_once(self) -> None:
        """One turn of the reaper (a live service loop): a second's sleep, then end the
        streams that lingered past `sse_linger`."""
        await asyncio.sleep(1.0)
        now = time.monotonic()
        stale = [
            s for s in self.by_name.values()
            if s.detached_at is not None and now - s.detached_at > self.linger
        ]
        for stream in stale:
            await self.remove(stream)
