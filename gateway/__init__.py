"""The ASGI app: HTTP data API, live transports, auth; and the Python client."""

from .app import create_app
from .auth import Authenticator, Principal
from .breaker import BreakerState, CircuitBreaker
from .context import GatewayConfig
from .openapi import spec

__all__ = [
    "Authenticator",
    "BreakerState",
    "CircuitBreaker",
    "GatewayConfig",
    "Principal",
    "create_app",
    "spec",
]
