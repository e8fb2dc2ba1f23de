"""Settings as frozen dataclasses, built once by an entry point and passed in.

Precedence is flags > `LQ_` environment > defaults. Nothing below an entry point reads
the environment: `from_env` takes the mapping it is given (normally `os.environ`).
Every field documents itself through `field(metadata={"help": ...})`, which is what
`docs/configuration.md` is checked against.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .keys import DEFAULT_PREFIX

__all__ = [
    "DEFAULT_DELTA_MAXLEN",
    "ENV_PREFIX",
    "LOOPS",
    "SERVERS",
    "WS_IMPLS",
    "AuthSettings",
    "GatewaySettings",
    "QueryLimits",
    "ShardSettings",
    "StorageSettings",
    "env_name",
    "from_env",
]

ENV_PREFIX = "LQ_"
DEFAULT_DELTA_MAXLEN = 100_000
SERVERS = ("uvicorn", "granian")
"""The ASGI servers `lq gateway` can run under."""
WS_IMPLS = ("websockets-sansio", "websockets", "wsproto")
"""uvicorn's WebSocket implementations (`--ws`), the first the default."""
LOOPS = ("auto", "asyncio", "uvloop")
"""A shard's event loops (`LQ_LOOP`): auto is uvloop when it is installed, else asyncio."""
"""`StorageSettings.delta_maxlen`'s default (named so that no second copy of it drifts)."""

T = TypeVar("T")


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """Limits on queries (PROTOCOL.md section 2, DESIGN.md section 8)."""

    max_limit: int = _f(1000, "largest window `limit` a query may ask for")
    max_depth: int = _f(8, "deepest nesting of a `where` filter")
    max_conditions: int = _f(64, "most conditions in one `where` filter")
    max_in: int = _f(1000, "most values in one `$in` / `$nin`")
    max_sort: int = _f(8, "most columns in `sort`")
    max_cursor_bytes: int = _f(1024, "longest cursor text accepted")


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """How lq talks to Redis and lays out its data.

    Read by every process (shard and gateway alike), so values that both sides of a
    stream must agree on (the prefix, the log and delta stream lengths) live here.
    """

    redis_url: str = _f("redis://127.0.0.1:6379/0", "Redis URL; redis+cluster:// for Redis Cluster")
    prefix: str = _f(DEFAULT_PREFIX, "prefix of every Redis key")
    log_maxlen: int = _f(20_000, "approximate MAXLEN of each partition's change log")
    delta_maxlen: int = _f(
        DEFAULT_DELTA_MAXLEN,
        "approximate MAXLEN of each gateway's delta stream; shards trim with it, "
        "gateways create with it",
    )
    compress_above: int = _f(512, "values larger than this many bytes are zstd-compressed")
    max_row_bytes: int = _f(256 * 1024, "largest row accepted, in bytes of JSON")
    patch_retries: int = _f(5, "retries of a merge patch that lost a race")


