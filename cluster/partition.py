"""Partitions and rendezvous (highest random weight) ownership.

`partition_of` puts every row and every subscription of one (tenant, entity) into one of
`PARTITIONS` partitions. `owner` is pure in the live set: every process computes the same
owner without a coordinator, and removing a shard moves only that shard's partitions,
because every other shard's weight for a partition is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

import mmh3

__all__ = ["PARTITIONS", "owned_partitions", "owner", "partition_of", "weight"]

PARTITIONS = 256


def partition_of(tenant: str, entity: str) -> int:
    """The partition of a (tenant, entity): mmh3 64-bit of `tenant\\0entity` mod 256."""
    h, _ = mmh3.hash64(f"{tenant}\0{entity}".encode(), signed=False)
    return int(h % PARTITIONS)


def weight(shard_id: str, p: int) -> int:
    """The HRW weight of `shard_id` for partition `p`."""
    h, _ = mmh3.hash64(f"{shard_id}\0{p}".encode(), signed=False)
    return int(h)


def owner(p: int, live: Iterable[str]) -> str | None:
    """The live shard with the highest weight for `p`, ties to the smaller id; None if none."""
    best: tuple[int, str] | None = None
    for shard_id in live:
        w = weight(shard_id, p)
        if best is None or w > best[0] or (w == best[0] and shard_id < best[1]):
            best = (w, shard_id)
    return None if best is None else best[1]


def owned_partitions(shard_id: str, live: Iterable[str]) -> frozenset[int]:
    """The partitions `shard_id` owns among `live` (it need not be in `live` itself)."""
    shards = set(live) | {shard_id}
    return frozenset(p for p in range(PARTITIONS) if owner(p, shards) == shard_id)
