"""The shard runtime: membership, fenced ownership, claims, tailing, control, publishing."""

from .service import ServiceState, ShardService

__all__ = ["ServiceState", "ShardService"]
