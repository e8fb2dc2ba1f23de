"""`POST /v1/batch`: many writes in one request, each op its own result, in order.

Invariant: an op that is malformed, lacks its scope or fails its precondition fails
alone, with the status and error object it would get as a single request; the others
still run (a batch is not atomic across ops). Each op is still one storage script, so no
op is ever half-written. A Redis fault fails the whole request with 503; ops before the
fault may have been applied, each completely.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from cluster.errors import InvalidRequest, LiveQueryError, NotFound, TooLarge, VersionConflict
from cluster.query import check_entity
from storage import WriteOp, check_id

from ..auth import Principal
from ..context import Context
from ..errors import error_body, status_of
from ..params import check_query_params, parse_ttl, ttl_ms
from ..responses import json_response
from ..routing import RawRoute
from .body import read_json

__all__ = ["BATCH_PATH", "batch_routes"]

BATCH_PATH = "/v1/batch"
_OPS = ("put", "patch", "delete")
_FIELDS = frozenset({"op", "entity", "id", "row", "ttl", "if_match"})


def _op(raw: object, who: Principal, max_ttl: float) -> WriteOp:
    """One validated op (scope included), or the error that op answers with."""
    if not isinstance(raw, dict):
        raise InvalidRequest("an op is an object such as {\"op\": \"put\", ...}")
    unknown = sorted(str(k) for k in raw if k not in _FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown op field {unknown[0]!r}")
    kind = raw.get("op")
    if kind not in _OPS:
        raise InvalidRequest("op is \"put\", \"patch\" or \"delete\"")
    entity = raw.get("entity")
    try:
        check_entity(entity)
    except LiveQueryError as e:
        raise InvalidRequest(f"bad entity name: {e}") from e
    assert isinstance(entity, str)
    row_id = check_id(raw.get("id"))
    who.require("write", entity)
    if kind == "delete" and ("row" in raw or "ttl" in raw):
        raise InvalidRequest("a delete takes no row and no ttl")
    if_match = raw.get("if_match")
    if if_match is not None and (type(if_match) is not int or if_match < 0):
        raise InvalidRequest("if_match is a row version (a non-negative integer)")
    ttl = ttl_ms(parse_ttl(raw.get("ttl"), max_ttl, "ttl"))
    return WriteOp(kind, entity, row_id, raw.get("row"), ttl, if_match)


def _result(outcome: Any) -> dict[str, Any]:
    if isinstance(outcome, LiveQueryError):
        return {"status": status_of(outcome), "error": error_body(outcome)}
    return {"status": 200, "id": outcome.id, "version": outcome.version}


def batch_routes(ctx: Context) -> list[BaseRoute]:
    g = ctx.config.gateway

    async def batch(request: Request) -> Response:
        who = ctx.principal(request)
        check_query_params(request.query_params.multi_items(), frozenset())
        body = await read_json(request, g.max_body_bytes, root="")
        if not isinstance(body, dict) or not isinstance(body.get("ops"), list):
            raise InvalidRequest("the body is {\"ops\": [...]}")
        if set(body) != {"ops"}:
            raise InvalidRequest("the body holds only \"ops\"")
        raw_ops: list[Any] = body["ops"]
        if len(raw_ops) > g.max_batch_ops:
            raise TooLarge(f"a batch holds at most {g.max_batch_ops} ops")
        outcomes: list[Any] = [None] * len(raw_ops)
        valid: list[tuple[int, WriteOp]] = []
        for i, raw in enumerate(raw_ops):
            try:
                valid.append((i, _op(raw, who, g.max_ttl_seconds)))
            except LiveQueryError as e:
                outcomes[i] = e
        ops = [op for _, op in valid]
        if ops:
            done = await ctx.call(lambda: ctx.storage().batch(who.tenant, ops))
            for (i, op), outcome in zip(valid, done, strict=True):
                gone = isinstance(outcome, NotFound) and op.if_match is not None
                outcomes[i] = VersionConflict(None) if gone else outcome
        return json_response({"results": [_result(o) for o in outcomes]})

    return [RawRoute(BATCH_PATH, batch, methods=["POST"])]
