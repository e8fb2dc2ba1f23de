"""`/v1/entities/{entity}/rows/{id}`: PUT, PATCH (RFC 7396), DELETE and GET of one row.

Invariant: the tenant comes from the token only, and a row of another tenant is
indistinguishable from a row that never existed (404, same message). Every write is
one storage script (or a read plus one conditional script for PATCH), so a refused or
failed write changes nothing. Names, scopes, parameters and the body are checked before
Redis is touched.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from cluster.errors import InvalidRequest, InvalidRow, NotFound, VersionConflict
from cluster.query import check_entity
from storage import WriteResult, check_id

from ..context import Context
from ..params import (
    Preconditions,
    check_query_params,
    if_none_match_version,
    parse_ttl,
    preconditions,
    ttl_ms,
)
from ..responses import json_response
from ..routing import RawRoute, path_param
from .body import read_json

__all__ = ["ROW_PATH", "names", "row_routes"]

ROW_PATH = "/v1/entities/{entity}/rows/{id}"
_TTL = frozenset({"ttl"})
_NONE: frozenset[str] = frozenset()


def names(request: Request) -> tuple[str, str]:
    """The (entity, id) of the path, validated (`invalid_request` when bad)."""
    entity = path_param(request.scope, "entity")
    try:
        check_entity(entity)
    except Exception as e:
        raise InvalidRequest(f"bad entity name in the path: {e}") from e
    row_id = check_id(path_param(request.scope, "id")) if "id" in request.path_params else ""
    return entity, row_id


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        kind = {list: "an array", str: "a string", bool: "a bool", type(None): "null"}.get(
            type(body), "a number"
        )
        raise InvalidRow(f"{what} is a JSON object, not {kind}")
    return body


def _written(result: WriteResult) -> Response:
    return json_response({"id": result.id, "version": result.version}, etag=result.version)


class _Rows:
    """The four row endpoints over one context."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.limits = ctx.config.gateway
        self.handlers = {
            "PUT": self.put, "PATCH": self.patch, "DELETE": self.delete,
            "GET": self.get, "HEAD": self.get,
        }

    async def dispatch(self, request: Request) -> Response:
        return await self.handlers[request.method](request)

    async def _expected(
        self, tenant: str, entity: str, row_id: str, pre: Preconditions
    ) -> int | None:
        """`If-Match: *` becomes the current version (412 with null when absent)."""
        if not pre.must_exist:
            return pre.if_match
        current = await self.ctx.call(
            lambda: self.ctx.rows().get(tenant, entity, row_id), read=True
        )
        if current is None:
            raise VersionConflict(None)
        return current.version

    def _ttl(self, request: Request) -> int | None:
        if not request.scope["query_string"]:  # no parameters: nothing to check or parse
            return None
        check_query_params(request.query_params.multi_items(), _TTL)
        return ttl_ms(parse_ttl(request.query_params.get("ttl"), self.limits.max_ttl_seconds))

    async def put(self, request: Request) -> Response:
        ctx = self.ctx
        who = ctx.principal(request)
        entity, row_id = names(request)
        who.require("write", entity)
        ttl = self._ttl(request)
        pre = preconditions(request.headers, allow_create=True)
        values = _object(await read_json(request, self.limits.max_body_bytes, "row"), "a row")
        if_match = await self._expected(who.tenant, entity, row_id, pre)
        result = await ctx.call(
            lambda: ctx.rows().put(
                who.tenant, entity, row_id, values,
                if_match=if_match, create_only=pre.create_only, ttl_ms=ttl,
            )
        )
        return _written(result)

    async def patch(self, request: Request) -> Response:
        ctx = self.ctx
        who = ctx.principal(request)
        entity, row_id = names(request)
        who.require("write", entity)
        ttl = self._ttl(request)
        pre = preconditions(request.headers, allow_create=False)
        body = await read_json(request, self.limits.max_body_bytes, "patch")
        merge = _object(body, "a merge patch")
        if_match = await self._expected(who.tenant, entity, row_id, pre)
        result = await ctx.call(
            lambda: ctx.rows().patch(
                who.tenant, entity, row_id, merge, if_match=if_match, ttl_ms=ttl
            )
        )
        return _written(result)

    async def delete(self, request: Request) -> Response:
        ctx = self.ctx
        who = ctx.principal(request)
        entity, row_id = names(request)
        who.require("write", entity)
        check_query_params(request.query_params.multi_items(), _NONE)
        pre = preconditions(request.headers, allow_create=False)
        if_match = await self._expected(who.tenant, entity, row_id, pre)
        try:
            result = await ctx.call(
                lambda: ctx.rows().delete(who.tenant, entity, row_id, if_match=if_match)
            )
        except NotFound:
            if if_match is not None:
                raise VersionConflict(None) from None
            raise
        return _written(result)

    async def get(self, request: Request) -> Response:
        ctx = self.ctx
        who = ctx.principal(request)
        entity, row_id = names(request)
        who.require("read", entity)
        check_query_params(request.query_params.multi_items(), _NONE)
        seen = if_none_match_version(request.headers)
        row = await ctx.call(lambda: ctx.rows().get(who.tenant, entity, row_id), read=True)
        if row is None:
            raise NotFound(f"no row {row_id!r}")
        if seen is not None and seen == row.version:
            return Response(status_code=304, headers={"ETag": f'"{row.version}"'})
        return json_response(
            {"id": row.id, "version": row.version, "row": row.values}, etag=row.version
        )


def row_routes(ctx: Context) -> list[BaseRoute]:
    rows = _Rows(ctx)
    return [RawRoute(ROW_PATH, rows.dispatch, methods=["PUT", "PATCH", "DELETE", "GET"])]
