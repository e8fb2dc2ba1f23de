"""Request bodies: size checked before parsing, then strict JSON.

Invariant: no body larger than the limit is ever buffered or parsed. A `Content-Length`
over the limit is refused before anything is read; a body without one (chunked) is
counted while it streams in and refused as soon as it passes the limit.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from cluster.errors import InvalidRequest, TooLarge

__all__ = ["read_body", "read_json"]


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, at most `limit` bytes, or TooLarge."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
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


async def read_json(request: Request, limit: int) -> Any:
    """The body parsed as JSON (any JSON value), or InvalidRequest saying why not."""
    raw = await read_body(request, limit)
    if not raw.strip():
        raise InvalidRequest("the body is empty; send a JSON document")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"the body is not valid JSON: {e}") from e
