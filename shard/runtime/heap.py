"""The shard's heap and Python's cyclic garbage collector.

A shard's heap is dominated by the rows of its collections: one `(version, values)`
tuple per row, which CPython keeps tracked by the cyclic collector because it holds a
dict. Every full (oldest generation) collection walks all of them: with a million rows
held, one pass takes 0.6 s on an idle 2-core box and over 2 s on a busy one, and a
claim that loads that many rows triggers about ten such passes. While a pass runs, the
event loop stops, lease renewals among the rest; past the lease TTL the shard loses
every lease it holds, drops every partition and claims them all again, which loads
again: a failover that never ends (measured by `lq bench failover`).

Invariants:
- `loaded()` (after a collection is loaded) moves every object tracked so far into the
  collector's permanent generation (`gc.freeze`): full passes no longer walk the rows
  already held, so their cost stays bounded by what was allocated since the last load.
  Rows are plain JSON values and never form reference cycles, so they are still freed
  by reference counting as soon as their collection is dropped or evicted;
- `released()` (after partitions are dropped or collections evicted) gives frozen
  objects back to the collector (`gc.unfreeze`), so any cyclic garbage frozen with the
  rows (an exception's traceback, say) is collected by a later full pass instead of
  being kept for the life of the process;
- a `Heap(freeze=False)` does nothing (tests, embedding processes that own the GC).
"""

from __future__ import annotations

import gc

__all__ = ["Heap"]


class Heap:
    def __init__(self, freeze: bool = True) -> None:
        self.freeze = freeze
        self.freezes = 0  # how many times loaded rows were frozen

    def loaded(self) -> None:
        """A collection was loaded: keep what is held out of full collections."""
        if self.freeze:
            gc.freeze()
            self.freezes += 1

    def released(self) -> None:
        """Collections were dropped or evicted: let the collector see everything again."""
        if self.freeze and gc.get_freeze_count():
            gc.unfreeze()
