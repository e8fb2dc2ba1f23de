"""The `lq` command line: entry points, the `lq dev` supervisor and benchmarks.

Nothing imports this package; it sits on top of cluster, storage, shard and gateway.
"""

__all__: list[str] = []
