"""Every Redis key name lq uses, and nothing else builds one.

Invariant: all keys of partition `p` carry the hash tag `{p}` and membership keys carry
`{m}`, so every Lua script touches one slot and the design runs unchanged on Redis
Cluster. Entity names cannot contain `:`, so `rows` keys parse back unambiguously.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_PREFIX", "Keys"]

DEFAULT_PREFIX = "lq"
"""The default key prefix: `StorageSettings.prefix` takes its default from here."""


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix; processes take it from `StorageSettings.prefix`
    (through the `storage.Storage` front), never from this default."""

    prefix: str = DEFAULT_PREFIX

    def rows(self, p: int, tenant: str, entity: str) -> str:
        """Hash of one (tenant, entity): id -> `<version>:<expiry ms>:<encoded values>`."""
        return f"{self.prefix}:rows:{{{p}}}:{tenant}:{entity}"

    def rows_tag(self, p: int) -> str:
        return f"{self.prefix}:rows:{{{p}}}:"

    def version(self, p: int) -> str:
        return f"{self.prefix}:ver:{{{p}}}"

    def events(self, p: int) -> str:
        return f"{self.prefix}:events:{{{p}}}"

    def ttl(self, p: int) -> str:
        return f"{self.prefix}:ttl:{{{p}}}"

    def subs(self, p: int) -> str:
        return f"{self.prefix}:subs:{{{p}}}"

    def epoch(self, p: int) -> str:
        return f"{self.prefix}:epoch:{{{p}}}"

    def lease(self, p: int) -> str:
        return f"{self.prefix}:lease:{{{p}}}"

    def shard(self, shard_id: str) -> str:
        return f"{self.prefix}:{{m}}:shard:{shard_id}"

    def members(self) -> str:
        return f"{self.prefix}:{{m}}:members"

    def changes(self) -> str:
        return f"{self.prefix}:{{m}}:changes"

    def cursor_key(self) -> str:
        return f"{self.prefix}:{{m}}:cursorkey"

    def gateway(self, gateway_id: str) -> str:
        return f"{self.prefix}:{{m}}:gateway:{gateway_id}"

    def gateways(self) -> str:
        return f"{self.prefix}:{{m}}:gateways"

    def gwsubs(self, gateway_id: str) -> str:
        return f"{self.prefix}:gwsubs:{gateway_id}"

    def ctrl(self, shard_id: str) -> str:
        return f"{self.prefix}:ctrl:{shard_id}"

    def delta(self, gateway_id: str) -> str:
        return f"{self.prefix}:delta:{gateway_id}"

    def ticket(self, digest: str) -> str:
        """A single-use ticket, by the SHA-256 of the ticket (never the ticket itself)."""
        return f"{self.prefix}:ticket:{digest}"
