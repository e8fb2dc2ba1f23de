"""The Python client of lq: live views of queries, and the HTTP data API.

    from lq_client import LiveClient

    async with LiveClient("http://127.0.0.1:8080", token=TOKEN) as lq:
        view = await lq.subscribe({"entity": "tasks", "sort": ["-priority"], "limit": 10})

Names are imported lazily, so the pure modules (`lq_client.view`, the protocol applier;
`lq_client.errors`; `lq_client.backoff`) import with the standard library alone, where
`websockets`, `httpx` and `orjson` are not installed. The client imports nothing of the
server. See README.md beside this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._link import LinkState
    from .backoff import Backoff
    from .client import LiveClient
    from .errors import (
        Forbidden,
        InvalidQuery,
        InvalidRequest,
        LimitExceeded,
        LiveError,
        NotFound,
        PreconditionFailed,
        RateLimited,
        Unauthorized,
        Unavailable,
    )
    from .live_view import LiveView
    from .view import ProtocolViolation, Row, ViewState

__all__ = [
    "Backoff",
    "Forbidden",
    "InvalidQuery",
    "InvalidRequest",
    "LimitExceeded",
    "LinkState",
    "LiveClient",
    "LiveError",
    "LiveView",
    "NotFound",
    "PreconditionFailed",
    "ProtocolViolation",
    "RateLimited",
    "Row",
    "Unauthorized",
    "Unavailable",
    "ViewState",
]

_WHERE = {
    "Backoff": ".backoff",
    "LinkState": "._link",
    "LiveClient": ".client",
    "LiveView": ".live_view",
    "ProtocolViolation": ".view",
    "Row": ".view",
    "ViewState": ".view",
    **{name: ".errors" for name in (
        "Forbidden", "InvalidQuery", "InvalidRequest", "LimitExceeded", "LiveError",
        "NotFound", "PreconditionFailed", "RateLimited", "Unauthorized", "Unavailable")},
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'lq_client' has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
