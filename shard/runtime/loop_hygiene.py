"""The hygiene loop: forget gateways that are gone, evict idle collections.

`gone` reports a gateway gone past the grace period once, to whichever shard looks
first, which removes its registrations and forgets it; every other shard serving some of
its subscriptions notices on its own, by the gateway's absence from the live set for
the grace period, or it would keep those views (and publish to a dead stream) forever.
Collections without subscriptions for `collection_idle_s` are evicted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from storage import Membership, Registry

from .engine import Engine
from .events import Events

__all__ = ["HygieneLoop"]


class HygieneLoop:
    def __init__(
        self,
        *,
        gateway_grace_ms: int,
        collection_idle_s: float,
        membership: Membership,
        registry: Registry,
        engine: Engine,
        events: Events,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._grace_ms = gateway_grace_ms
        self._idle_s = collection_idle_s
        self._membership = membership
        self._registry = registry
        self._engine = engine
        self._events = events
        self._clock = clock
        self._not_live: dict[str, float] = {}  # served here, not live since (clock)

    async def once(self) -> None:
        await asyncio.sleep(max(1.0, self._grace_ms / 10_000))
        gone, _ = await self._membership.gone("gateway", self._grace_ms)
        if gone:
            dropped = self._engine.drop_gateways(set(gone))
            for gateway in gone:
                removed = await self._registry.drop_gateway(gateway)
                await self._membership.leave("gateway", gateway)
                self._events.info("gateway_gone", gateway=gateway, registrations=removed,
                                  served=dropped)
        await self._drop_not_live()
        self._engine.evict_idle(self._idle_s)

    async def _drop_not_live(self) -> None:
        """Stop serving gateways that have not been live for the grace period."""
        served = self._engine.gateways()
        if not served:
            self._not_live.clear()
            return
        live, _ = await self._membership.live("gateway")
        now = self._clock()
        dead = served - set(live)
        self._not_live = {g: self._not_live.get(g, now) for g in dead}
        grace_s = self._grace_ms / 1000
        expired = {g for g, since in self._not_live.items() if now - since >= grace_s}
        if expired:
            dropped = self._engine.drop_gateways(expired)
            self._events.info("gateways_not_live", gateways=sorted(expired), served=dropped)
