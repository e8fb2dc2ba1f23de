"""Request bodies: size checked before parsing, then strict JSON.

Invariants: no body larger than the limit is ever buffered or parsed. A `Content-Length`
over the limit is refused before anything is read; a body without one (chunked) is
counted while it streams in and refused as soon as it passes the limit. A body is taken
exactly as written or refused (`cluster.strict_json`): an integer outside the signed
64-bit range or nesting past the limit is an error naming where, never a rounded value.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from cluster import strict_json
from cluster.errors import InvalidQuery, InvalidRequest, TooLarge

__all__ = ["read_body", "read_json", "read_query"]


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, at most `limit` bytes, or TooLarge."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise InvalidRequest("the Content-Length header is not a number")
        if int(declared) > limit:
            raise TooLarge(f"the body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _parse(request: Request, limit: int) -> Any:
    raw = await read_body(request, limit)
    if not raw.strip():
        raise InvalidRequest("the body is empty; send a JSON document")
    try:
        return strict_json.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"the body is not valid JSON: {e}") from e


async def read_json(request: Request, limit: int, root: str = "body") -> Any:
    """The body parsed as JSON (any JSON value), or InvalidRequest saying why not; a
    value refused by the strict rules is named under `root` (`row.a.b`, `ops[2].row`)."""
    try:
        return await _parse(request, limit)
    except strict_json.Refused as e:
        raise InvalidRequest(e.message(root)) from None


async def read_query(request: Request, limit: int) -> Any:
    """The body as a query: as `read_json`, but a refused value is an InvalidQuery naming
    its part of the query (`where.price.$gt`, `after`)."""
    try:
        return await _parse(request, limit)
    except strict_json.Refused as e:
        raise InvalidQuery(e.part() or "query", e.problem) from None
