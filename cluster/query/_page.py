"""One page of a one-shot query: the paging rule both answering paths share.

A one-shot query (`POST /v1/entities/{e}/query`) is answered either by scanning the
collection in Redis (`storage.run_query`) or from the owner shard's memory
(`shard.first_rows`). Both find the first `limit + 1` rows of the result strictly after
the query's position, in the total order (their sort keys ascending), and hand them
here. Invariants: a page holds at most `limit` rows, each with the cursor of its own
sort key signed under (entity, sort spec); `next` is the last row's cursor exactly when
a row beyond the page was found, else None. So the two paths give the same bytes for
the same rows (cursors are deterministic: HMAC over the position, zstd at one level).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ._cursor import CursorSigner
from ._model import Query

__all__ = ["QueryPage", "QueryRow", "Ranked", "page_of"]

Ranked = tuple[bytes, str, int, dict[str, Any]]
"""(sort key, row id, version, values) of one row of a result."""


@dataclass(frozen=True, slots=True)
class QueryRow:
    id: str
    version: int
    values: dict[str, Any]
    cursor: str


@dataclass(frozen=True, slots=True)
class QueryPage:
    rows: list[QueryRow]
    next: str | None

    def to_json(self) -> dict[str, Any]:
        """The HTTP answer's body (PROTOCOL.md section 7)."""
        rows = [{"id": r.id, "version": r.version, "row": r.values, "cursor": r.cursor}
                for r in self.rows]
        return {"rows": rows, "next": self.next}

    def encode(self) -> bytes:
        """`to_json` as JSON bytes: what the HTTP answer sends, whichever path made it."""
        return orjson.dumps(self.to_json())


def page_of(query: Query, signer: CursorSigner, ranked: Sequence[Ranked]) -> QueryPage:
    """The page of `query` from the first rows of its result after its position, in
    order; at most `limit + 1` of them (one more than the page says that more follow)."""
    if len(ranked) > query.limit + 1:
        raise ValueError("a page is made from at most limit + 1 rows")
    spec = query.sort_spec
    chosen = ranked[: query.limit]
    rows = [QueryRow(rid, ver, vals, signer.make(query.entity, spec, k))
            for k, rid, ver, vals in chosen]
    more = len(ranked) > query.limit
    return QueryPage(rows, rows[-1].cursor if more and rows else None)
