"""The acknowledged-write model: what each row held at each point of its partition's
history, as far as the writer knows it. Pure (no I/O).

Every write of a partition takes the next version (`max(counter + 1, Redis time in
µs)`, DESIGN.md section 2), so versions order a collection's history, and a snapshot is
the state as of one version V: every write at or below V applied, none above. A row's
history is a list of `Write`s in version order. A write is known exactly when the
gateway acknowledged it (or a read-back found it); it is *ambiguous* in `[since,
version]` when only an interval is known (a delete whose reply was lost, found gone by
a later read). A write with a TTL makes the row vanish at an unknown version at or
after `expires` (the owner's sweep deletes it through the write script). A *ghost* is a
write Redis once held and lost (a crash under `appendfsync everysec`, a Cluster
failover): a snapshot as of a version before the fault began may show it (versions are
Redis's time in µs, at least), no state after it does.

Invariant: `possible(V)` is every state the row may have been in as of V — one state
when the history is exactly known there, more around an ambiguous write, an expiry or
a ghost — and never leaves out the true one, as long as the writer is the only writer
of its rows and every unknown outcome was read back.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["ABSENT", "INF", "Model", "RowHistory", "State", "Write", "describe", "merge_patch"]

INF = 1 << 62
State = tuple[int, dict[str, Any]] | None  # (version, values) or None: absent
ABSENT: State = None


def merge_patch(target: dict[str, Any] | None, patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7396 merge of `patch` into `target` (the model's own copy, independent of
    the server's)."""
    out = dict(target or {})
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            inner = out.get(key)
            out[key] = merge_patch(inner if isinstance(inner, dict) else {}, value)
        else:
            out[key] = value
    return out


@dataclass(slots=True)
class Write:
    """One write of a row: the row's values after it (None: deleted)."""

    version: int
    values: dict[str, Any] | None
    expires: int | None = None  # a TTL: the row is gone at an unknown version >= this
    since: int | None = None  # ambiguous: happened somewhere in [since, version]
    acked: bool = True  # the gateway answered; False: found by reading back
    ghost: bool = False  # Redis lost it
    maybe_lost: bool = False  # Redis may have lost it: no scan can tell
    lost_at: int = INF  # when (µs, wall clock) the fault that lost it began

    @property
    def state(self) -> State:
        return None if self.values is None else (self.version, self.values)


def describe(w: Write) -> dict[str, Any]:
    """A write as JSON, for journals and divergence reports (values by a short hash)."""
    values = None if w.values is None else hashlib.sha1(
        json.dumps(w.values, sort_keys=True).encode()).hexdigest()[:8]
    return {"v": w.version, "values": values, "expires": w.expires, "since": w.since,
            "acked": w.acked, "ghost": w.ghost, "maybe_lost": w.maybe_lost,
            "lost_at": None if w.lost_at == INF else w.lost_at}


def _expiry(states: list[State], expires: int, v: int, now: int | None,
            grace: int) -> list[State]:
    """`states` with what a TTL expiring at `expires` adds as of `v` (or, with `now`,
    at the end of a quiet run: gone for sure past `expires + grace`)."""
    if now is None:
        return [*states, None] if expires <= v else states
    if now >= expires + grace:
        return [None]
    return [*states, None] if now >= expires else states


class RowHistory:
    """One row's writes in version order, with an index for lookups by version."""

    __slots__ = ("ambiguous", "keys", "marks", "writes")

    def __init__(self) -> None:
        self.writes: list[Write] = []
        self.keys: list[int] = []  # the versions of `writes`, for bisect
        self.ambiguous: list[Write] = []  # the writes with a `since`
        self.marks: list[int] = []  # every `since` and `expires`, sorted

    def add(self, w: Write) -> None:
        at = bisect.bisect(self.keys, w.version)
        self.writes.insert(at, w)
        self.keys.insert(at, w.version)
        if w.since is not None:
            self.ambiguous.append(w)
        for mark in (w.since, w.expires):
            if mark is not None:
                bisect.insort(self.marks, mark)

    def latest(self) -> Write | None:
        """The newest write that was not lost."""
        for w in reversed(self.writes):
            if not w.ghost:
                return w
        return None

    def versions(self) -> set[int]:
        return set(self.keys)

    def possible(self, v: int, now: int | None = None, grace: int = 0) -> list[State]:
        """The states the row may hold as of version `v` (see the module docstring).
        With `now` (µs) the question is about the end of a quiet run: ghosts are gone,
        and a TTL row is gone for sure past `expires + grace`, there for sure before
        `expires`."""
        base: Write | None = None
        maybe: list[Write] = []
        at = bisect.bisect(self.keys, v)
        while at > 0:  # back from v to the newest surviving write; ghosts on the way
            at -= 1
            w = self.writes[at]
            if not w.ghost:
                base = w
                break
            if now is None and v < w.lost_at:
                maybe.append(w)  # held until the loss: a snapshot before it may show it
        maybe += [w for w in self.ambiguous  # may already have happened
                  if w.version > v and w.since is not None and w.since <= v and not w.ghost]
        states: list[State] = [None if base is None else base.state]
        while base is not None and base.maybe_lost and (now is not None or v >= base.lost_at):
            base = self._before(base)  # it may never have survived the fault
            if base is None or base.state not in states:
                states.append(None if base is None else base.state)
        if base is not None and base.values is not None and base.expires is not None:
            states = _expiry(states, base.expires, v, now, grace)
        for w in maybe:
            if w.state not in states:
                states.append(w.state)
        return states

    def _before(self, w: Write) -> Write | None:
        """The newest write older than `w` that was not lost."""
        at = bisect.bisect_left(self.keys, w.version)
        while at > 0:
            at -= 1
            if not self.writes[at].ghost:
                return self.writes[at]
        return None

    def points(self, lo: int, hi: int) -> set[int]:
        """The versions in (lo, hi] at which `possible` may change."""
        out = set(self.keys[bisect.bisect(self.keys, lo):bisect.bisect(self.keys, hi)])
        out.update(self.marks[bisect.bisect(self.marks, lo):bisect.bisect(self.marks, hi)])
        return out


