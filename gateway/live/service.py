"""The live half of a gateway: wiring, lifecycle and drain of everything behind /v1/ws,
/v1/sse and /v1/poll.

Invariants:
- every background task (delta reader, heartbeat, notices, re-sends, SSE and poll
  reapers) belongs to the lifespan's TaskGroup and is cancelled and awaited at shutdown;
- Redis connections: the app's command client, plus exactly two clients kept for
  blocking reads (delta stream, membership notices), closed here;
- opening a subscription is one path for every transport: the query is validated and
  the scope checked before anything is registered, and the limits (per connection and
  per gateway) are checked before anything is written;
- drain (SIGTERM) refuses new connections, closes WebSockets with 1001, ends SSE streams,
  ends poll handles, removes every registration of this gateway and leaves membership.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from cluster.errors import Forbidden, StorageUnavailable
from cluster.partition import partition_of
from cluster.query import parse_query
from storage import Deltas, Membership, Registry, connect

from ..access import log_line
from ..auth import Principal
from ..context import Context
from ..errors import Overloaded, TooManySubscriptions
from .demux import Demux
from .hub import Hub
from .liveness import Liveness
from .outbox import Outbox
from .subscription import Subscription

__all__ = ["Closable", "LiveService"]

log = logging.getLogger("lq.gateway")


class Closable(Protocol):
    """A live connection that drain can end (a WebSocket session, an SSE stream)."""

    def close(self, code: int, reason: str) -> None: ...


class LiveService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.config = ctx.config.gateway
        self.hub = Hub(ctx)
        self.connections: set[Closable] = set()
        self.on_drain: list[Callable[[], None]] = []
        self.demux: Demux | None = None
        self.liveness: Liveness | None = None
        self._clients: list[Any] = []
        self._drained = asyncio.Event()
        self._drain_started = False
        self._drain_requested = asyncio.Event()
        self._after_drain: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle

    async def start(self, group: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """Open the blocking-read clients and start every loop in `group` (returned, so
        the owner can cancel them)."""
        storage, g = self.ctx.config.storage, self.config
        timeout = max(g.delta_block_ms / 1000, 1.0) + g.redis_timeout + 1
        reader, noticer = (
            connect(storage.redis_url, max_connections=2, socket_timeout=timeout,
                    socket_connect_timeout=g.redis_timeout)
            for _ in range(2)
        )
        self._clients = [reader, noticer]
        self.demux = Demux(self.hub, Deltas(reader, storage.prefix), g.delta_ttl_s,
                           g.delta_block_ms)
        membership = Membership(self.ctx.redis(), storage.prefix)
        self.liveness = Liveness(self.hub, membership, Membership(noticer, storage.prefix),
                                 Deltas(self.ctx.redis(), storage.prefix), self.demux,
                                 self.counters)
        try:
            await asyncio.wait_for(self.demux.create(), g.redis_timeout * 2)
            await asyncio.wait_for(self.liveness.beat(), g.redis_timeout * 2)
        except Exception as e:  # Redis away: the loops keep trying
            log.warning(log_line(level="warning", msg="live start without Redis", error=repr(e)))
        self._loop = asyncio.get_running_loop()
        return [
            group.create_task(self._drain_when_asked()),
            group.create_task(self.demux.run()),
            group.create_task(self.liveness.run_heartbeat()),
            group.create_task(self.liveness.run_notices()),
            group.create_task(self.hub.run_resends()),
        ]

    async def close(self) -> None:
        """Close the blocking-read clients (after the loops using them have ended)."""
        for client in self._clients:
            await client.aclose()
        self._clients = []

    def counters(self) -> dict[str, Any]:
        hub = self.hub
        return {
            "gateway": hub.gateway_id,
            "connections": hub.connections,
            "subscriptions": len(hub.subs),
            **hub.stats,
            "draining": hub.draining,
        }

    # -- drain

    def request_drain(self, done: Callable[[], None]) -> None:
        """From a signal handler: drain, then call `done` (which lets the server exit)."""
        if self._loop is None:  # not started: nothing to drain
            done()
            return
        self._after_drain = done
        self._loop.call_soon_threadsafe(self._drain_requested.set)

    async def _drain_when_asked(self) -> None:
        await self._drain_requested.wait()
        try:
            await asyncio.wait_for(self.drain(), self.config.drain_timeout)
        except Exception as e:
            log.warning(log_line(level="warning", msg="drain incomplete", error=repr(e)))
        if self._after_drain is not None:
            self._after_drain()

    async def drain(self) -> None:
        """Stop accepting, end every connection, remove this gateway's registrations."""
        if self._drain_started:
            await self._drained.wait()
            return
        self._drain_started = True
        hub = self.hub
        hub.draining = True
        log.info(log_line(level="info", msg="gateway draining", gateway=hub.gateway_id,
                          connections=hub.connections, subscriptions=len(hub.subs)))
        try:
            for conn in list(self.connections):
                conn.close(1001, "the gateway is shutting down; reconnect")
            for hook in self.on_drain:
                hook()
            await hub.unsubscribe_all(list(hub.subs.values()))
            prefix = self.ctx.config.storage.prefix
            await self.ctx.call(lambda: Registry(self.ctx.redis(), prefix).drop_gateway(
                hub.gateway_id))
            if self.liveness is not None:
                await self.liveness.leave()
        except Exception as e:
            log.warning(log_line(level="warning", msg="drain failed", error=repr(e)))
        finally:
            self._drained.set()

    # -- opening subscriptions

    def new_outbox(self) -> Outbox:
        """A connection's outbound queue with the configured bounds."""
        stats = self.hub.stats

        def overflowed() -> None:
            stats["overflows"] += 1

        return Outbox(self.config.outbox_max_messages, self.config.outbox_max_bytes, overflowed)

    def check_room(self, connection_subs: int) -> None:
        """Refuse a new subscription past the per-connection or per-gateway limit."""
        g = self.config
        if self.hub.draining:
            raise Overloaded("the gateway is shutting down; reconnect to another")
        if connection_subs >= g.max_subscriptions_per_connection:
            raise TooManySubscriptions(
                f"at most {g.max_subscriptions_per_connection} subscriptions per connection;"
                " unsubscribe one first"
            )
        if len(self.hub.subs) >= g.max_subscriptions:
            raise Overloaded("this gateway holds its maximum of subscriptions; try later")

    async def open(
        self, who: Principal, sub: str, raw_query: Any, outbox: Outbox
    ) -> Subscription:
        """Validate, check scope, register and request the snapshot of a subscription.

        Raises InvalidQuery, Forbidden, or Overloaded (Redis away, or at a limit)."""
        try:
            signer = await self.ctx.signer()
        except StorageUnavailable as e:
            raise Overloaded(f"cannot subscribe now: {e}") from e
        query = parse_query(raw_query, signer=signer, limits=self.ctx.config.query)
        if not who.can("read", query.entity):
            raise Forbidden(
                f"the token lacks the scope lq:read:{query.entity} (or lq:read:*)"
            )
        hub = self.hub
        subscription = Subscription(
            hub.next_rid(), sub, who.tenant, partition_of(who.tenant, query.entity), query,
            outbox, self.config.mirror_max_bytes, hub.request_resync,
        )
        try:
            await hub.subscribe(subscription, query)
        except StorageUnavailable as e:
            raise Overloaded(f"cannot subscribe now: {e}") from e
        return subscription

    def announce(self, subscription: Subscription) -> None:
        """`subscribed` has been queued: from now on its messages go to the client."""
        outbox = subscription.outbox
        outbox.behind[subscription] = None
        outbox.catch_up()

