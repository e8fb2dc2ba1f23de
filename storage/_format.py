"""How rows, TTL members and log entries look inside Redis, and input checks.

Stored row value: `<version>:<expiry ms, 0 = none>:<codec-framed JSON>`; Lua reads the
plain prefix only. TTL members are `tenant \\0 entity \\0 id` (none of them may hold a
control character). A log entry holds `t e i v o [d]`: tenant, entity, id, version,
op (`p` put, `d` delete, `n` no-op marker) and the framed values of a put.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import orjson

from cluster import codec, strict_json
from cluster.errors import InvalidQuery, InvalidRequest, InvalidRow, TooLarge
from cluster.messages import Change
from cluster.query import check_entity
from cluster.settings import StorageSettings

__all__ = [
    "ID_MAX",
    "TENANT_MAX",
    "StoredRow",
    "check_entity_name",
    "check_id",
    "check_names",
    "check_tenant",
    "encode_values",
    "parse_entry",
    "parse_stored",
    "split_ttl_member",
    "ttl_member",
]

ID_MAX = 256
TENANT_MAX = 128


class StoredRow(NamedTuple):
    """A row as read back: expiry is Redis time in ms, or 0 for none.

    A named tuple, not a frozen dataclass: a claim builds one per row it loads, and a
    tuple is cheaper to make (1.1 against 1.7 us here, with the call).
    """

    id: str
    version: int
    values: dict[str, Any]
    expires_at: int = 0


_has_control = re.compile("[\x00-\x1f\x7f-\x9f]").search


def check_id(row_id: object) -> str:
    if not isinstance(row_id, str) or not 1 <= len(row_id) <= ID_MAX:
        raise InvalidRequest(f"a row id is a string of 1 to {ID_MAX} characters")
    if _has_control(row_id):
        raise InvalidRequest("a row id may not contain control characters")
    return row_id


def check_tenant(tenant: object) -> str:
    if not isinstance(tenant, str) or not 1 <= len(tenant) <= TENANT_MAX:
        raise InvalidRequest(f"a tenant is a string of 1 to {TENANT_MAX} characters")
    if _has_control(tenant):
        raise InvalidRequest("a tenant may not contain control characters")
    return tenant


def check_entity_name(entity: str) -> str:
    """check_entity, but an InvalidRequest: in a write or a path it is not a query."""
    try:
        return check_entity(entity)
    except InvalidQuery as e:
        raise InvalidRequest(str(e)) from e


def check_names(tenant: str, entity: str, row_id: str) -> None:
    check_tenant(tenant)
    check_entity_name(entity)
    check_id(row_id)


def _check_numbers_and_depth(values: dict[str, Any], raw: bytes | None = None) -> None:
    """InvalidRequest when the row breaks strict_json's integer or nesting rule."""
    try:
        if raw is None:
            strict_json.check(values, strict=False)
        else:
            strict_json.check_encoded(values, raw)
    except strict_json.Refused as e:
        raise InvalidRequest(e.message("row")) from None


def encode_values(values: object, settings: StorageSettings) -> bytes:
    """The framed values of a row; refuses non-objects, unencodable and oversized rows,
    and (as the gateway does) integers outside signed 64 bits and nesting past the limit."""
    if not isinstance(values, dict):
        raise InvalidRow("a row is a JSON object")
    try:
        raw = orjson.dumps(values)
    except (orjson.JSONEncodeError, TypeError) as e:
        _check_numbers_and_depth(values)
        raise InvalidRow(f"the row holds a value the store refuses: {e}") from e
    _check_numbers_and_depth(values, raw)
    if len(raw) > settings.max_row_bytes:
        raise TooLarge(f"the row is {len(raw)} bytes; the limit is {settings.max_row_bytes}")
    return codec.encode_json(raw, settings.compress_above)


def ttl_member(tenant: str, entity: str, row_id: str) -> str:
    return f"{tenant}\0{entity}\0{row_id}"


def split_ttl_member(member: bytes | str) -> tuple[str, str, str]:
    text = member.decode() if isinstance(member, bytes) else member
    tenant, entity, row_id = text.split("\0", 2)
    return tenant, entity, row_id


def parse_stored(row_id: str, raw: bytes) -> StoredRow:
    version, expiry, payload = raw.split(b":", 2)
    return StoredRow(row_id, int(version), codec.decode(payload), int(expiry))


def parse_entry(stream_id: bytes | str, fields: dict[bytes, bytes]) -> Change | None:
    """The change in a log entry, or None for a no-op marker."""
    op = fields.get(b"o")
    if op == b"n" or op is None:
        return None
    sid = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    return Change(
        tenant=fields[b"t"].decode(),
        entity=fields[b"e"].decode(),
        id=fields[b"i"].decode(),
        version=int(fields[b"v"]),
        values=codec.decode(fields[b"d"]) if op == b"p" else None,
        stream_id=sid,
    )
