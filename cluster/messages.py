"""Message types shared by storage, shards and gateways (DESIGN.md section 5b).

`Change` is one entry of a partition's change log as the matcher consumes it.
`Registration` is one durable subscription in `lq:subs:{p}`; registry ids are
`<gateway-id>.<counter>` and never reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["Change", "Registration"]


@dataclass(frozen=True, slots=True)
class Change:
    """A write to one row: `values` is None for a delete. `stream_id` is its log position."""

    tenant: str
    entity: str
    id: str
    version: int
    values: dict[str, Any] | None
    stream_id: str = ""

    @property
    def deleted(self) -> bool:
        return self.values is None


@dataclass(frozen=True, slots=True)
class Registration:
    """A subscription as the registry keeps it: who, for whom, and the query JSON."""

    rid: str
    tenant: str
    gateway: str
    query: dict[str, Any]

    def encode(self) -> bytes:
        return orjson.dumps({"t": self.tenant, "g": self.gateway, "q": self.query})

    @classmethod
    def decode(cls, rid: str, data: bytes | str) -> Registration:
        obj = orjson.loads(data)
        return cls(rid=rid, tenant=obj["t"], gateway=obj["g"], query=obj["q"])
