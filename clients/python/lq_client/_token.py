"""Where the client's token comes from: a string, or a callback (plain or async).

Standard library only. A callback is asked at every connect, before every data call,
before the current token expires on a live connection, and once more after the
server refuses a token; it should cache its token and return a new one only when the
old one is near its end or was refused. The token is read, never verified (the server
verifies).
"""

from __future__ import annotations

import base64
import inspect
import json
from collections.abc import Awaitable, Callable

__all__ = ["TokenSource", "fetch_token", "token_expiry"]

TokenSource = str | Callable[[], str] | Callable[[], Awaitable[str]]


async def fetch_token(source: TokenSource) -> str:
    """The token now: the string itself, or what the callback returns."""
    if isinstance(source, str):
        return source
    value = source()
    token = await value if inspect.isawaitable(value) else value
    if not isinstance(token, str):
        raise TypeError(f"the token callback returned {type(token).__name__}, not str")
    return token


def token_expiry(token: str) -> float | None:
    """The `exp` of a JWT (seconds since the epoch), or None when it has none."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp")
        return float(exp) if isinstance(exp, int | float) else None
    except (IndexError, ValueError, AttributeError):
        return None
