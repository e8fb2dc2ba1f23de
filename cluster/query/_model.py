"""The parsed query: validated parts plus the compiled predicate and sort key.

A `Query` is immutable. `shape` is the canonical identity of everything that decides
its result (entity, where, sort, limit, position, mode): two subscriptions with equal
shapes are answered by one view.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

from cluster.errors import InvalidQuery
from cluster.settings import QueryLimits

from ._ast import Node
from ._compile import Predicate
from ._cursor import CursorSigner
from ._fuse import fused
from ._order import SortColumn, SortKey, make_sort_key
from ._parse import parse_column, parse_where
from ._values import canonical

__all__ = ["ENTITY_MAX", "Mode", "Query", "check_entity", "parse_query"]

ENTITY_MAX = 64
_ENTITY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")  # a fixed pattern, never a user's
_KEYS = frozenset(("entity", "where", "sort", "limit", "after", "mode"))


class Mode(enum.StrEnum):
    WINDOW = "window"
    CHANGES = "changes"


def check_entity(entity: object, part: str = "entity") -> str:
    """An entity name matching `^[A-Za-z_][A-Za-z0-9_]{0,63}$`, or InvalidQuery."""
    if not isinstance(entity, str) or _ENTITY.match(entity) is None:
        raise InvalidQuery(part, "an entity name matches ^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    return entity


@dataclass(frozen=True, eq=False, slots=True)
class Query:
    """A validated query. Compare queries by `shape`, not by identity."""

    entity: str
    where: Node
    where_json: Any
    sort: tuple[SortColumn, ...]
    limit: int
    after: str | None
    position: bytes | None
    mode: Mode
    matches: Predicate = field(repr=False)
    sort_key: SortKey = field(repr=False)
    shape: bytes = field(repr=False)

    @property
    def sort_spec(self) -> str:
        """The sort as one string: the identity of an ordered index."""
        return _sort_spec(self.sort)

    def to_json(self) -> dict[str, Any]:
        """The query as a client would send it (what the registry stores)."""
        return {
            "entity": self.entity,
            "where": self.where_json,
            "sort": [c.spec for c in self.sort],
            "limit": self.limit,
            "after": self.after,
            "mode": self.mode.value,
        }


def _sort_spec(sort: tuple[SortColumn, ...]) -> str:
    # Column names may hold commas: escape them, or ["a,b"] and ["a", "b"] would share
    # one spec, hence one index, one view shape and one cursor binding.
    return ",".join(c.spec.replace("\\", "\\\\").replace(",", "\\,") for c in sort)


def _parse_sort(raw: Any, limits: QueryLimits) -> tuple[SortColumn, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidQuery("sort", 'sort is an array of column names, e.g. ["-priority"]')
    if len(raw) > limits.max_sort:
        raise InvalidQuery("sort", f"at most {limits.max_sort} sort columns")
    cols: list[SortColumn] = []
    for i, spec in enumerate(raw):
        part = f"sort[{i}]"
        if not isinstance(spec, str):
            raise InvalidQuery(part, 'a sort column is a string such as "-priority"')
        descending = spec.startswith("-")
        name = spec[1:] if descending else spec
        path = parse_column(name, part)
        if any(c.name == name for c in cols):
            raise InvalidQuery(part, f"column {name!r} appears twice")
        cols.append(SortColumn(name, path, descending))
    return tuple(cols)


def _parse_limit(raw: Any, mode: Mode, limits: QueryLimits) -> int:
    if raw is None:
        if mode is Mode.WINDOW:
            raise InvalidQuery("limit", "window mode needs a limit")
        return limits.max_limit
    if type(raw) is not int or not 1 <= raw <= limits.max_limit:
        raise InvalidQuery("limit", f"limit is an integer from 1 to {limits.max_limit}")
    return raw


def parse_query(
    obj: Any,
    *,
    signer: CursorSigner | None,
    limits: QueryLimits = QueryLimits(),  # noqa: B008 - frozen, so sharing it is safe
    entity: str | None = None,
    allow_mode: bool = True,
) -> Query:
    """Validate a query object. `entity` given means it comes from elsewhere (a URL path)."""
    if not isinstance(obj, dict):
        raise InvalidQuery("query", "a query must be a JSON object")
    allowed = _KEYS if allow_mode else _KEYS - {"mode"}
    if entity is not None:
        allowed = allowed - {"entity"}
    for key in obj:
        if key not in allowed:
            raise InvalidQuery(str(key), f"unknown query field {key!r}")
    ent = check_entity(entity if entity is not None else obj.get("entity"))
    try:
        mode = Mode(obj.get("mode", "window"))
    except (ValueError, TypeError) as e:
        raise InvalidQuery("mode", 'mode is "window" or "changes"') from e
    where = parse_where(obj.get("where"), limits)
    sort = _parse_sort(obj.get("sort"), limits)
    limit = _parse_limit(obj.get("limit"), mode, limits)
    after = obj.get("after")
    position = None
    sort_spec = _sort_spec(sort)
    if after is not None:
        if mode is Mode.CHANGES:
            raise InvalidQuery("after", "after is not allowed in changes mode")
        if signer is None:
            raise InvalidQuery("after", "cursors are not accepted here")
        position = signer.open(after, ent, sort_spec, limits.max_cursor_bytes)
    where_json = obj.get("where") or {}
    # Every part is validated plain JSON by now (operands by strict_json), so this encodes.
    shape = canonical(
        [ent, where_json, sort_spec, limit, position.hex() if position else None, mode.value]
    )
    return Query(
        entity=ent,
        where=where,
        where_json=where_json,
        sort=sort,
        limit=limit,
        after=after,
        position=position,
        mode=mode,
        matches=fused(canonical(where_json), where),
        sort_key=make_sort_key(sort),
        shape=shape,
    )
