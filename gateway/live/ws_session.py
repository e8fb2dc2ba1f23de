"""What one WebSocket connection means: its principal, its subscriptions, its messages.

Transport-free (the endpoint in `ws` feeds it text and drains its outbox). Invariants:
- the tenant is the authenticated token's, never the client's; a refresh must name the
  same tenant, and a refresh that loses a scope ends the subscriptions that needed it;
- every client message is answered by exactly the protocol's effect or one error whose
  code is one of PROTOCOL.md section 3 and whose message says what to fix; an error
  changes nothing (a refused reanchor keeps the old window) and keeps the connection;
- a `sub` is unique among the connection's subscriptions, at most the configured number
  of them, and `subscribed` is queued before any of that subscription's live messages.
"""

from __future__ import annotations

import logging
import math

from cluster.errors import LiveQueryError, Unauthorized
from cluster.logfmt import emit

from ..auth import Principal
from ..errors import DuplicateSubscription, UnknownSubscription
from . import wire
from .outbox import Outbox
from .service import LiveService
from .subscription import Subscription

__all__ = ["WsSession", "ws_code"]

log = logging.getLogger("lq.gateway")

_WS_CODES = frozenset({
    "unauthorized", "forbidden", "invalid_message", "invalid_query", "unknown_subscription",
    "duplicate_subscription", "too_many_subscriptions", "rate_limited", "overloaded", "internal",
})


def ws_code(error: LiveQueryError) -> str:
    """The protocol's WebSocket error code of an error (Redis faults are `overloaded`)."""
    if error.code in _WS_CODES:
        return error.code
    if error.code == "unavailable":
        return "overloaded"
    if error.code == "invalid_request":
        return "invalid_message"
    return "internal"


class WsSession:
    __slots__ = ("expires_at", "live", "outbox", "overloaded", "principal", "subs")

    def __init__(self, live: LiveService, outbox: Outbox) -> None:
        self.live = live
        self.outbox = outbox
        self.principal: Principal | None = None
        self.expires_at = math.inf
        self.subs: dict[str, Subscription] = {}
        self.overloaded = False

    def send(self, data: bytes) -> None:
        if not self.outbox.push_control(data):
            self.overloaded = True

    def error(self, code: str, message: str, sub: str | None = None) -> None:
        self.send(wire.error(code, message, sub))

    def authenticate(self, token: str) -> bool:
        """Authenticate or refresh; False (and an error queued) when refused."""
        try:
            principal, expires_at = self.live.auth.verify_until(token)
        except Unauthorized as e:
            self.error("unauthorized", str(e))
            return False
        return self.admit(principal, expires_at)

    def admit(self, principal: Principal, expires_at: float) -> bool:
        """Take a verified caller (from a token or a ticket); False (and an error queued)
        when it is of another tenant than the connection's."""
        if self.principal is not None and principal.tenant != self.principal.tenant:
            self.error("forbidden", "a refreshed token must be for the same tenant")
            return False
        self.principal, self.expires_at = principal, expires_at
        self.send(wire.control({"type": "ready", "tenant": principal.tenant}))
        return True

    async def handle(self, text: str | bytes) -> None:
        """Act on one client message (rate limit and size are the endpoint's)."""
        try:
            msg = wire.parse(text)
        except wire.WireError as e:
            self.error(e.code, str(e), e.sub)
            return
        sub = getattr(msg, "sub", None)
        try:
            await self._dispatch(msg)
        except LiveQueryError as e:
            self.error(ws_code(e), str(e) or e.code, sub)
        except Exception as e:
            emit(log, logging.ERROR, msg="live message failed", error=repr(e))
            self.error("internal", "internal error", sub)

    async def _dispatch(self, msg: wire.ClientMessage) -> None:
        if isinstance(msg, wire.Ping):
            self.send(wire.control({"type": "pong", "t": msg.t} if msg.has_t else {"type": "pong"}))
        elif isinstance(msg, wire.Auth):
            if self.authenticate(msg.token):
                await self._recheck_scopes()
        elif self.principal is None:
            raise Unauthorized('authenticate first: send {"type": "auth", "token": "<jwt>"}')
        elif isinstance(msg, wire.Subscribe):
            await self._subscribe(self.principal, msg)
        elif isinstance(msg, wire.Unsubscribe):
            subscription = self._get(msg.sub)
            del self.subs[msg.sub]
            await self.live.unsubscribe(subscription)
            self.send(wire.control({"type": "unsubscribed", "sub": msg.sub}))
        else:
            await self._reanchor(msg)

    def _get(self, sub: str) -> Subscription:
        found = self.subs.get(sub)
        if found is None:
            raise UnknownSubscription(f"no subscription {sub!r} on this connection")
        return found

    async def _subscribe(self, who: Principal, msg: wire.Subscribe) -> None:
        if msg.sub in self.subs:
            raise DuplicateSubscription(
                f"sub {msg.sub!r} is already in use on this connection; pick another name"
            )
        self.live.check_room(len(self.subs))
        subscription = await self.live.open(who, msg.sub, msg.query, self.outbox,
                                            check_s=msg.check, resume=msg.resume,
                                            resume_pos=msg.resume_pos)
        self.subs[msg.sub] = subscription
        self.send(wire.control({"type": "subscribed", "sub": msg.sub}))
        self.live.announce(subscription)

    async def _reanchor(self, msg: wire.Reanchor) -> None:
        await self.live.reanchor(self._get(msg.sub), msg.after, msg.limit)

    async def _recheck_scopes(self) -> None:
        who = self.principal
        assert who is not None
        lost = [s for s in self.subs.values() if not who.can("read", s.query.entity)]
        for subscription in lost:
            del self.subs[subscription.sub]
            await self.live.unsubscribe(subscription)
            self.error("forbidden", "the refreshed token lacks the scope "
                       f"lq:read:{subscription.query.entity}; the subscription ended",
                       subscription.sub)

    async def end(self) -> None:
        """The connection is gone: end every subscription."""
        subs, self.subs = list(self.subs.values()), {}
        await self.live.unsubscribe_all(subs)
