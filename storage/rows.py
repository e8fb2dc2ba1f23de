"""The row store: put, delete, merge patch, get, TTL expiry and pipelined batches.

Every write is one Lua script over one partition's keys (DESIGN.md section 4): check the
precondition, take the next `lq:ver:{p}`, write or remove the row, keep `lq:ttl:{p}`,
append the change to `lq:events:{p}`. Nothing is written when a precondition fails, so a
refused write leaves rows and log unchanged. Reads hide expired rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cluster.errors import NotFound, VersionConflict
from cluster.keys import Keys
from cluster.partition import partition_of
from cluster.settings import StorageSettings

from . import _lua
from ._format import (
    StoredRow,
    check_entity_name,
    check_id,
    check_tenant,
    encode_values,
    parse_stored,
    ttl_member,
)
from .connection import RedisClient
from .merge import merge_patch

__all__ = ["RowStore", "WriteResult"]

_PUT = _lua.load("put")
_DELETE = _lua.load("delete")
_GET = _lua.load("get")
_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class WriteResult:
    """A successful write: the row's new version and the change's log position."""

    id: str
    version: int
    stream_id: str


def _mode(if_match: int | None, create_only: bool) -> tuple[str, str]:
    if if_match is not None:
        return "match", str(if_match)
    return ("create", "") if create_only else ("", "")


def _ttl_arg(ttl_ms: int | None) -> str:
    return "0" if ttl_ms is None else str(ttl_ms)


def interpret(row_id: str, reply: list[Any]) -> WriteResult:
    """Turn a write script's reply into a result or the matching error."""
    status = int(reply[0])
    if status == 1:
        return WriteResult(row_id, int(reply[1]), reply[2].decode())
    if status == -1:
        raise NotFound(f"no row {row_id!r}")
    current = reply[1]
    raise VersionConflict(int(current) if current else None)


class RowStore:
    """Row reads and writes for any tenant; callers pass the tenant from the token only."""

    def __init__(self, client: RedisClient, settings: StorageSettings) -> None:
        self.client = client
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self._collections: dict[tuple[str, str], list[str]] = {}

    def write_keys(self, tenant: str, entity: str) -> list[str]:
        """The keys of a write to (tenant, entity), validated once and then cached."""
        named = type(tenant) is str and type(entity) is str  # else unhashable, maybe
        found = self._collections.get((tenant, entity)) if named else None
        if found is None:
            check_tenant(tenant)
            check_entity_name(entity)
            k, p = self.keys, partition_of(tenant, entity)
            found = [k.rows(p, tenant, entity), k.version(p), k.ttl(p), k.events(p)]
            if len(self._collections) >= _CACHE_SIZE:
                self._collections.clear()
            self._collections[(tenant, entity)] = found
        return found

    def put_call(
        self,
        tenant: str,
        entity: str,
        row_id: str,
        values: object,
        *,
        if_match: int | None = None,
        create_only: bool = False,
        ttl_ms: int | None = None,
    ) -> tuple[list[str], list[Any]]:
        """Validated keys and arguments of a put (shared by single and batch writes)."""
        keys = self.write_keys(tenant, entity)
        check_id(row_id)
        payload = encode_values(values, self.settings)
        mode, expected = _mode(if_match, create_only)
        args: list[Any] = [
            row_id, payload, mode, expected, _ttl_arg(ttl_ms), tenant, entity,
            self.settings.log_maxlen, ttl_member(tenant, entity, row_id),
        ]
        return keys, args

    def delete_call(
        self, tenant: str, entity: str, row_id: str, *, if_match: int | None = None,
        expire: bool = False,
    ) -> tuple[list[str], list[Any]]:
        keys = self.write_keys(tenant, entity)
        check_id(row_id)
        mode, expected = _mode(if_match, False)
        if expire:
            mode = "expire"
        args: list[Any] = [
            row_id, mode, expected, tenant, entity, self.settings.log_maxlen,
            ttl_member(tenant, entity, row_id),
        ]
        return keys, args

    async def put(
        self,
        tenant: str,
        entity: str,
        row_id: str,
        values: object,
        *,
        if_match: int | None = None,
        create_only: bool = False,
        ttl_ms: int | None = None,
    ) -> WriteResult:
        """Write a whole row. `ttl_ms` sets an expiry (None: no expiry, -1: keep it)."""
        keys, args = self.put_call(
            tenant, entity, row_id, values,
            if_match=if_match, create_only=create_only, ttl_ms=ttl_ms,
        )
        return interpret(row_id, await _PUT(self.client, keys, args))

    async def delete(
        self, tenant: str, entity: str, row_id: str, *, if_match: int | None = None
    ) -> WriteResult:
        """Delete a row; NotFound when absent, VersionConflict when If-Match fails."""
        keys, args = self.delete_call(tenant, entity, row_id, if_match=if_match)
        return interpret(row_id, await _DELETE(self.client, keys, args))

    async def expire(
        self, tenant: str, entity: str, row_id: str, version: int | None = None
    ) -> WriteResult | None:
        """Delete a row whose expiry has passed (and whose version is `version`, if given).

        Returns None when there was nothing to expire (re-written meanwhile, or gone).
        """
        keys, args = self.delete_call(tenant, entity, row_id, if_match=version, expire=True)
        try:
            return interpret(row_id, await _DELETE(self.client, keys, args))
        except (NotFound, VersionConflict):
            return None

    async def get(self, tenant: str, entity: str, row_id: str) -> StoredRow | None:
        """The row, or None when absent or expired."""
        key = self.write_keys(tenant, entity)[0]
        check_id(row_id)
        raw = await _GET(self.client, [key], [row_id])
        return None if raw is None else parse_stored(row_id, raw)

    async def patch(
        self,
        tenant: str,
        entity: str,
        row_id: str,
        patch: object,
        *,
        if_match: int | None = None,
        ttl_ms: int | None = None,
    ) -> WriteResult:
        """RFC 7396 merge patch: read, merge, write conditional on the version read.

        Lost races are retried (`patch_retries`); with `if_match` the caller's version is
        the condition and a mismatch is a VersionConflict at once. Keeps the row's expiry
        unless `ttl_ms` is given.
        """
        attempts = 1 if if_match is not None else self.settings.patch_retries + 1
        for attempt in range(attempts):
            current = await self.get(tenant, entity, row_id)
            if current is None:
                if if_match is not None:
                    raise VersionConflict(None)
                raise NotFound(f"no row {row_id!r}")
            if if_match is not None and current.version != if_match:
                raise VersionConflict(current.version)
            merged = merge_patch(current.values, patch)
            try:
                return await self.put(
                    tenant, entity, row_id, merged, if_match=current.version,
                    ttl_ms=-1 if ttl_ms is None else ttl_ms,
                )
            except VersionConflict:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")
