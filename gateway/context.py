"""What every endpoint shares: configuration, auth, metrics, the breaker and the storage
front.

Invariant: every Redis call of a request goes through `Context.call`, so the circuit
breaker sees every outcome and no availability fault escapes as anything but
`StorageUnavailable` (503). The process's one `storage.Storage` front (its command client,
its adapters built once from the settings, its blocking readers) is owned by the app's
lifespan: opened at startup, closed with `aclose()` at shutdown; `storage()` refuses
outside that span.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.requests import Request

from cluster.errors import LiveQueryError, StorageUnavailable
from cluster.query import CursorSigner, Query
from cluster.settings import AuthSettings, GatewaySettings, QueryLimits, StorageSettings
from storage import BlockingReads, RowStore, Storage, as_unavailable

from .auth import Authenticator, Principal
from .breaker import CircuitBreaker
from .metrics import Metrics
from .ratelimit import TenantRates

__all__ = ["LOG_KEY", "Context", "GatewayConfig"]

T = TypeVar("T")
AskOwner = Callable[[int, str, Query], Awaitable[bytes | None]]
"""(partition, tenant, query) -> the owner shard's answer as the HTTP body, or None."""
LOG_KEY = "lq.log"
_BACKOFF = 0.02  # seconds before the first retry of a read; doubles, capped at 0.5 s


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything a gateway app is built from (frozen; made by the entry point)."""

    auth: AuthSettings
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    query: QueryLimits = field(default_factory=QueryLimits)


class Context:
    """Per-app shared state; endpoints receive it by closure, not through globals."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.auth = Authenticator(config.auth)
        self.metrics = Metrics()
        g = config.gateway
        self.breaker = CircuitBreaker(
            g.breaker_failures, g.breaker_cooldown, on_change=self.metrics.breaker_changed
        )
        self.rates = TenantRates(g.http_rate, g.http_burst)
        self.front: Storage | None = None
        self._signer: CursorSigner | None = None
        self._signer_lock = asyncio.Lock()
        # Set once by the live side's hub (`gateway.live.asks`); left None, the one-shot
        # query route always scans.
        self.ask_owner: AskOwner | None = None

    async def open(self) -> None:
        g = self.config.gateway
        # No client-level retries: a command re-sent after a lost reply could apply a
        # write twice. Reads are retried in `call`, where that is known to be safe.
        self.front = Storage.open(
            self.config.storage,
            socket_timeout=g.redis_timeout,
            socket_connect_timeout=g.redis_timeout,
        )
        try:
            await self.signer()
        except StorageUnavailable:
            pass  # loaded by the first query that needs it; the gateway still starts

    async def close(self) -> None:
        front, self.front = self.front, None
        if front is not None:
            await front.aclose()

    def storage(self) -> Storage:
        """The storage front; StorageUnavailable outside the app's lifespan."""
        if self.front is None:
            raise StorageUnavailable("the gateway is not connected to Redis")
        return self.front

    def rows(self) -> RowStore:
        return self.storage().rows

    def blocking(self) -> BlockingReads:
        """A client for one blocking reader (its waits do not hold command connections)."""
        g = self.config.gateway
        # A blocking read waits up to its block time; the socket timeout leaves room.
        return self.storage().blocking(socket_timeout=g.redis_timeout + g.delta_block_ms / 1000,
                                       socket_connect_timeout=g.redis_timeout)

    async def call(self, fn: Callable[[], Awaitable[T]], *, read: bool = False) -> T:
        """Run one Redis operation under the circuit breaker; faults become 503.

        `read=True` marks an operation that changes nothing, so it is retried with
        backoff (`redis_retries` times) on an availability fault; writes never are,
        since a write whose reply was lost may have been applied.
        """
        trial = self.breaker.admit()
        try:
            result = await self._attempt(fn, self.config.gateway.redis_retries if read else 0)
        except LiveQueryError as e:
            if isinstance(e, StorageUnavailable):
                self._failed(trial, e)
            else:
                self.breaker.succeeded(trial)
            raise
        except Exception as e:
            fault = as_unavailable(e, sent=not read)
            if fault is None:
                self.breaker.succeeded(trial)
                raise
            self._failed(trial, e)
            raise fault from e
        except BaseException:
            self.breaker.abandoned(trial)
            raise
        self.breaker.succeeded(trial)
        return result

    async def _attempt(self, fn: Callable[[], Awaitable[T]], retries: int) -> T:
        for attempt in range(retries):
            try:
                return await fn()
            except Exception as e:
                if isinstance(e, LiveQueryError) or as_unavailable(e) is None:
                    raise
                self.metrics.redis_errors.labels(type(e).__name__).inc()
                await asyncio.sleep(min(0.5, _BACKOFF * 2**attempt))
        return await fn()

    def _failed(self, trial: bool, error: BaseException) -> None:
        self.metrics.redis_errors.labels(type(error).__name__).inc()
        self.breaker.failed(trial)

    async def signer(self) -> CursorSigner:
        """The cursor signer, its key loaded once (from settings, else the key in Redis)."""
        if self._signer is None:
            async with self._signer_lock:
                if self._signer is None:
                    secret = self.config.gateway.cursor_secret
                    key = await self.call(
                        lambda: self.storage().cursor_secret(secret), read=True
                    )
                    self._signer = CursorSigner(key)
        return self._signer

    def principal(self, request: Request) -> Principal:
        """The caller, from the token only; also noted for the request's log line."""
        principal = self.auth.authenticate(request.headers)
        note(request, "tenant", principal.tenant)
        self.rates.check(principal.tenant)
        return principal


def note(request: Request, key: str, value: Any) -> None:
    """Add a field to the request's log line."""
    fields = request.scope.get(LOG_KEY)
    if fields is not None:
        fields[key] = value
