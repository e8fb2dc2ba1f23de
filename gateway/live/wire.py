"""The live wire: client messages parsed (PROTOCOL.md section 4), server messages composed.

Invariant: `parse` is total. Any text or bytes gives either one of the client message
types below or a `WireError` (code `invalid_message`, or `invalid_query` where the
protocol says so) whose message names what to fix; it never raises anything else and
never touches state. A message is taken exactly as written or refused
(`cluster.strict_json`): an integer outside the signed 64-bit range, or nesting past the
limit, is `invalid_query` inside a subscribe's `query` or a reanchor's `after`/`limit`,
else `invalid_message`, naming where. Composing is byte-level: a shard's delta is encoded
once, and a subscriber's copy is its `sub` and `seq` spliced in front of those shared bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from cluster import strict_json

__all__ = [
    "DELTA_PREFIX",
    "Auth",
    "ClientMessage",
    "Ping",
    "Reanchor",
    "Subscribe",
    "Unsubscribe",
    "WireError",
    "batch",
    "compact",
    "compose",
    "control",
    "delta_body",
    "error",
    "parse",
    "resume_rows",
]

DELTA_PREFIX = b'{"type":"delta",'
MAX_SUB = 64
MAX_CHECK_S = 3600
_MISSING: Any = object()


class WireError(Exception):
    """A client message the server cannot act on; `sub` when it could be read."""

    def __init__(self, message: str, sub: str | None = None, code: str = "invalid_message"):
        super().__init__(message)
        self.sub = sub
        self.code = code


@dataclass(frozen=True, slots=True)
class Subscribe:
    """`check`: seconds between `check` messages (None: none asked for); `resume`: the
    declared rows as sent (a list, each entry still to be checked against the query by
    `resume.declared`), None when the client declared none."""

    sub: str
    query: Any
    check: int | None = None
    resume: list[Any] | None = None
    resume_pos: str | None = None  # changes mode: `resume.pos`, the log position named


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    sub: str


@dataclass(frozen=True, slots=True)
class Reanchor:
    """`limit` is None when the message keeps the current one."""

    sub: str
    after: Any
    limit: Any


@dataclass(frozen=True, slots=True)
class Ping:
    t: Any = _MISSING

    @property
    def has_t(self) -> bool:
        return self.t is not _MISSING


@dataclass(frozen=True, slots=True)
class Auth:
    token: str


ClientMessage = Subscribe | Unsubscribe | Reanchor | Ping | Auth

_FIELDS: dict[str, frozenset[str]] = {
    "subscribe": frozenset({"type", "sub", "query", "check", "resume"}),
    "unsubscribe": frozenset({"type", "sub"}),
    "reanchor": frozenset({"type", "sub", "after", "limit"}),
    "ping": frozenset({"type", "t"}),
    "auth": frozenset({"type", "token"}),
}
_TYPES = ", ".join(_FIELDS)


def _sub(obj: dict[str, Any]) -> str:
    sub = obj.get("sub", _MISSING)
    if sub is _MISSING:
        raise WireError('"sub" is missing: name the subscription (1-64 characters)')
    if not isinstance(sub, str) or not 1 <= len(sub) <= MAX_SUB:
        raise WireError(f'"sub" is a string of 1 to {MAX_SUB} characters')
    return sub


def _check(check: Any, name: str) -> int | None:
    if check is not None and (type(check) is not int or not 1 <= check <= MAX_CHECK_S):
        raise WireError(f'"check" is an integer of 1 to {MAX_CHECK_S} seconds', name)
    return check


def resume_rows(resume: Any, name: str | None = None) -> list[Any] | None:
    """The declared rows' list of a `resume` member (also `POST /v1/poll`'s); its entries
    are checked later, against the query (a wrong entry is a `resume_miss`, not an
    error). WireError when it is not an object with exactly an array `rows`."""
    if resume is None:
        return None
    if not isinstance(resume, dict) or set(resume) != {"rows"} or not isinstance(
            resume["rows"], list):
        raise WireError('"resume" is an object {"rows": [[id, version], ...]} or, in changes '
                        'mode, {"pos": "<log position>"}', name)
    rows: list[Any] = resume["rows"]
    return rows


def _resume(resume: Any, name: str) -> tuple[list[Any] | None, str | None]:
    """(declared rows, None) or, for `{"pos": "<string>"}`, (None, the log position)."""
    if isinstance(resume, dict) and set(resume) == {"pos"} and isinstance(resume["pos"], str):
        return None, resume["pos"]
    return resume_rows(resume, name), None


_QUERY_PARTS = {"subscribe": ("query",), "reanchor": ("after", "limit")}


def _refused(e: strict_json.Refused) -> WireError:
    """The error for a message the strict JSON rules refuse, with its sub when readable."""
    doc = e.document if isinstance(e.document, dict) else {}
    kind, sub = doc.get("type"), doc.get("sub")
    sub = sub if isinstance(sub, str) and 1 <= len(sub) <= MAX_SUB else None
    head = e.path[0] if e.path else None
    if isinstance(kind, str) and head in _QUERY_PARTS.get(kind, ()):
        # The query's own parts are named as parse_query names them (`where.a.$gt`).
        inner = e.path[1:] if head == "query" else e.path
        part = strict_json.render_path("", inner) or str(head)
        return WireError(f"{part}: {e.problem}", sub, "invalid_query")
    return WireError(e.message(), sub)


def parse(raw: str | bytes) -> ClientMessage:
    """One client message, or WireError saying what is wrong with it."""
    try:
        obj = strict_json.loads(raw)
    except strict_json.Refused as e:
        raise _refused(e) from None
    except orjson.JSONDecodeError as e:
        raise WireError(f"the message is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise WireError('a message is a JSON object such as {"type": "ping"}')
    kind = obj.get("type")
    sub = obj.get("sub") if isinstance(obj.get("sub"), str) else None
    if not isinstance(kind, str) or kind not in _FIELDS:
        shown = repr(kind) if isinstance(kind, str | int | float | bool) else "missing"
        raise WireError(f"unknown message type {shown[:80]} (expected one of {_TYPES})", sub)
    unknown = sorted(str(k) for k in obj if k not in _FIELDS[kind])
    if unknown:
        raise WireError(f"unknown field {unknown[0][:80]!r} in a {kind} message", sub)
    if kind == "ping":
        return Ping(obj.get("t", _MISSING))
    if kind == "auth":
        token = obj.get("token")
        if not isinstance(token, str) or not token:
            raise WireError('an auth message carries "token": the JWT as a string')
        return Auth(token)
    name = _sub(obj)
    if kind == "unsubscribe":
        return Unsubscribe(name)
    if kind == "subscribe":
        if "query" not in obj:
            raise WireError('a subscribe message carries "query"', name)
        return Subscribe(name, obj["query"], _check(obj.get("check"), name),
                         *_resume(obj.get("resume"), name))
    return Reanchor(name, obj.get("after"), obj.get("limit"))


# -- composing ------------------------------------------------------------------------


def compact(data: bytes) -> bytes:
    """A right-sized copy of `orjson.dumps` output, for bytes that are kept: orjson
    (3.13 here) leaves its whole 4 KiB output buffer behind every bytes object it
    returns, so each small one held costs 4 KiB (a slice copies, and is right-sized)."""
    return bytes(memoryview(data))


def control(obj: dict[str, Any]) -> bytes:
    """A message without `seq` (subscribed, unsubscribed, pong, ready, error)."""
    return compact(orjson.dumps(obj))


def error(code: str, message: str, sub: str | None = None) -> bytes:
    return compact(orjson.dumps({"type": "error", "sub": sub, "code": code,
                                 "message": message}))


def delta_body(message: dict[str, Any]) -> bytes:
    """A delta's bytes after `{"type":"delta",` (shared by every subscriber of it)."""
    encoded = orjson.dumps(message)
    if encoded.startswith(DELTA_PREFIX):
        return encoded[len(DELTA_PREFIX):]
    rest = {k: v for k, v in message.items() if k not in ("type", "sub", "seq")}
    return orjson.dumps(rest)[1:] if rest else b'"op":null}'


def compose(sub_json: bytes, seq: int, body: bytes) -> bytes:
    """The client's copy of a delta: its `sub` and `seq`, then the shared body."""
    return b'{"type":"delta","sub":%b,"seq":%d,%b' % (sub_json, seq, body)


def batch(messages: list[bytes]) -> bytes:
    """One WebSocket frame: the message itself, or a JSON array of several."""
    if len(messages) == 1:
        return messages[0]
    return b"[" + b",".join(messages) + b"]"
