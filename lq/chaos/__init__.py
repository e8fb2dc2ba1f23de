"""`lq chaos`: the published proof. Real Redis, shards and gateways, faults injected at
seeded times, and every live list of every client checked against an oracle.

Modules: `command` (flags, the entry), `runner` (orchestration), `schedule` (the seeded
fault timeline, pure), `faults` (injecting them), `proxy` (the TCP proxy between a shard
and Redis), `redis_nodes` + `resp` (standalone Redis and a Redis Cluster with replicas),
`procs` (shard and gateway processes), `writer` + `model` (the acknowledged writes),
`clients` (WebSocket, SSE and long polling), `check` (the per-message and per-list
rules, pure), `oracle` (the query oracle, pure), `report` (the table).

Nothing is imported here, so `lq.chaos.oracle` imports without the `bench` extra.
"""

__all__: list[str] = []
