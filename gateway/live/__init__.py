"""The live side: WebSocket, SSE and long polling, and what serves them.

Layers, each importing only those below it:
- transports (`ws`, `ws_session`, `sse`, `sse_streams`, `poll`; `inputs` reads their
  HTTP requests) speak to clients and to the live service only;
- `service.LiveService` owns connections, drain, limits and the counters (`stats`);
  `hub` holds the subscription table and the re-send schedule; `demux` reads the delta
  stream; `liveness` heartbeats and tails membership;
- per subscription: `subscription` (numbering, behind), `outbox` (a bounded queue that
  only queues), `mirror` (a copy of the window);
- pure: `delivery` (fence, frame counters, gap policy), `wire` (the protocol's JSON),
  `stats` (the counters).

Names are imported lazily, so the pure delivery core can be imported (by the
benchmarks' simulated gateway) without the ASGI side.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .service import LiveService

__all__ = ["LiveService"]

_WHERE = {"LiveService": ".service"}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway.live' has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
