"""Write parameters from headers and the query string: preconditions and TTL.

Invariant: every parameter is validated before anything touches Redis, and anything not
understood (an unknown query parameter, a list of ETags, a TTL out of range) is refused
with `invalid_request` rather than ignored, so a typo never turns into an unconditional
or everlasting write.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cluster.errors import InvalidRequest
from cluster.strict_json import INT_MAX

__all__ = [
    "Preconditions",
    "check_query_params",
    "if_none_match_version",
    "parse_ttl",
    "preconditions",
    "ttl_ms",
]

# ASCII digits only (`\d` would take any Unicode digit), at most 19: a version fits in
# signed 64 bits like every integer lq accepts.
_ETAG = re.compile(r'(?:"([0-9]{1,19})"|([0-9]{1,19}))\Z')
# A plain decimal number: float() alone would also take "1_000", " 5 ", "nan" and digits
# of other scripts.
_SECONDS = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\Z")


@dataclass(frozen=True, slots=True)
class Preconditions:
    """`If-Match` as a version (or `*`: the row must exist), `If-None-Match: *` as create-only."""

    if_match: int | None = None
    must_exist: bool = False
    create_only: bool = False


def _version(value: str, header: str) -> int:
    match = _ETAG.match(value.strip())
    version = int(match.group(1) or match.group(2)) if match is not None else -1
    if not 0 <= version <= INT_MAX:
        raise InvalidRequest(f'{header} takes one version as an ETag, e.g. {header}: "42"')
    return version


def preconditions(headers: Mapping[str, str], *, allow_create: bool) -> Preconditions:
    """The write preconditions of a request's headers."""
    if_match = headers.get("if-match")
    if_none = headers.get("if-none-match")
    if if_match is not None and if_none is not None:
        raise InvalidRequest("send If-Match or If-None-Match, not both")
    if if_none is not None:
        if not allow_create:
            raise InvalidRequest("If-None-Match: * (create only) applies to PUT only")
        if if_none.strip() != "*":
            raise InvalidRequest("writes accept only If-None-Match: * (create only)")
        return Preconditions(create_only=True)
    if if_match is None:
        return Preconditions()
    if if_match.strip() == "*":
        return Preconditions(must_exist=True)
    return Preconditions(if_match=_version(if_match, "If-Match"))


def if_none_match_version(headers: Mapping[str, str]) -> int | None:
    """A GET's `If-None-Match: "<version>"` (None when absent or `*`)."""
    value = headers.get("if-none-match")
    if value is None or value.strip() == "*":
        return None
    return _version(value, "If-None-Match")


def check_query_params(items: Sequence[tuple[str, str]], allowed: frozenset[str]) -> None:
    seen: set[str] = set()
    for name, _ in items:
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise InvalidRequest(f"unknown query parameter {name!r} (accepted: {known})")
        if name in seen:
            raise InvalidRequest(f"query parameter {name!r} given twice")
        seen.add(name)


def parse_ttl(raw: object, max_seconds: float, where: str = "ttl") -> float | None:
    """A TTL in seconds: a positive finite number up to `max_seconds`, or None if absent."""
    if raw is None:
        return None
    if isinstance(raw, str):
        if _SECONDS.match(raw) is None:
            raise InvalidRequest(f"{where} is a number of seconds, got {raw[:40]!r}")
        value = float(raw)
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    else:
        raise InvalidRequest(f"{where} is a number of seconds")
    if not math.isfinite(value) or value <= 0 or value > max_seconds:
        raise InvalidRequest(f"{where} must be more than 0 and at most {max_seconds:g} seconds")
    return value


def ttl_ms(seconds: float | None) -> int | None:
    """Seconds as whole milliseconds (at least 1), None stays None."""
    return None if seconds is None else max(1, math.ceil(seconds * 1000))
