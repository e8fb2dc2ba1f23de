"""`POST /v1/entities/{entity}/query`: one page of a query, with cursors.

Invariant: the entity comes from the path and the tenant from the token; the body is a
query without `entity` and `mode` (PROTOCOL.md section 7), validated in full before Redis
is touched. Expired rows are never returned (the store hides them by Redis's clock).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from cluster.query import parse_query

from ..context import Context
from ..params import check_query_params
from ..responses import json_response
from ..routing import RawRoute
from .body import read_query
from .rows import names

__all__ = ["QUERY_PATH", "query_routes"]

QUERY_PATH = "/v1/entities/{entity}/query"


def query_routes(ctx: Context) -> list[BaseRoute]:
    async def query(request: Request) -> Response:
        who = ctx.principal(request)
        entity, _ = names(request)
        who.require("read", entity)
        check_query_params(request.query_params.multi_items(), frozenset())
        body = await read_query(request, ctx.config.gateway.max_body_bytes)
        signer = await ctx.signer()
        parsed = parse_query(
            body, signer=signer, limits=ctx.config.query, entity=entity, allow_mode=False
        )
        page = await ctx.call(
            lambda: ctx.storage().query(who.tenant, parsed, signer), read=True
        )
        rows = [
            {"id": r.id, "version": r.version, "row": r.values, "cursor": r.cursor}
            for r in page.rows
        ]
        return json_response({"rows": rows, "next": page.next})

    return [RawRoute(QUERY_PATH, query, methods=["POST"])]
