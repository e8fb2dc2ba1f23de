"""What the HTTP live transports (SSE, long polling) read from a request.

Invariants: the caller comes from the token only (`Authorization: Bearer`, else the
`token` query parameter, which EventSource and plain links need), verified with its
expiry; the query comes from `q` as strict JSON, and every refusal is an `InvalidQuery`
naming the part to fix. Nothing here touches Redis or any subscription.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request

from cluster import strict_json
from cluster.errors import InvalidQuery, Unauthorized

from ..auth import Authenticator, Principal, bearer_token

__all__ = ["caller", "query_param"]


def caller(auth: Authenticator, request: Request) -> tuple[Principal, float]:
    """The caller from `Authorization: Bearer` or `?token=`, and the token's expiry."""
    headers = request.headers
    token = bearer_token(headers) if "authorization" in headers else request.query_params.get(
        "token"
    )
    if not token:
        raise Unauthorized("no token: send Authorization: Bearer <jwt> or ?token=<jwt>")
    return auth.verify_until(token)


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
