"""Who is calling a live transport: one rule for WebSocket, SSE and long polling.

Order (docs/protocol.md sections 4-6, 8a): a `ticket` query parameter, else the
`Authorization: Bearer` header, else the `token` query parameter (kept for old clients).
Invariants: the tenant comes from a verified token or a redeemed ticket only; a ticket
presented together with a token must be of the token's tenant, or both are refused; a
ticket is consumed even when the request then fails, since it is single use.
"""

from __future__ import annotations

from collections.abc import Mapping

from cluster.errors import Unauthorized

from .auth import Authenticator, Principal, bearer_token
from .tickets import TicketDesk

__all__ = ["credentials"]


async def credentials(
    auth: Authenticator, desk: TicketDesk, headers: Mapping[str, str],
    params: Mapping[str, str],
) -> tuple[Principal, float] | None:
    """(principal, valid until) of what the request carries; None when it carries
    nothing; Unauthorized when what it carries is refused."""
    token = bearer_token(headers) if "authorization" in headers else params.get("token")
    ticket = params.get("ticket")
    if ticket is None:
        return None if token is None else auth.verify_until(token)
    who, until = await desk.redeem(ticket)
    if token is not None and auth.verify(token).tenant != who.tenant:
        raise Unauthorized("the ticket and the token are of different tenants")
    return who, until
