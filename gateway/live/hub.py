"""The gateway's subscription table, its routing to shards and its re-send schedule
(DESIGN.md sections 5b, 6).

Invariants:
- registry ids are `<gateway-id>.<counter>`; the gateway id is unique per process start,
  so no id is ever reused and a late frame of an ended subscription finds nothing;
- subscribe writes the registration (its `lq:gwsubs` entry first, in `Registry.put`)
  before the control message, and a subscription is in the table before its
  registration exists, so no `reset` can arrive for an unknown id;
- the hub alone writes the table and the schedule: a subscription that expects a
  `reset` has a deadline here (`_Request`); the request is answered once the
  subscription has accepted a reset since (its own `resets` count); when the deadline
  passes first, the owner is recomputed from the live shards and the request is sent
  again (`subscribe` to a new owner, else `reanchor` or `resync`; all idempotent by
  registry id): at once when the owner changed, or the send failed, else when
  `patience.Patience` says so (the owner has answered nothing for a timeout, or the
  request has waited its longest), so a shard working through a queue of requests is not
  asked for each of them twice. With no live shard the registration stays and the
  request waits: a shard that claims the partition serves it from the registry anyway.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable

from cluster.logfmt import emit
from cluster.messages import Registration
from cluster.partition import owner
from cluster.query import Query
from storage import Control, Registry

from ..context import Context
from .asks import Asks
from .delivery import Phase, Source, gap_targets
from .patience import Patience
from .stats import LiveStats
from .subscription import Subscription

__all__ = ["Hub"]

log = logging.getLogger("lq.gateway")
_TICK = 0.1  # seconds between scans of the re-send deadlines
_CONCURRENCY = 64  # control messages in flight at once


class _Request:
    """A reset this gateway waits for: re-send at `at` unless `sub` accepted one since.
    `sent_at` is when it was (or is being) sent; None when it is still to be sent."""

    __slots__ = ("at", "resets", "sent_at", "sub")

    def __init__(self, sub: Subscription, at: float, sent_at: float | None) -> None:
        self.sub = sub
        self.at = at
        self.sent_at = sent_at
        self.resets = sub.resets

    @property
    def answered(self) -> bool:
        return self.sub.resets > self.resets


class Hub:
    def __init__(self, ctx: Context, stats: LiveStats) -> None:
        self.ctx = ctx
        self.stats = stats
        self.gateway_id = f"gw-{secrets.token_hex(6)}"
        self.timeout = ctx.config.gateway.subscribe_timeout
        self.subs: dict[str, Subscription] = {}
        self.live: list[str] = []
        self._counter = 0
        self._due: dict[str, _Request] = {}
        self._sent_to: dict[str, str] = {}  # rid -> the shard its last request went to
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(_CONCURRENCY)
        self._patience = Patience(self.timeout)
        self.asks = Asks(ctx, self.gateway_id, self.owner_of)
        ctx.ask_owner = self.asks.ask  # the one-shot query route asks through it

    # -- redis helpers

    def _registry(self) -> Registry:
        return self.ctx.storage().registry

    def _control(self) -> Control:
        return self.ctx.storage().control

    async def _call(self, fn: Callable[[], Awaitable[object]]) -> None:
        """One registry or control operation under the breaker. They are idempotent
        (the same registration, a control message handled by registry id), so they are
        retried like reads; at most `_CONCURRENCY` are in flight, so a burst of
        subscribes queues here instead of opening hundreds of Redis connections."""
        async with self._slots:
            await self.ctx.call(fn, read=True)

    # -- the table

    def next_rid(self) -> str:
        self._counter += 1
        return f"{self.gateway_id}.{self._counter}"

    def owner_of(self, p: int) -> str | None:
        return owner(p, self.live)

    def expect(self, sub: Subscription, after: float | None = None) -> None:
        """`sub` waits for a reset; re-send when none came by then (default: timeout,
        for a request being sent now; `after` for one to send then)."""
        now = time.monotonic()
        at = now + (self.timeout if after is None else after)
        self._due[sub.rid] = _Request(sub, at, now if after is None else None)
        if after == 0:
            self._wake.set()

    async def subscribe(self, sub: Subscription, query: Query) -> None:
        """Register `sub` and ask its owner for a snapshot; raises StorageUnavailable
        (after removing it again) when Redis refuses the registration."""
        self.subs[sub.rid] = sub
        reg = self.registration(sub, query)
        try:
            await self._call(lambda: self._registry().put(sub.p, reg))
        except BaseException:
            self.subs.pop(sub.rid, None)
            sub.close()
            raise
        self.stats.subscribed()
        self.expect(sub)
        await self._send_or_later(sub, "subscribe")

    def registration(self, sub: Subscription, query: Query) -> Registration:
        return Registration(sub.rid, sub.tenant, self.gateway_id, query.to_json())

    async def reanchor(self, sub: Subscription, query: Query) -> None:
        """Rewrite the registration with the new window, then ask for a new snapshot."""
        reg = self.registration(sub, query)
        await self._call(lambda: self._registry().put(sub.p, reg))
        sub.reanchored(query)
        self.expect(sub)
        await self._send_or_later(sub, "reanchor")

    async def unsubscribe(self, sub: Subscription) -> None:
        """End `sub`: nothing more is delivered; its registration is removed (best effort:
        what a Redis fault leaves is removed at drain, or by the shards' hygiene)."""
        if sub.closed:
            return
        sub.close()
        self.subs.pop(sub.rid, None)
        self._due.pop(sub.rid, None)
        try:
            await self._call(lambda: self._registry().delete(sub.p, sub.rid, self.gateway_id))
            await self._send(sub, "unsubscribe")
        except Exception as e:
            emit(log, logging.WARNING, msg="unsubscribe failed", rid=sub.rid, error=repr(e))
        finally:
            self._sent_to.pop(sub.rid, None)

    async def unsubscribe_all(self, subs: Iterable[Subscription]) -> None:
        pending = list(subs)
        for i in range(0, len(pending), _CONCURRENCY):
            await asyncio.gather(*(self.unsubscribe(s) for s in pending[i:i + _CONCURRENCY]))

    # -- resets

    def request_resync(self, sub: Subscription) -> None:
        """Ask the owner for a fresh snapshot of `sub` soon (called from sync code)."""
        if not sub.closed:
            self.stats.resynced()
            self.expect(sub, 0)

    def resync_after_gap(self, source: Source) -> int:
        """A gap in that incarnation's frames: resync what the gap policy names
        (`gateway.live.delivery.gap_targets`); how many."""
        hit = gap_targets(source, self.subs.values(), self.owner_of)
        for sub in hit:
            sub.lost()
            self.request_resync(sub)
        return len(hit)

    def resync_all(self) -> None:
        """The delta stream was lost: every subscription starts over with a reset."""
        for sub in list(self.subs.values()):
            sub.lost()
            self.request_resync(sub)

    def live_changed(self, live: list[str]) -> None:
        """New live set: requests sent to a shard that is gone are re-sent at once."""
        self.live = live
        self._patience.live(live)
        alive = set(live)
        for rid, request in self._due.items():
            sent_to = self._sent_to.get(rid)
            if sent_to is not None and sent_to not in alive and not request.answered:
                request.at = 0.0
                self._wake.set()

    async def _send(self, sub: Subscription, op: str) -> None:
        target = self.owner_of(sub.p)
        if target is None:
            return  # no live shard: a shard that claims the partition serves the registry
        self._sent_to[sub.rid] = target
        pos = sub.resume_pos if op == "subscribe" else None  # a changes-mode resume's
        await self._call(
            lambda: self._control().send(target, op, sub.p, sub.rid, self.gateway_id, pos=pos)
        )

    async def _send_or_later(self, sub: Subscription, op: str) -> None:
        """Send now; a failure is logged and left to the re-send deadline."""
        try:
            await self._send(sub, op)
        except Exception as e:
            self._sent_to.pop(sub.rid, None)  # not sent: re-sent at its deadline
            emit(log, logging.WARNING, msg="control send failed", rid=sub.rid, op=op,
                 error=repr(e))

    async def _resend(self, sub: Subscription) -> None:
        if sub.closed:
            return
        target = self.owner_of(sub.p)
        if sub.phase is Phase.PENDING and target != self._sent_to.get(sub.rid):
            op = "subscribe"
        elif sub.phase is Phase.LIVE:
            op = "reanchor"  # a reanchor still waiting for its reset
        else:
            op = "resync"
        self.expect(sub)
        self.stats.resent()
        await self._send_or_later(sub, op)

    def _resend_now(self, rid: str, request: _Request, now: float) -> bool:
        """An overdue request goes now when it is still to be sent, its owner changed or
        its send failed, or `Patience` says its owner is not working through it."""
        sent_to = self._sent_to.get(rid)
        if request.sent_at is None or sent_to is None or sent_to != self.owner_of(
                request.sub.p):
            return True
        return self._patience.resend_now(sent_to, request.sent_at, now)

    async def resend_due(self) -> None:
        """One turn of the re-send loop: wait for a tick (or a wake-up), then re-send
        the requests whose reset is overdue. Run under `cluster.loops.guarded`."""
        try:
            await asyncio.wait_for(self._wake.wait(), _TICK)
        except TimeoutError:
            pass
        self._wake.clear()
        now = time.monotonic()
        due = []
        for rid, request in list(self._due.items()):
            if request.sub.closed or request.answered:
                del self._due[rid]
                if request.answered:
                    self._patience.answered(self._sent_to.get(rid), now)
            elif request.at <= now and self._resend_now(rid, request, now):
                due.append(request.sub)
        for i in range(0, len(due), _CONCURRENCY):
            await asyncio.gather(*(self._resend(s) for s in due[i:i + _CONCURRENCY]))