_ALGORITHMS = ("HS256", "RS256", "ES256")


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """How gateways check JWTs (PROTOCOL.md section 8). Algorithms are pinned here."""

    jwt_secret: str = _f("", "HS256 shared secret (at least 32 bytes)")
    jwt_public_key: str = _f("", "PEM public key for RS256 / ES256 tokens")
    jwt_algorithms: str = _f("HS256", "accepted algorithms, comma-separated: HS256, RS256, ES256")
    jwt_require_exp: bool = _f(True, "refuse tokens without an `exp` claim")
    jwt_leeway: float = _f(0.0, "clock leeway in seconds on `exp` and `nbf` (0 to 60)")
    jwt_tenant_claim: str = _f("tenant", "name of the claim that holds the tenant")
    jwt_audience: str = _f("", "required `aud` claim (empty: not checked)")
    jwt_issuer: str = _f("", "required `iss` claim (empty: not checked)")

    def __post_init__(self) -> None:
        algorithms = self.algorithms
        unknown = [a for a in algorithms if a not in _ALGORITHMS]
        if not algorithms or unknown:
            raise ValueError(f"jwt_algorithms: choose from {', '.join(_ALGORITHMS)}")
        if "HS256" in algorithms and len(algorithms) > 1:
            raise ValueError("jwt_algorithms: HS256 cannot be mixed with public-key algorithms")
        if not 0 <= self.jwt_leeway <= 60:
            raise ValueError("jwt_leeway: between 0 and 60 seconds")
        if not self.jwt_tenant_claim:
            raise ValueError("jwt_tenant_claim: must not be empty")

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.jwt_algorithms.split(",") if a.strip())


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """The gateway process: where it listens, its request limits and Redis fault handling."""

    host: str = _f("127.0.0.1", "address the gateway listens on")
    port: int = _f(8080, "port the gateway listens on")
    max_body_bytes: int = _f(1024 * 1024, "largest request body accepted, in bytes")
    max_batch_ops: int = _f(1000, "most ops in one POST /v1/batch")
    max_ttl_seconds: float = _f(366 * 86400.0, "largest `ttl` a write may ask for, in seconds")
    redis_timeout: float = _f(1.0, "seconds before a Redis command counts as failed")
    redis_retries: int = _f(2, "retries (with backoff) of a read on a Redis fault; never writes")
    breaker_failures: int = _f(3, "consecutive Redis failures that open the circuit breaker")
    breaker_cooldown: float = _f(2.0, "seconds the open breaker fails fast before one trial")
    cursor_secret: str = _f("", "cursor HMAC key (empty: the shared key kept in Redis)")
    access_log: bool = _f(True, "write one JSON line per request")
    heartbeat_ms: int = _f(1000, "gateway heartbeat period (also refreshes its delta stream)")
    member_ttl_ms: int = _f(3000, "gateway liveness TTL: silent this long, the gateway is gone")
    delta_ttl_s: int = _f(120, "EXPIRE kept on the gateway's delta stream, in seconds")
    delta_block_ms: int = _f(1000, "longest blocking read of the delta stream")
    subscribe_timeout: float = _f(2.0, "seconds without a reset before a subscribe is re-sent")
    ws_ping_interval: float = _f(25.0, "seconds between WebSocket pings (1-300)")
    ws_max_message_bytes: int = _f(64 * 1024, "largest inbound WebSocket message (else close 1009)")
    http_rate: float = _f(0.0, "HTTP data API requests per second per tenant (0: no limit)")
    http_burst: int = _f(200, "HTTP data API request burst per tenant")
    ws_rate: float = _f(200.0, "inbound WebSocket messages per second per connection")
    ws_burst: int = _f(400, "inbound WebSocket message burst per connection")
    auth_timeout: float = _f(10.0, "seconds a WebSocket may take to send its auth message")
    max_subscriptions_per_connection: int = _f(100, "most subscriptions on one WebSocket")
    max_connections: int = _f(20_000, "most live connections (WS, SSE, poll handles) per gateway")
    max_subscriptions: int = _f(200_000, "most subscriptions per gateway, all transports")
    outbox_max_messages: int = _f(1000, "per-connection outbound queue bound, in messages")
    outbox_max_bytes: int = _f(8 * 1024 * 1024, "per-connection outbound queue bound, in bytes "
                                    "(a WebSocket's counts what its socket buffers hold)")
    mirror_max_bytes: int = _f(4 * 1024 * 1024, "per-subscription window copy bound, in bytes")
    sse_keepalive: float = _f(15.0, "seconds between SSE keep-alive comments (at most 15)")
    sse_linger: float = _f(30.0, "seconds a disconnected SSE stream is kept for Last-Event-ID")
    poll_lease: float = _f(60.0, "seconds an idle long-polling handle is kept")
    drain_timeout: float = _f(5.0, "seconds the SIGTERM drain may take before the exit")
    cors_origins: str = _f(
        "", "browser origins allowed to call from another origin, comma-separated: exact "
        "(`https://app.example.com`), any port of a host (`http://localhost:*`) or `*`; "
        "empty: none")
    ticket_ttl: float = _f(30.0, "seconds a ticket (POST /v1/tickets) stays valid (1-300)")
    demo: bool = _f(False, "serve the live demo page at / (development: it mints tokens)")
    canary_interval: float = _f(
        5.0, "seconds between writes of the delivery canary's row (0: no canary)")
    canary_timeout: float = _f(
        15.0, "seconds without a canary delta, while shards are live, before /readyz fails")
    server: str = _f(
        "uvicorn", "ASGI server: uvicorn, or granian (the lq-cluster[granian] extra; no "
        "server WebSocket pings, no stack bytes counted: docs/performance.md)")
    ws_impl: str = _f(
        "websockets-sansio", "uvicorn's WebSocket implementation: websockets-sansio, "
        "websockets, or wsproto (the lq-cluster[wsproto] extra)")

    def __post_init__(self) -> None:
        if self.server not in SERVERS:
            raise ValueError(f"server: choose from {', '.join(SERVERS)}")
        if self.ws_impl not in WS_IMPLS:
            raise ValueError(f"ws_impl: choose from {', '.join(WS_IMPLS)}")


