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

__all__ = ["ENV_PREFIX", "QueryLimits", "StorageSettings", "env_name", "from_env"]

ENV_PREFIX = "LQ_"

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
    """How lq talks to Redis and lays out its data."""

    redis_url: str = _f("redis://127.0.0.1:6379/0", "Redis URL; redis+cluster:// for Redis Cluster")
    prefix: str = _f("lq", "prefix of every Redis key")
    log_maxlen: int = _f(20_000, "approximate MAXLEN of each partition's change log")
    compress_above: int = _f(512, "values larger than this many bytes are zstd-compressed")
    max_row_bytes: int = _f(256 * 1024, "largest row accepted, in bytes of JSON")
    patch_retries: int = _f(5, "retries of a merge patch that lost a race")


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
