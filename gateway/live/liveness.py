"""The gateway's liveness and its view of the live shards (DESIGN.md sections 2, 6).

Invariants: every heartbeat period the gateway refreshes its TTL key (value: its
counters, which `/v1/cluster` and `lq status` read) and the EXPIRE of its delta stream,
and re-reads the live shards by Redis's clock (the owner of a partition is computed from
that set with the shards' own function, never from leases). Join and leave notices of
shards are tailed with a blocking read on their own client, so a change of owners is
acted on at once rather than at the next tick. Once `stop` is called (drain) no beat
is sent, so leaving membership is final. Both loops' turns (`heartbeat_once`,
`notices_once`) run under `cluster.loops.guarded`: faults are logged and retried, and
the gateway stays up (and ready) while Redis or every shard is away.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from storage import Deltas, Membership

from .demux import Demux
from .hub import Hub

__all__ = ["Liveness"]


class Liveness:
    def __init__(
        self,
        hub: Hub,
        membership: Membership,
        notices: Membership,
        deltas: Deltas,
        demux: Demux,
        counters: Callable[[], dict[str, Any]],
    ) -> None:
        self.hub = hub
        self.membership = membership
        self.notices = notices
        self.deltas = deltas
        self.demux = demux
        self.counters = counters
        g = hub.ctx.config.gateway
        self.period = g.heartbeat_ms / 1000
        self.ttl_ms = g.member_ttl_ms
        self.delta_ttl_s = g.delta_ttl_s
        self._wake = asyncio.Event()
        self._after: str | None = None  # the last notice read
        self._stopped = False

    def stop(self) -> None:
        """Drain: no more beats (it leaves membership; a beat now would join again)."""
        self._stopped = True

    async def beat(self) -> None:
        """One heartbeat: liveness, delta stream expiry, live shards."""
        if self._stopped:
            return
        hub = self.hub
        value = orjson.dumps(self.counters())
        await self.membership.heartbeat("gateway", hub.gateway_id, self.ttl_ms, value)
        if self.demux.position is not None:
            await self.deltas.refresh(hub.gateway_id, self.delta_ttl_s)
        live, _ = await self.membership.live("shard")
        if live != hub.live:
            hub.live_changed(live)

    async def heartbeat_once(self) -> None:
        """Beat, then wait a period (or less, when a notice wakes it)."""
        self._wake.clear()
        await self.beat()
        try:
            await asyncio.wait_for(self._wake.wait(), self.period)
        except TimeoutError:
            pass

    async def notices_once(self) -> None:
        """Read shard join/leave notices (blocking up to 1 s); any wakes the heartbeat."""
        if self._after is None:
            self._after = await self.notices.notices_tail_id()
        found, self._after = await self.notices.notices(self._after, block_ms=1000)
        if any(n.kind == "shard" for n in found):
            self._wake.set()

    async def leave(self) -> None:
        self.stop()
        await self.membership.leave("gateway", self.hub.gateway_id)
