"""The shard runtime: membership, fenced ownership, claims, tailing, control, publishing.

`ShardService` (service.py) is the entry point; `wiring.build` makes its parts. The
`Engine` (engine.py) is the one writer of the partitions and the matcher; each loop
(`loop_tail`, `loop_control`, `loop_ownership`, `loop_expiry`, `loop_hygiene`) calls its
methods. What the runtime needs of storage is declared in `ports`.
"""

from .service import ServiceState, ShardService

__all__ = ["ServiceState", "ShardService"]
