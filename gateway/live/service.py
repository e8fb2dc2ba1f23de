"""The live half of a gateway: wiring, lifecycle and drain of everything behind /v1/ws,
/v1/sse and /v1/poll, and the one face the transports talk to.

Invariants:
- every background task (delta reader, heartbeat, notices, re-sends, the transports'
  reapers) is a loop under `cluster.loops.guarded`, started in the lifespan's
  TaskGroup, and stopped with `cluster.loops.cancel_all` (so a cancellation lost in
  Python 3.11's `wait_for` cannot keep one running);
- Redis connections: the app's command client, plus exactly two clients kept for
  blocking reads (delta stream, membership notices), closed here;
- this service alone owns the open connections, the drain state and the counters
  (`LiveStats`, counted through its methods by the hub, the demux and the outboxes);
  transports ask it, never the hub;
- opening a subscription is one path for every transport: the query is validated and
  the scope checked before anything is registered, and the limits (per connection and
  per gateway) are checked before anything is written;
- the delivery canary (`canary`, unless `canary_interval` is 0) is one more loop with an
  internal subscription of the reserved tenant, uncounted, removed at drain like all;
- drain (SIGTERM) refuses new connections, closes WebSockets with 1001, ends SSE streams,
  ends poll handles, removes every registration of this gateway and leaves membership.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Protocol

from cluster import logpos
from cluster.errors import Forbidden, InvalidQuery, StorageUnavailable
from cluster.logfmt import emit
from cluster.loops import guarded
from cluster.partition import partition_of
from cluster.query import Mode, Query, parse_query

from ..auth import Authenticator, Principal
from ..context import Context
from ..errors import Overloaded, TooManySubscriptions
from ..tickets import TicketDesk
from .backlog import Backlog, totals
from .canary import CANARY_ENTITY, CANARY_TENANT, Canary
from .checks import Checks
from .demux import Demux
from .hub import Hub
from .liveness import Liveness
from .outbox import Outbox
from .resume import declared
from .stats import LiveStats
from .subscription import Subscription

__all__ = ["Closable", "LiveService"]

log = logging.getLogger("lq.gateway")
Loop = tuple[str, Callable[[], Awaitable[None]]]
"""(name for the logs, one turn of the loop)."""


class Closable(Protocol):
    """A live connection that drain can end (a WebSocket session, an SSE response), with
    what is queued for it (read by the `queued_bytes` and related gauges)."""

    @property
    def backlog(self) -> Backlog: ...

    def close(self, code: int, reason: str) -> None: ...


class LiveService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.config = ctx.config.gateway
        self.auth: Authenticator = ctx.auth
        self.tickets = TicketDesk(ctx)
        self.stats = LiveStats()
        self.hub = Hub(ctx, self.stats)
        self.checks = Checks(self.stats)
        self.on_drain: list[Callable[[], None]] = []  # the transports' end-everything hooks
        self.loops: list[Loop] = []  # the transports' own loops (reapers)
        self.demux: Demux | None = None
        self.canary: Canary | None = None
        self.liveness: Liveness | None = None
        self._connections: set[Closable] = set()
        self._draining = False
        self._drained = asyncio.Event()
        self._drain_requested = asyncio.Event()
        self._after_drain: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle

    async def start(self, group: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """Open the blocking-read clients and start every loop in `group` (returned, so
        the owner can stop them with `cluster.loops.cancel_all`)."""
        g, front = self.config, self.ctx.storage()
        reader, noticer = self.ctx.blocking(), self.ctx.blocking()  # closed by the front
        demux = self.demux = Demux(self.hub, self.stats, reader.deltas, g.delta_ttl_s,
                                   g.delta_block_ms)
        liveness = self.liveness = Liveness(
            self.hub, front.membership, noticer.membership, front.deltas, demux, self.counters,
        )
        try:
            await asyncio.wait_for(demux.create(), g.redis_timeout * 2)
            await asyncio.wait_for(liveness.beat(), g.redis_timeout * 2)
        except Exception as e:  # Redis away: the loops keep trying
            emit(log, logging.WARNING, msg="live start without Redis", error=repr(e))
        self._loop = asyncio.get_running_loop()
        period = liveness.period
        tasks = [
            group.create_task(self._drain_when_asked()),
            group.create_task(self._guard("delta read", demux.read_once)),
            group.create_task(self._guard("heartbeat", liveness.heartbeat_once,
                                          backoff_s=period, backoff_max_s=period)),
            group.create_task(self._guard("notice read", liveness.notices_once)),
            group.create_task(self._guard("resends", self.hub.resend_due)),
            group.create_task(self._guard("checks", self.checks.once)),
        ]
        tasks += [group.create_task(self._guard(name, body)) for name, body in self.loops]
        if g.canary_interval > 0:
            canary = self.canary = Canary(
                self.gateway_id, g.canary_interval, g.canary_timeout, self._open_canary,
                self._write_canary, lambda: len(self.hub.live), lambda: self._draining,
                self.ctx.metrics.canary_delay.observe,
            )
            self.ctx.metrics.canary_age.set_function(canary.age)
            tasks.append(group.create_task(self._guard(
                "canary", canary.once, backoff_s=0.5, backoff_max_s=g.canary_interval)))
        return tasks

    async def _open_canary(self, query: dict[str, Any], outbox: Outbox) -> Subscription:
        who = Principal(CANARY_TENANT, frozenset({f"lq:read:{CANARY_ENTITY}"}))
        self.announce(subscription := await self.open(who, "canary", query, outbox))
        return subscription

    async def _write_canary(self, row_id: str, values: dict[str, Any], ttl_ms: int) -> None:
        await self.ctx.call(lambda: self.ctx.rows().put(
            CANARY_TENANT, CANARY_ENTITY, row_id, values, ttl_ms=ttl_ms))

    def unready(self, live_shards: int) -> str | None:
        """Why `/readyz` fails beyond Redis (the canary's verdict), or None."""
        return None if self.canary is None else self.canary.unready(live_shards)

    def _canaries(self) -> int:  # the canary's subscription is no client's
        return int(self.canary is not None and self.canary.held(self.hub.subs))

    def _guard(self, name: str, body: Callable[[], Awaitable[None]],
               backoff_s: float = 0.05, backoff_max_s: float = 2.0
               ) -> Coroutine[Any, Any, None]:
        return guarded(name, body, on_error=_loop_failed, backoff_s=backoff_s,
                       backoff_max_s=backoff_max_s)

    @property
    def gateway_id(self) -> str:
        return self.hub.gateway_id

    def counters(self) -> dict[str, Any]:
        """What `/v1/cluster`, `lq status` and the `lq_live_*` metrics read."""
        return {
            "gateway": self.hub.gateway_id,
            "connections": len(self._connections),
            "subscriptions": len(self.hub.subs) - self._canaries(),
            **self.stats.as_dict(),
            **totals(conn.backlog for conn in self._connections),
            "draining": self._draining,
        }

    # -- connections and drain

    @property
    def draining(self) -> bool:
        return self._draining

    def full(self) -> bool:
        """Whether the gateway holds its maximum of connections."""
        return len(self._connections) >= self.config.max_connections

    def connected(self, conn: Closable) -> None:
        self._connections.add(conn)

    def disconnected(self, conn: Closable) -> None:
        self._connections.discard(conn)

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
            emit(log, logging.WARNING, msg="drain incomplete", error=repr(e))
        if self._after_drain is not None:
            self._after_drain()

    async def drain(self) -> None:
        """Stop accepting, end every connection, remove this gateway's registrations."""
        if self._draining:
            await self._drained.wait()
            return
        self._draining = True
        hub = self.hub
        if self.liveness is not None:
            self.liveness.stop()
        emit(log, logging.INFO, msg="gateway draining", gateway=hub.gateway_id,
             connections=len(self._connections), subscriptions=len(hub.subs))
        try:
            for conn in list(self._connections):
                conn.close(1001, "the gateway is shutting down; reconnect")
            for hook in self.on_drain:
                hook()
            await hub.unsubscribe_all(list(hub.subs.values()))
            await self.ctx.call(lambda: self.ctx.storage().registry.drop_gateway(
                hub.gateway_id))
            if self.liveness is not None:
                await self.liveness.leave()
        except Exception as e:
            emit(log, logging.WARNING, msg="drain failed", error=repr(e))
        finally:
            self._drained.set()

    # -- subscriptions

    def new_outbox(self) -> Outbox:
        """A connection's outbound queue with the configured bounds."""
        g = self.config
        return Outbox(g.outbox_max_messages, g.outbox_max_bytes, self.stats.overflowed)

    def check_room(self, connection_subs: int) -> None:
        """Refuse a new subscription past the per-connection or per-gateway limit."""
        g = self.config
        if self._draining:
            raise Overloaded("the gateway is shutting down; reconnect to another")
        if connection_subs >= g.max_subscriptions_per_connection:
            raise TooManySubscriptions(
                f"at most {g.max_subscriptions_per_connection} subscriptions per connection;"
                " unsubscribe one first"
            )
        if len(self.hub.subs) >= g.max_subscriptions:
            raise Overloaded("this gateway holds its maximum of subscriptions; try later")

    async def _parse(self, raw_query: Any, doing: str) -> Query:
        try:
            signer = await self.ctx.signer()
        except StorageUnavailable as e:
            raise Overloaded(f"cannot {doing} now: {e}") from e
        return parse_query(raw_query, signer=signer, limits=self.ctx.config.query)

    async def open(
        self, who: Principal, sub: str, raw_query: Any, outbox: Outbox,
        check_s: int | None = None, resume: list[Any] | None = None,
        resume_pos: str | None = None,
    ) -> Subscription:
        """Validate, check scope, register and request the snapshot of a subscription
        (with a `check` every `check_s` seconds, window mode only; answered by a
        state-diff resume from the declared `resume` rows when they can be right).

        Raises InvalidQuery, Forbidden, or Overloaded (Redis away, or at a limit)."""
        query = await self._parse(raw_query, "subscribe")
        if check_s is not None and query.mode is not Mode.WINDOW:
            raise InvalidQuery("check", "check applies to window-mode subscriptions only")
        if not who.can("read", query.entity):
            raise Forbidden(
                f"the token lacks the scope lq:read:{query.entity} (or lq:read:*)"
            )
        hub = self.hub
        subscription = Subscription(
            hub.next_rid(), sub, who.tenant, partition_of(who.tenant, query.entity), query,
            outbox, self.config.mirror_max_bytes, hub.request_resync,
            self.stats.reset, check_s,
        )
        if resume is not None:
            self.declare(subscription, resume)
        elif resume_pos is not None:
            self.declare_pos(subscription, resume_pos)
        try:
            await hub.subscribe(subscription, query)
        except StorageUnavailable as e:
            raise Overloaded(f"cannot subscribe now: {e}") from e
        return subscription

    def declare(self, subscription: Subscription, resume: list[Any]) -> None:
        """The client declared the rows it holds (`resume`, as sent, on any transport):
        the subscription's next snapshot becomes a state-diff resume, or a `resume_miss`
        when the declaration cannot be right (`resume.declared`) or in changes mode."""
        query = subscription.query
        window = query.mode is Mode.WINDOW
        subscription.resume_from(declared(resume, query.limit) if window else None,
                                 self.stats.resumed)

    def declare_pos(self, subscription: Subscription, pos: str) -> None:
        """The client named the changes-mode log position it holds (`resume.pos`): the
        shard answers by a log-position resume or a `resume_miss`; in window mode it is
        a `resume_miss` here. A pos longer than any the cluster makes is sent as "" (a
        miss too), so no client string of any size reaches the control stream."""
        if subscription.query.mode is not Mode.CHANGES:
            subscription.resume_from(None, self.stats.resumed)
            return
        subscription.resume_at(pos if len(pos) <= logpos.MAX_POS else "", self.stats.resumed)

    def announce(self, subscription: Subscription) -> None:
        """`subscribed` has been queued: from now on its messages go to the client."""
        subscription.announce()
        self.checks.add(subscription)

    async def reanchor(self, subscription: Subscription, after: Any, limit: Any) -> None:
        """Move a window-mode subscription's window (`after`, and `limit` unless None);
        a refused reanchor keeps the old window."""
        if subscription.query.mode is Mode.CHANGES:
            raise InvalidQuery("reanchor", "reanchor applies to window-mode subscriptions only")
        raw: dict[str, Any] = subscription.query.to_json()
        raw["after"] = after
        if limit is not None:
            raw["limit"] = limit
        query = await self._parse(raw, "reanchor")
        try:
            await self.hub.reanchor(subscription, query)
        except StorageUnavailable as e:
            raise Overloaded(f"cannot reanchor now: {e}") from e

    async def unsubscribe(self, subscription: Subscription) -> None:
        await self.hub.unsubscribe(subscription)

    async def unsubscribe_all(self, subscriptions: Iterable[Subscription]) -> None:
        await self.hub.unsubscribe_all(subscriptions)


def _loop_failed(name: str, error: Exception) -> None:
    """The `on_error` of the live loops: one warning line, then `guarded` backs off."""
    emit(log, logging.WARNING, msg=f"{name} failed", loop=name, error=repr(error))
