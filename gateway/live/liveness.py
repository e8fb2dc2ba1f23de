"""The gateway's liveness and its view of the live shards (DESIGN.md sections 2, 6).

Invariants: every heartbeat period the gateway refreshes its TTL key (value: its
counters, which `/v1/cluster` and `lq status` read) and the EXPIRE of its delta stream,
and re-reads the live shards by Redis's clock (the owner of a partition is computed from
that set with the shards' own function, never from leases). Join and leave notices of
shards are tailed with a blocking read on their own client, so a change of owners is
acted on at once rather than at the next tick. Faults are logged and retried; the
gateway stays up (and ready) while Redis or every shard is away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson

from storage import Deltas, Membership

from ..access import log_line
from .demux import Demux
from .hub import Hub

__all__ = ["Liveness"]

log = logging.getLogger("lq.gateway")


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

    async def beat(self) -> None:
        """One heartbeat: liveness, delta stream expiry, live shards."""
        hub = self.hub
        if hub.draining:
            return  # it leaves membership; a beat now would join again
        value = orjson.dumps(self.counters())
        await self.membership.heartbeat("gateway", hub.gateway_id, self.ttl_ms, value)
        if self.demux.position is not None:
            await self.deltas.refresh(hub.gateway_id, self.delta_ttl_s)
        live, _ = await self.membership.live("shard")
        if live != hub.live:
            hub.live_changed(live)

    async def run_heartbeat(self) -> None:
        while True:
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning(log_line(level="warning", msg="heartbeat failed", error=repr(e)))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.period)
            except TimeoutError:
                pass

    async def run_notices(self) -> None:
        """Tail shard join/leave notices; each batch triggers a heartbeat at once."""
        after: str | None = None
        delay = 0.05
        while True:
            try:
                if after is None:
                    after = await self.notices.notices_tail_id()
                found, after = await self.notices.notices(after, block_ms=1000)
                if any(n.kind == "shard" for n in found):
                    self._wake.set()
                delay = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning(log_line(level="warning", msg="notice read failed", error=repr(e)))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def leave(self) -> None:
        await self.membership.leave("gateway", self.hub.gateway_id)
