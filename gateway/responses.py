"""JSON answers, shared by the HTTP data API and the live transports' HTTP endpoints.

Invariant: every JSON body the gateway sends is encoded here with orjson, as
`application/json`; a row's version travels as a strong `ETag` (`"<version>"`).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

__all__ = ["json_response"]


def json_response(
    body: Any, status: int = 200, etag: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """`body` as JSON with `status`; `etag` (a row version) adds the `ETag` header."""
    if etag is not None:
        headers = {**(headers or {}), "ETag": f'"{etag}"'}
    return Response(orjson.dumps(body), status, headers, media_type="application/json")
