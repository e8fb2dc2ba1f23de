"""Which Redis errors mean "Redis is unavailable", so callers above storage never import redis.

Invariant: a fault classified here is one where the caller cannot know that Redis did the
work (connection refused or lost, timeout, loading after a restart, cluster down or
read-only during a failover). Every other Redis error is a bug or a refusal and is not a
fault of availability.
"""

from __future__ import annotations

import asyncio

from redis.exceptions import (
    ClusterDownError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cluster.errors import StorageUnavailable

__all__ = ["as_unavailable"]

_FAULTS = (
    RedisConnectionError,  # includes BusyLoadingError (LOADING after a restart)
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    ReadOnlyError,
    RedisClusterException,
    asyncio.TimeoutError,
    OSError,
)


def as_unavailable(exc: BaseException) -> StorageUnavailable | None:
    """A `StorageUnavailable` describing `exc` when it is an availability fault, else None."""
    if isinstance(exc, StorageUnavailable):
        return exc
    if isinstance(exc, _FAULTS):
        kind = type(exc).__name__
        return StorageUnavailable(f"Redis is unavailable ({kind}); nothing was written")
    return None
