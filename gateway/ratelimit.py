"""Token buckets: per WebSocket connection, and per tenant for the HTTP data API.

`TenantRates` keeps at most `max_tenants` buckets (it forgets them all when that many
are held, which at worst grants a fresh burst), so memory is bounded however many
tenants call. A rate of 0 turns the limit off.
"""

from __future__ import annotations

import time

from .errors import RateLimited

__all__ = ["TenantRates", "TokenBucket"]


class TokenBucket:
    """`rate` tokens a second up to `burst`; `take()` is False when none is left."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.last = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class TenantRates:
    def __init__(self, rate: float, burst: int, max_tenants: int = 10_000) -> None:
        self.rate, self.burst, self.max_tenants = rate, burst, max_tenants
        self.buckets: dict[str, TokenBucket] = {}

    def check(self, tenant: str) -> None:
        """Raise RateLimited when `tenant` is over its rate on this gateway."""
        if self.rate <= 0:
            return
        bucket = self.buckets.get(tenant)
        if bucket is None:
            if len(self.buckets) >= self.max_tenants:
                self.buckets.clear()
            bucket = self.buckets[tenant] = TokenBucket(self.rate, self.burst)
        if not bucket.take():
            raise RateLimited(
                f"over {self.rate:g} requests per second for this tenant; retry shortly"
            )
