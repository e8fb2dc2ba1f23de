"""The ASGI app: HTTP data API, live transports, auth.

Names are imported lazily, so importing one module of the package does not start the
whole app. The Python client is its own distribution (`clients/python`, `lq_client`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .auth import Authenticator, Principal
    from .breaker import BreakerState, CircuitBreaker
    from .context import GatewayConfig
    from .http.openapi import spec

__all__ = [
    "Authenticator",
    "BreakerState",
    "CircuitBreaker",
    "GatewayConfig",
    "Principal",
    "create_app",
    "spec",
]

_WHERE = {
    "Authenticator": ".auth",
    "BreakerState": ".breaker",
    "CircuitBreaker": ".breaker",
    "GatewayConfig": ".context",
    "Principal": ".auth",
    "create_app": ".app",
    "spec": ".http.openapi",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway' has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
