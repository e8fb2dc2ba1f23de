"""The rules every client of a chaos run applies to every live message (PROTOCOL.md
section 3), and what it keeps for the list checks. Pure: no I/O, no clock (times are
passed in).

A `SubCheck` follows one subscription of one client over its whole run, through every
connection it had (a *life*: one subscription on one connection, where `seq` starts at
1). It is stricter than the client's own applier, whose structural checks it reuses
(`lq_client.view.ViewState`), and sorts what it finds into kinds:

- `gap`: `seq` skipped a number (a message was lost and no reset covered it);
- `duplicate`: `seq` repeated or went back, or a live change (`update`, `move`,
  `unmatch`, a `match` after `synced`) carried a version the subscription already had
  since its last reset;
- `stale`: a row's version went back, across resets and reconnects too (recorded as a
  *rewind*; the runner excuses one whose newer version Redis lost, or may have lost,
  in a fault, and counts the rest);
- `over_limit`: an `enter` into a full window;
- `protocol`: anything else `ViewState` refuses (an index or id that does not agree,
  `synced` with a wrong count, no `reset` first...);
- `divergence`: the list did not equal the oracle (decided by the runner, `compare`).

After a violation the subscription is *broken*: nothing more is applied until the
client starts it over (a new life), so one fault is counted once, not once per message
after it. Every `synced` leaves a `Snapshot` of the list for the runner to compare.

A reconnect keeps a synced window list and declares it (`subscribe_message`: a
state-diff resume, PROTOCOL.md section 3); the server's `resume` then takes the place
of a `reset` (a *restart* of the list, as far as the runner's checks go: the ops that
follow and the digested `synced` are checked like a snapshot), and is counted apart.
A life started over after a violation declares nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lq_client.view import ProtocolViolation, ViewState, read

__all__ = ["KINDS", "Anomaly", "Rewind", "Snapshot", "SubCheck"]

KINDS = ("gap", "duplicate", "stale", "over_limit", "protocol", "divergence")
_LIVE_CHANGES = frozenset({"update", "move", "unmatch"})

Listed = tuple[tuple[str, int, dict[str, Any]], ...]  # (id, version, values) in list order


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: str
    sub: str
    t: float
    detail: str


@dataclass(frozen=True, slots=True)
class Rewind:
    """A row's version went back from `newer` to `older` at `t`."""

    sub: str
    row: str
    newer: int
    older: int
    t: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The list at a `synced`: `reset_t` and `t` (wall clock, s) bound its version."""

    sub: str
    reset_t: float
    t: float
    rows: Listed
    truncated: bool


@dataclass
class SubCheck:
    name: str
    tenant: str
    query: dict[str, Any]
    anchor: tuple[str, dict[str, Any]] | None = None  # the `after` cursor's row
    seq: int = 0
    lives: int = 0
    broken: bool = False
    messages: int = 0
    anomalies: list[Anomaly] = field(default_factory=list)
    rewinds: list[Rewind] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)  # taken by the runner
    resets: list[float] = field(default_factory=list)  # times of every reset
    reset_reasons: list[str] = field(default_factory=list)  # their reasons, in order
    resumes: list[float] = field(default_factory=list)  # times of every resume
    declared: int = 0  # lives that declared their list (a resume asked for)
    misses: int = 0  # of those, answered with a reset (`resume_miss`)
    reasons: Counter[str] = field(default_factory=Counter)  # resets by their reason
    synced: list[float] = field(default_factory=list)  # times of every synced
    versions: dict[str, int] = field(default_factory=dict)  # newest seen, whole run
    since_reset: dict[str, int] = field(default_factory=dict)
    reset_t: float = 0.0
    view: ViewState = field(init=False)

    def __post_init__(self) -> None:
        window = self.query.get("mode", "window") == "window"
        self.view = ViewState(window, self.query.get("limit"), numbered=False)

    @property
    def is_synced(self) -> bool:
        return self.view.synced and not self.broken

    def listed(self) -> Listed:
        return tuple((r.id, r.version, r.values) for r in self.view.current())

    @property
    def restarts(self) -> list[float]:
        """Times the list was derived anew from the server's state: resets and resumes."""
        return sorted(self.resets + self.resumes)

    def new_life(self, keep: bool = False) -> None:
        """A new subscription on a new connection (or a start over): seq from 1, a reset
        due first, or a resume when `keep` and the list was synced and trusted."""
        self.seq = 0
        self.lives += 1
        if keep and not self.broken:
            self.view.restart()
        else:
            self.view.drop()
        self.broken = False

    def declaration(self, max_bytes: int = 60_000) -> list[tuple[str, int]] | None:
        """The rows to declare for a resume: the list when it is synced, trusted (not
        broken) and its declaration fits `max_bytes` (the frame maximum, with room, or
        a URL's), else None. Counted in `declared` by the caller that sends it."""
        rows = None if self.broken else self.view.held()
        if rows is None or sum(2 * len(i.encode()) + 24 for i, _ in rows) >= max_bytes:
            return None
        return rows

    def subscribe_message(self, wire: str) -> dict[str, Any]:
        """The WebSocket subscribe of a new life named `wire`, with its declaration."""
        message: dict[str, Any] = {"type": "subscribe", "sub": wire, "query": self.query}
        rows = self.declaration()
        if rows is not None:
            message["resume"] = {"rows": rows}
            self.declared += 1
        return message

    def _flag(self, kind: str, t: float, detail: str) -> None:
        self.anomalies.append(Anomaly(kind, self.name, t, detail))
        self.broken = True

    def apply(self, m: dict[str, Any], t: float) -> None:
        """Check and apply one live message received at `t`."""
        self.messages += 1
        seq = m.get("seq")
        if type(seq) is not int:
            self._flag("protocol", t, f"a live message without an integer seq: {m}")
            return
        if seq <= self.seq:
            self.anomalies.append(Anomaly("duplicate", self.name, t,
                                          f"seq {seq} after {self.seq}: {m.get('op')}"))
            return
        prev, self.seq = self.seq, seq
        op = m.get("op")
        if seq > prev + 1:
            self._flag("gap", t, f"seq {seq} after {prev}: {op}")
        if op == "reset":
            self.broken = False
            self.since_reset = {}
            self.reset_t = t
            self.resets.append(t)
            self.reset_reasons.append(str(m.get("reason", "unknown")))
            self.reasons[self.reset_reasons[-1]] += 1
            self.misses += m.get("reason") == "resume_miss"
        elif op == "resume" and not self.broken:
            self.since_reset = {}
            self.reset_t = t
            self.resumes.append(t)
        elif self.broken:
            return
        if not self._versions(m, op, t):
            return
        if (op == "enter" and self.view.window and self.view.limit is not None
                and len(self.view.rows) >= self.view.limit):
            self._flag("over_limit", t, f"enter of {m.get('id')!r} into a full window of "
                       f"{self.view.limit}")
            return
        try:
            self.view.step(read(m))
        except ProtocolViolation as e:
            self._flag("protocol", t, str(e))
            return
        if op == "synced":
            self.synced.append(t)
            self.snapshots.append(Snapshot(self.name, self.reset_t, t, self.listed(),
                                           self.view.truncated))

    def _versions(self, m: dict[str, Any], op: Any, t: float) -> bool:
        """The version rules; False when the message must not be applied."""
        rid, version = m.get("id"), m.get("version")
        if type(rid) is not str or type(version) is not int:
            return True  # reset, synced, or malformed: ViewState says which
        last = self.versions.get(rid)
        if last is not None and version < last:
            self.rewinds.append(Rewind(self.name, rid, last, version, t))
        live = op in _LIVE_CHANGES or (op == "match" and self.view.synced)
        seen = self.since_reset.get(rid)
        if live and seen is not None and version <= seen:
            self._flag("duplicate", t, f"{op} of {rid!r} v{version} again since the reset "
                       f"(had v{seen})")
            return False
        self.versions[rid] = max(version, last or version)
        self.since_reset[rid] = version
        return True
