"""The fault timeline of a chaos run: a pure function of the run's settings and seed.

Invariants: `plan(settings)` draws from `random.Random(seed)` only, so the same seed and
settings give the same timeline, fault for fault (what is injected, when, where, how
long); every kind asked for comes at least once when the run is long enough to space
them `every` seconds apart, more often otherwise never; faults are sorted by time and
lie inside the load phase, leaving its last `settle` seconds free; the plan follows the
shard set through its own adds and removes, so a target always names a shard that runs
at that point of the plan, and the shard count stays within one of where it started
(never below one).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["ALL_KINDS", "CLUSTER_ONLY", "STANDALONE_ONLY", "Fault", "PlanSettings", "plan"]

ALL_KINDS = ("kill", "term", "stop", "partition", "gateway", "slow-client", "redis",
             "failover", "add-shard", "remove-shard")
STANDALONE_ONLY = frozenset({"partition"})  # the proxy sits between a shard and one Redis
CLUSTER_ONLY = frozenset({"failover"})
PARTITION_MODES = ("cut", "blackhole", "slow")


@dataclass(frozen=True, slots=True)
class PlanSettings:
    seed: int
    duration: float  # seconds of load, faults included
    kinds: tuple[str, ...]
    shards: int
    gateways: int
    slow_clients: tuple[str, ...]  # the clients a slow-consumer fault may pause
    lease_s: float  # the shards' lease TTL: how long a pause must last to lapse it
    warmup: float = 3.0
    settle: float = 8.0
    every: float = 6.0  # the smallest spacing between two faults


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: at `t` seconds into the load, `kind` on `target` for `duration`
    seconds (0: instantaneous), with a `mode` (partition: cut/blackhole/slow;
    slow: `delay_ms`)."""

    t: float
    kind: str
    target: str
    duration: float = 0.0
    mode: str = ""
    delay_ms: int = 0

    def describe(self) -> str:
        extra = f" {self.mode}" if self.mode else ""
        extra += f" +{self.delay_ms}ms" if self.delay_ms else ""
        extra += f" for {self.duration:.1f}s" if self.duration else ""
        return f"{self.kind} {self.target}{extra}"


def _order(rng: random.Random, kinds: tuple[str, ...], count: int) -> list[str]:
    """Each kind once (shuffled), then seeded draws up to `count`."""
    first = list(kinds)
    rng.shuffle(first)
    return first + [rng.choice(kinds) for _ in range(count - len(first))]


class _Planner:
    """The plan's view of the cluster as its faults change it."""

    def __init__(self, s: PlanSettings, rng: random.Random) -> None:
        self.s = s
        self.rng = rng
        self.shards = [f"shard-{i}" for i in range(s.shards)]
        self.next_shard = s.shards
        self.modes = list(PARTITION_MODES)
        rng.shuffle(self.modes)
        self.partitions = 0

    def fault(self, t: float, kind: str) -> Fault:
        s, rng = self.s, self.rng
        # the shard count stays within one of the starting count (and at least one)
        if kind == "remove-shard" and len(self.shards) <= max(1, s.shards - 1):
            kind = "add-shard"
        elif kind == "add-shard" and len(self.shards) > s.shards:
            kind = "remove-shard"
        if kind == "add-shard":
            target = f"shard-{self.next_shard}"
            self.next_shard += 1
            self.shards.append(target)
            return Fault(t, kind, target)
        if kind == "remove-shard":
            target = rng.choice(self.shards)
            self.shards.remove(target)
            return Fault(t, kind, target)
        if kind in ("kill", "term"):
            return Fault(t, kind, rng.choice(self.shards))
        if kind == "stop":
            pause = round(s.lease_s + 1.0 + rng.uniform(0, s.lease_s), 2)
            return Fault(t, kind, rng.choice(self.shards), duration=pause)
        if kind == "partition":
            mode = self.modes[self.partitions % len(self.modes)]
            self.partitions += 1
            lasting = round(rng.uniform(0.5, 2.0) * s.lease_s, 2)
            delay = rng.choice([50, 150, 400]) if mode == "slow" else 0
            return Fault(t, kind, rng.choice(self.shards), lasting, mode, delay)
        if kind == "gateway":
            return Fault(t, kind, f"gateway-{rng.randrange(s.gateways)}")
        if kind == "slow-client":
            pause = round(rng.uniform(3.0, 8.0), 2)
            return Fault(t, kind, rng.choice(s.slow_clients), pause)
        if kind in ("redis", "failover"):
            lag = round(rng.uniform(0.2, 0.6), 2) if kind == "failover" else 0.0
            return Fault(t, kind, f"third-{rng.randrange(3)}", duration=lag)
        raise ValueError(f"unknown fault kind {kind!r}")


def plan(s: PlanSettings) -> list[Fault]:
    """The faults of a run, in time order (see the module docstring)."""
    rng = random.Random(s.seed)
    if not s.kinds:
        return []
    span = s.duration - s.warmup - s.settle
    if span <= 0:
        raise ValueError("the run is too short for faults: raise --duration")
    count = max(len(s.kinds), int(span // s.every))
    slot = span / count
    planner = _Planner(s, rng)
    return [planner.fault(round(s.warmup + i * slot + rng.uniform(0, 0.3 * slot), 2), kind)
            for i, kind in enumerate(_order(rng, s.kinds, count))]
