"""Tickets for URLs (docs/protocol.md section 8a): issued for a verified token, redeemed
once by any gateway.

Invariants:
- a ticket grants exactly what its token granted: the same tenant and scopes, and never
  past the token's expiry (its Redis lifetime is the shorter of `ticket_ttl` and what
  is left of the token);
- redeeming consumes it (one Redis command, so two gateways cannot both accept it);
  every refusal is the same `Unauthorized`, which does not say whether the ticket was
  unknown, expired or used;
- both calls go through the gateway's Redis breaker like every other Redis call.
"""

from __future__ import annotations

import math
import time
from typing import Any

import orjson

from cluster.errors import Unauthorized
from storage import Tickets

from .auth import Principal
from .context import Context

__all__ = ["TicketDesk"]

_REFUSED = "the ticket is unknown, expired or already used: take a new one (POST /v1/tickets)"


class TicketDesk:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.ttl = min(300.0, max(1.0, ctx.config.gateway.ticket_ttl))

    def _tickets(self) -> Tickets:
        return self.ctx.storage().tickets

    async def issue(self, who: Principal, until: float) -> dict[str, Any]:
        """`{"ticket", "expires_in"}` for a caller whose token is valid until `until`."""
        left = min(self.ttl, until - time.time())
        if left <= 0:
            raise Unauthorized("the token has expired")
        grant = orjson.dumps({"tenant": who.tenant, "scopes": sorted(who.scopes),
                              "until": None if math.isinf(until) else until})
        ticket = await self.ctx.call(lambda: self._tickets().issue(grant, int(left * 1000)))
        return {"ticket": ticket, "expires_in": math.floor(left)}

    async def redeem(self, ticket: str) -> tuple[Principal, float]:
        """The principal and expiry a ticket carries; Unauthorized when refused."""
        raw = await self.ctx.call(lambda: self._tickets().redeem(ticket))
        if raw is None:
            raise Unauthorized(_REFUSED)
        grant = orjson.loads(raw)
        until = math.inf if grant["until"] is None else float(grant["until"])
        if until <= time.time():
            raise Unauthorized("the token this ticket was taken with has expired")
        return Principal(grant["tenant"], frozenset(grant["scopes"])), until
