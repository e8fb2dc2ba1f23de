"""What the HTTP live transports (SSE, long polling) read from a request.

Invariants: the caller comes from a ticket or a token only (`gateway.credentials`: a
`ticket`, else `Authorization: Bearer`, else `token`), with its expiry; the query comes
from `q` as strict JSON, and every refusal is an `InvalidQuery` naming the part to fix;
a state-diff resume's declared rows come from `resume` as a strict JSON array, or the
request is refused with `InvalidRequest` (its entries are judged later, against the
query, by `resume.declared`: a wrong entry is a `resume_miss`, never an error).
Only a ticket touches Redis (it is consumed); nothing here touches a subscription.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from cluster import strict_json
from cluster.errors import InvalidQuery, InvalidRequest, Unauthorized

from ..auth import Authenticator, Principal
from ..credentials import credentials
from ..params import check_query_params
from ..tickets import TicketDesk

__all__ = ["caller", "check_live_params", "query_param", "resume_param"]


async def caller(
    auth: Authenticator, desk: TicketDesk, request: Request
) -> tuple[Principal, float]:
    """The caller and when its credentials expire; Unauthorized without any."""
    found = await credentials(auth, desk, request.headers, request.query_params)
    if found is None:
        raise Unauthorized("no credentials: send Authorization: Bearer <jwt>, or ?ticket= "
                           "(POST /v1/tickets)")
    return found


def check_live_params(request: Request, allowed: frozenset[str]) -> None:
    """Refuse unknown or repeated parameters, ignoring those whose name starts with `_`
    (cache busters such as `&_=123`)."""
    items = [(k, v) for k, v in request.query_params.multi_items() if not k.startswith("_")]
    check_query_params(items, allowed)


def query_param(request: Request) -> tuple[str, object]:
    """The query's text (`q`, as sent) and its parsed JSON."""
    q = request.query_params.get("q")
    if q is None:
        raise InvalidQuery("q", "send the query as ?q=<URL-encoded JSON>")
    try:
        return q, strict_json.loads(q)
    except strict_json.Refused as e:
        raise InvalidQuery(e.part() or "q", e.problem) from None
    except orjson.JSONDecodeError as e:
        raise InvalidQuery("q", f"the query is not valid JSON: {e}") from None


def resume_param(request: Request) -> list[Any] | None:
    """The rows declared by `resume` (PROTOCOL.md sections 5 and 6: the URL-encoded JSON
    array of a WebSocket subscribe's `resume.rows`), None when absent."""
    raw = request.query_params.get("resume")
    if raw is None:
        return None
    try:
        rows = strict_json.loads(raw)
    except strict_json.Refused as e:
        raise InvalidRequest(e.message("resume")) from None
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"resume is not valid JSON: {e}") from None
    if not isinstance(rows, list):
        raise InvalidRequest("resume is a JSON array of [id, version] pairs, in window order")
    return rows
