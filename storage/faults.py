"""Which Redis errors mean "Redis is unavailable", so callers above storage never import redis.

Invariants:
- a fault classified here is one where Redis did not answer the request: it refused the
  connection, the connection broke or timed out, or Redis answered that it cannot serve
  now (loading after a restart, cluster down, try again, read-only during a failover).
  Every other Redis error is a bug or a refusal and is not a fault of availability;
- a fault is "nothing was written" only when the request provably never ran: the
  connection was never made (refused, no such host, a connect timeout, no free
  connection in the pool) or Redis answered with a refusal. A request that was sent and
  whose reply was lost (a read error, a read timeout, the server closing the connection)
  may have been applied; for a request that could write (`sent=True`), that is
  `OutcomeUnknown`, never "nothing was written" (PROTOCOL.md section 7).
"""

from __future__ import annotations

import asyncio
import socket

from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cluster.errors import OutcomeUnknown, StorageUnavailable

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
# Redis answered, and its answer says it did not run the command.
_REFUSALS = (BusyLoadingError, ClusterDownError, TryAgainError, ReadOnlyError)
# The connection was never made: these sit in the chain of redis-py's connect errors.
_NEVER_CONNECTED = (ConnectionRefusedError, socket.gaierror)
# redis-py's own messages for a connection that was never made (it raises them without
# a distinct class); matched on their start only.
_NOT_CONNECTED_MESSAGES = ("Timeout connecting to server", "No connection available")


def _never_sent(exc: BaseException) -> bool:
    """True when `exc` proves the request did not run in Redis."""
    seen: BaseException | None = exc
    for _ in range(8):  # a chain is short; bound the walk anyway
        if seen is None:
            return False
        if isinstance(seen, (*_REFUSALS, *_NEVER_CONNECTED)):
            return True
        if str(seen).startswith(_NOT_CONNECTED_MESSAGES):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def as_unavailable(exc: BaseException, *, sent: bool = False) -> StorageUnavailable | None:
    """A `StorageUnavailable` describing `exc` when it is an availability fault, else None.

    `sent=True` marks a request that may write: a fault after which it may have been
    applied is then `OutcomeUnknown`."""
    if isinstance(exc, StorageUnavailable):
        return exc
    if not isinstance(exc, _FAULTS):
        return None
    kind = type(exc).__name__
    if sent and not _never_sent(exc):
        return OutcomeUnknown(
            f"Redis did not answer ({kind}) after the write was sent: it may have been"
            " applied; read the row back"
        )
    return StorageUnavailable(f"Redis is unavailable ({kind}); nothing was written")