@dataclass(frozen=True, slots=True)
class ShardSettings:
    """The shard process: identity, membership, leases, tailing and housekeeping."""

    shard_id: str = _f("", "stable shard id (default: the host name, as a StatefulSet pod's)")
    heartbeat_ms: int = _f(1000, "membership heartbeat and ownership period")
    member_ttl_ms: int = _f(3000, "membership TTL: a shard silent this long is gone")
    lease_ttl_ms: int = _f(3000, "partition lease TTL")
    lease_margin_ms: int = _f(500, "safety margin: stop serving this long before a lease ends")
    tail_block_ms: int = _f(100, "longest blocking read of the change logs")
    tail_count: int = _f(500, "most log entries read per partition per read")
    control_block_ms: int = _f(500, "longest blocking read of the control stream")
    claim_concurrency: int = _f(4, "partitions claimed at once")
    resume_max_entries: int = _f(
        5000, "most change-log entries a changes-mode resume reads after its position")
    publish_max_bytes: int = _f(8 * 1024 * 1024, "most delta bytes buffered per gateway")
    expiry_interval_ms: int = _f(500, "period of the TTL sweep")
    gateway_grace_ms: int = _f(60_000, "a gateway gone this long loses its registrations")
    collection_idle_s: float = _f(60.0, "a collection without subscriptions is evicted after")
    ready_max_lag_ms: int = _f(
        5000, "tail lag (or time without a change log read) past which /readyz fails")
    http_host: str = _f("127.0.0.1", "address of the health and metrics endpoint")
    http_port: int = _f(9100, "port of the health and metrics endpoint (0: any free port)")
    cursor_secret: str = _f("", "cursor HMAC key (empty: the shared key kept in Redis)")
    loop: str = _f(
        "auto", "event loop: auto (uvloop when it is installed, else asyncio), asyncio, or "
        "uvloop (refused when it is not installed)")

    def __post_init__(self) -> None:
        if self.loop not in LOOPS:
            raise ValueError(f"loop: choose from {', '.join(LOOPS)}")


def env_name(cls: type[Any], name: str) -> str:
    """The environment variable of a settings field: `LQ_` + the upper-case name."""
    del cls
    return ENV_PREFIX + name.upper()


def _convert(raw: str, kind: Any, name: str) -> Any:
    kind_name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    if kind_name.startswith("int"):
        return int(raw)
    if kind_name.startswith("float"):
        return float(raw)
    if kind_name.startswith("bool"):
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"{name}: expected a boolean, got {raw!r}")
    return raw


def from_env(cls: type[T], env: Mapping[str, str], **overrides: Any) -> T:
    """Build `cls` from defaults, then `LQ_*` in `env`, then non-None `overrides`."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = env_name(cls, f.name)
        if key in env:
            try:
                values[f.name] = _convert(env[key], f.type, key)
            except ValueError as e:
                raise ValueError(f"{key}: {e}") from e
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**values)
