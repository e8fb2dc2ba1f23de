"""`POST /v1/entities/{entity}/query`: one page of a query, with cursors.

Invariant: the entity comes from the path and the tenant from the token; the body is a
query without `entity` and `mode` (PROTOCOL.md section 7), validated in full before Redis
is touched. Expired rows are never returned (the store hides them by Redis's clock).
The owner shard is asked first (`Context.ask_owner`: the answer from its memory, the
same page as the scan, see `gateway.live.asks`); without its answer, the collection is
scanned in Redis. Both pages come from `cluster.query.page_of` and are sent as it encodes
them.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from cluster.partition import partition_of
from cluster.query import parse_query

from ..context import Context
from ..params import check_query_params
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
        ask = ctx.ask_owner
        if ask is not None:
            answer = await ask(partition_of(who.tenant, entity), who.tenant, parsed)
            if answer is not None:
                return Response(answer, media_type="application/json")
        page = await ctx.call(
            lambda: ctx.storage().query(who.tenant, parsed, signer), read=True
        )
        return Response(page.encode(), media_type="application/json")

    return [RawRoute(QUERY_PATH, query, methods=["POST"])]