Key = tuple[str, str, str]  # tenant, entity, id


class Model:
    """Every row's history, by (tenant, entity, id); the writer is its one writer."""

    def __init__(self, journal: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.journal = journal  # told every write and every loss, for a post-mortem
        self.rows: dict[tuple[str, str], dict[str, RowHistory]] = {}
        self.lost: list[tuple[Key, Write]] = []  # acknowledged writes Redis lost
        self.unacked_lost = 0  # writes read back once and then lost
        self.maybe_lost = 0  # acknowledged writes Redis may have lost

    def history(self, tenant: str, entity: str, row_id: str) -> RowHistory:
        return self.rows.setdefault((tenant, entity), {}).setdefault(row_id, RowHistory())

    def collection(self, tenant: str, entity: str) -> dict[str, RowHistory]:
        return self.rows.get((tenant, entity), {})

    def current(self, tenant: str, entity: str, row_id: str) -> State:
        """The row's newest known state, ignoring expiry (what the writer builds on)."""
        w = self.history(tenant, entity, row_id).latest()
        return None if w is None else w.state

    def record(self, key: Key, w: Write) -> None:
        self.history(*key).add(w)
        if self.journal is not None:
            self.journal({"write": key, "t": time.time(), **describe(w)})

    def reconcile(self, key: Key, found: State, lost_at: int = INF,
                  now: int | None = None) -> list[Write]:
        """After a fault that began at `lost_at` (µs; INF: the end of the run, no fault)
        Redis holds `found` for the row at `now` (µs; nothing in flight on it). What
        survived is a prefix of the row's writes: every write made before the fault,
        then some of those made since. Each prefix whose last state *fits* `found` (that
        version; or, for a row that is gone, a delete or a TTL expired by `now`) may be
        the one: writes past the longest such prefix become ghosts (lost for sure);
        writes between the shortest and the longest are only *maybe* lost (a delete
        after a TTL that has expired since cannot be told from a lost one). A state no
        prefix explains is adopted as a read-back write, the fault's writes ghosts. The
        writes lost for sure. (Writes made after the fault could hide a loss: the writer
        pauses from the crash until the scan.)"""
        h = self.history(*key)
        live = [w for w in h.writes if not w.ghost]

        def fits(w: Write | None) -> bool:
            if found is None:
                return w is None or w.values is None or (
                    w.expires is not None and (now is None or w.expires <= now))
            return w is not None and w.version == found[0]

        first = next((i for i, w in enumerate(live) if w.version >= lost_at), len(live))
        cuts = [i for i in range(first - 1, len(live)) if fits(live[i] if i >= 0 else None)]
        if not cuts:  # lost further back than the fault (or with none): the newest fit
            cuts = [i for i in range(-1, len(live)) if fits(live[i] if i >= 0 else None)][-1:]
        low, high = (min(cuts), max(cuts)) if cuts else (-1, -1)
        lost = live[high + 1:]
        for w in lost:
            w.ghost, w.lost_at = True, min(lost_at, w.lost_at)
            if w.acked:
                self.lost.append((key, w))
            else:
                self.unacked_lost += 1
        maybe = live[low + 1:high + 1]
        for w in maybe:
            w.maybe_lost, w.lost_at = True, min(lost_at, w.lost_at)
        self.maybe_lost += sum(1 for w in maybe if w.acked)
        adopted = found is not None and found[0] not in h.versions()
        if found is not None and adopted:
            h.add(Write(found[0], found[1], acked=False))
        if self.journal is not None and (lost or maybe or adopted):
            self.journal({"scan": key, "t": time.time(), "lost_at": lost_at,
                          "found": None if found is None else found[0],
                          "lost": [w.version for w in lost],
                          "maybe": [w.version for w in maybe]})
        return lost
