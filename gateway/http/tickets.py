"""`POST /v1/tickets`: a single-use ticket for the caller's token (docs/protocol.md 8a).

Invariant: a ticket is issued only for a verified `Authorization: Bearer` token (never
for a ticket or a `?token=`, so a ticket cannot be stretched into a longer-lived one),
and never carries more than that token: same tenant, same scopes, not past its expiry.
The ticket is in the body only; no log line carries it (access logs have no bodies).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from ..auth import bearer_token
from ..context import Context
from ..params import check_query_params
from ..responses import json_response
from ..routing import RawRoute
from ..tickets import TicketDesk

__all__ = ["TICKETS_PATH", "ticket_routes"]

TICKETS_PATH = "/v1/tickets"


def ticket_routes(ctx: Context, desk: TicketDesk) -> list[BaseRoute]:
    async def issue(request: Request) -> Response:
        who, until = ctx.auth.verify_until(bearer_token(request.headers))
        check_query_params(request.query_params.multi_items(), frozenset())
        return json_response(await desk.issue(who, until), headers={"Cache-Control": "no-store"})

    return [RawRoute(TICKETS_PATH, issue, methods=["POST"])]
