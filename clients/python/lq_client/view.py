"""A live list: PROTOCOL.md section 3 applied exactly, and checked.

Pure (no I/O, the standard library only, nothing of `lq_client` but `_checks`), so it
can be imported where neither `websockets` nor `httpx` is installed. It is the one
applier of the protocol: this client, the gateway's mirror of each subscription and the
simulated subscriber of the server's tests all apply live messages with it.

Invariant: `apply` either moves the list to exactly what the protocol says, or raises
`ProtocolViolation` and leaves the list as it was (the caller then starts the
subscription over, drops its copy, or records the violation). It checks what a client
may rely on: `seq` grows by exactly one (unless the messages are not numbered yet), a
subscription starts with `reset`, indexes and ids agree, a window never holds more than
`limit` rows, a row is never entered or matched twice, no change reaches the list twice
(an `update`, `move` or `unmatch` of a held row carries a newer version than the list
holds, a `leave` never an older one), a whole changes-mode list holds every row it
hears of, `synced` counts what the list holds and comes once after each `reset`, and
(with `verify`, the default) a window's `synced` and `check` carry the digest of the
list (`digest`, PROTOCOL.md section 3): a mismatch means the list diverged. `reason`
is the last `reset`'s reason.

State-diff resume (PROTOCOL.md section 3): after `restart`, a window list that was
synced (`resumable`) can be declared (`held`); the server's `resume` then keeps it (its
`count` must be the list's) in place of a `reset`, and the ops and the digested
`synced` that follow are checked like any others.

Log-position resume (PROTOCOL.md section 3, changes mode): the list keeps `pos`, the
log position of the last message applied that carried one (None after a `reset` until
one comes). After `restart`, a changes-mode list whose last `synced` was not truncated
(`resumable`) can name it (`held_pos`); the server's `resume` (echoing that pos) then
keeps the set, and until the next `synced` (`resuming`) a `match` is an upsert (never
to an older version than held) and an `unmatch` of a row not held is a no-op; that
`synced` must count exactly the set.

With `remember`, it also keeps the newest version of every row seen on the subscription,
so versions never go backwards across leaves and resets and no change since the last
reset comes twice, even for rows no longer held; that memory grows with every row that
ever passes through, so only a bounded run (a test) should ask for it.

`apply(m)` is `step(read(m))` after the `seq` check: `read` checks what a message says
by itself and builds its `Row`, `step` checks it against the list and applies it, so a
message applied to many lists (the gateway's mirrors) can be read once.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ._checks import DigestMismatch, ProtocolViolation, digest, elsewhere, no_row, not_newer

__all__ = ["Delta", "DigestMismatch", "ProtocolViolation", "Row", "ViewState", "digest",
           "read"]


class Row(NamedTuple):
    """One row of a live list: `values` as written, without `id`. Immutable."""

    id: str
    version: int
    values: dict[str, Any]
    cursor: str | None = None


Delta = tuple[str, str, int, Any, Any, Row | None, Any, bool, str | None]
"""One message as `read` found it: (op, id, version, from, to, row, count, truncated,
pos); `pos` is the changes-mode log position the message carries (None: none);
`from`/`to` are ints or None where the message has none, `row` is None for `reset`,
`synced`, `check`, `leave` and `unmatch`, `count` and `truncated` are those of `synced`
(and `check`). For `reset` the id slot holds the reason, for `synced` and `check` the
digest ("" when the message has none). A plain tuple: the gateway builds one per delta."""

_RESET: Delta = ("reset", "", 0, None, None, None, None, False, None)


def _text(value: Any) -> str:
    return value if type(value) is str else ""
# tuple.__new__ builds a Row several times faster than the NamedTuple's own __new__ (a
# Python function) would: the gateway builds one per delta.
_tuple = tuple.__new__


def _pos(m: dict[str, Any]) -> str | None:
    pos = m.get("pos")
    if pos is not None and type(pos) is not str:
        raise ProtocolViolation(f"op {m.get('op')!r} with a pos that is not a string: {pos!r}")
    return pos


def read(m: dict[str, Any]) -> Delta:
    """What one live message says, checked for what it must carry whatever the list."""
    op = m.get("op")
    if op == "reset":
        reason = m.get("reason")
        return _RESET if reason is None else ("reset", _text(reason), 0, None, None, None,
                                              None, False, None)
    pos = _pos(m)
    if op == "synced" or op == "check" or op == "resume":
        return (op, _text(m.get("digest")), 0, None, None, None, m.get("count"),
                bool(m.get("truncated", False)), pos)
    rid = m.get("id")
    version = m.get("version")
    if type(rid) is not str or type(version) is not int or type(op) is not str:
        raise ProtocolViolation(f"op {op!r} without a string id and an integer version: {m}")
    src = m.get("from")
    to = m.get("to")
    if op == "enter":
        if src != -1 or type(to) is not int:
            raise ProtocolViolation(f"enter of {rid!r} from {src} to {to}")
    elif op == "leave":
        if type(src) is not int or to != -1:
            raise ProtocolViolation(f"leave of {rid!r} from {src} to {to}")
        return (op, rid, version, src, to, None, None, False, pos)
    elif op == "move" or (op == "update" and (src is not None or to is not None)):
        if type(src) is not int or type(to) is not int or (op == "update" and src != to):
            raise ProtocolViolation(f"{op} of {rid!r} from {src} to {to}")
    values = m.get("row")  # an unknown op goes on too: no list takes it
    if type(values) is not dict:
        if op == "unmatch":  # null when the row was deleted
            return (op, rid, version, None, None, None, None, False, pos)
        raise ProtocolViolation(f"{op} of {rid!r} without a row object")
    return (op, rid, version, src, to, _tuple(Row, (rid, version, values, m.get("cursor"))),
            None, False, pos)


class ViewState:
    """The list of one subscription on one connection.

    `numbered=False` applies messages that carry no `seq` (the gateway applies deltas
    before it numbers them); `remember=True` adds the checks that need the version of
    every row ever seen (see the module docstring); `verify=False` skips the digest
    checks (the gateway's mirror, which hashes only the snapshots it serves).
    """

    __slots__ = ("by_id", "limit", "numbered", "pos", "reason", "remember", "resumable",
                 "resuming", "rows", "seq", "since_reset", "started", "synced", "truncated",
                 "verify", "versions", "window")

    def __init__(self, window: bool, limit: int | None, *, numbered: bool = True,
                 remember: bool = False, verify: bool = True) -> None:
        self.window = window
        self.limit = limit
        self.numbered = numbered
        self.remember = remember
        self.verify = verify
        self.reason = ""  # the last reset's reason ("" when it gave none)
        self.rows: list[Row] = []  # window mode, in order
        self.by_id: dict[str, Row] = {}  # every row held, in both modes
        self.seq = 0
        self.synced = False
        self.started = False
        self.resumable = False  # synced (not truncated) since its last reset or resume
        self.resuming = False  # changes mode: between a `resume` and its `synced`
        self.pos: str | None = None  # changes mode: the last log position applied
        self.truncated = False
        self.versions: dict[str, int] = {}  # remember: the newest version of each row seen
        self.since_reset: dict[str, int] = {}  # remember: the same since the last reset

    def restart(self) -> None:
        """A new subscription on a new connection: seq starts again, a reset is due."""
        self.seq = 0
        self.started = False
        self.synced = False
        self.versions = {}

    def drop(self) -> None:
        """Forget the list (a holder that stops trusting its copy): nothing applies until
        the next reset."""
        self.rows = []
        self.by_id = {}
        self.started = False
        self.synced = False
        self.resumable = False
        self.resuming = False
        self.pos = None

    def held(self) -> list[tuple[str, int]] | None:
        """The (id, version) pairs to declare in a resume (window mode); None when not
        `resumable`."""
        return [(r.id, r.version) for r in self.rows] if self.resumable and self.window \
            else None

    def held_pos(self) -> str | None:
        """The log position to resume from (changes mode); None when not `resumable`."""
        return self.pos if self.resumable and not self.window else None

    def current(self) -> list[Row]:
        return list(self.rows) if self.window else list(self.by_id.values())

    def digest(self) -> str:
        """The window digest of the list as it is (window mode)."""
        return digest((r.id, r.version) for r in self.rows)

    def apply(self, m: dict[str, Any]) -> None:
        if self.numbered:
            seq = m.get("seq")
            if seq != self.seq + 1:
                raise ProtocolViolation(f"seq {seq} after {self.seq}")
            self.seq = seq
        self.step(read(m))

    def step(self, d: Delta) -> None:
        """Apply one message `read` has checked: `apply` without the `seq` check."""
        op = d[0]
        if not self.started and op != "reset" and op != "resume":
            raise ProtocolViolation(f"the first message is {op!r}, not reset")
        if self.window:  # the most frequent first: the gateway runs this per delta
            if op == "update" or op == "move":
                self._move(d)
            elif op == "enter":
                self._enter(d)
            elif op == "leave":
                self._leave(d)
            else:
                self._control(d)
            return
        if op == "update" or op == "unmatch":
            self._change(d)
        elif op == "match":
            self._match(d)
        else:
            self._control(d)
            return
        if d[8] is not None:
            self.pos = d[8]

    def _control(self, d: Delta) -> None:
        op, text, _, _, _, _, count, truncated, _ = d
        if op == "reset":
            self.reason = text
            self.started = True
            self.resumable = False
            self.synced = False
            self.truncated = False
            self.rows = []
            self.by_id = {}
            self.since_reset = {}
            self.resuming = False
            self.pos = None
        elif op == "resume":
            self._resume(d)
        elif op == "synced":
            if count != len(self.by_id):
                raise ProtocolViolation(f"synced count {count}, the list holds "
                                        f"{len(self.by_id)}")
            if self.synced:
                raise ProtocolViolation("synced again without a reset")
            if self.window and self.verify and text:
                self._verify(op, text)
            self.synced = True
            self.resumable = not truncated
            self.truncated = truncated
            self.resuming = False
            if not self.window:
                self.pos = d[8]
        elif op == "check" and self.window:
            if not self.synced:
                raise ProtocolViolation("check before synced")
            if count != len(self.rows):
                raise DigestMismatch(f"check count {count}, the list holds {len(self.rows)}")
            if self.verify:
                self._verify(op, text)
        else:
            mode = "window" if self.window else "changes"
            raise ProtocolViolation(f"op {op!r} in {mode} mode")

    def _resume(self, d: Delta) -> None:
        """`resume`: the window's declared list (its `count`), or the changes-mode set at
        the log position it echoes, is kept; a changes-mode resume is `resuming`."""
        if self.window:
            count = d[6]
            if self.started or not self.resumable or count != len(self.rows):
                raise ProtocolViolation(f"resume of {count} rows, the list holds "
                                        f"{len(self.rows)} (resumable: {self.resumable}, "
                                        f"started: {self.started})")
        elif self.started or not self.resumable or d[8] is None or d[8] != self.pos:
            raise ProtocolViolation(f"resume from {d[8]!r}, the list is at {self.pos!r} "
                                    f"(resumable: {self.resumable}, started: {self.started})")
        self.started = True
        self.resumable = False
        self.resuming = not self.window
        self.since_reset = {}

    def _verify(self, op: str, expected: str) -> None:
        mine = self.digest()
        if mine != expected:
            raise DigestMismatch(f"{op} digest {expected}, the list of {len(self.rows)} "
                                 f"rows has {mine}")

    def _move(self, d: Delta) -> None:
        """Window mode's `update` (in place) or `move`."""
        op, rid, version, src, to, row, _, _, _ = d
        rows = self.rows
        n = len(rows)
        if src is None or not 0 <= src < n:
            raise ProtocolViolation(f"{op} of {rid!r} from {src}: outside a list of {n}")
        old = rows[src]
        if old.id != rid:
            raise elsewhere(op, rid, src, old)
        if not 0 <= to < n:
            raise ProtocolViolation(f"{op} of {rid!r} to {to} in a list of {n}")
        if version <= old.version:
            raise not_newer(op, rid, old.version, version)
        if row is None:
            raise no_row(op, rid)
        if self.remember:
            self._seen(op, rid, version, True)
        if to == src:
            rows[to] = row
        else:
            del rows[src]
            rows.insert(to, row)
        self.by_id[rid] = row

    def _enter(self, d: Delta) -> None:
        op, rid, version, _, to, row, _, _, _ = d
        n = len(self.rows)
        if not 0 <= to <= n:
            raise ProtocolViolation(f"enter of {rid!r} at {to} into a list of {n}")
        if rid in self.by_id:
            raise ProtocolViolation(f"enter of {rid!r}, already in the list")
        if self.limit is not None and n >= self.limit:
            raise ProtocolViolation(f"enter of {rid!r}: a list of {n + 1} exceeds limit "
                                    f"{self.limit}")
        if row is None:
            raise no_row(op, rid)
        if self.remember:
            self._seen(op, rid, version, False)
        self.rows.insert(to, row)
        self.by_id[rid] = row

    def _leave(self, d: Delta) -> None:
        op, rid, version, src, _, _, _, _, _ = d
        rows = self.rows
        if not 0 <= src < len(rows):
            raise ProtocolViolation(f"leave of {rid!r} from {src}: outside a list of "
                                    f"{len(rows)}")
        old = rows[src]
        if old.id != rid:
            raise elsewhere(op, rid, src, old)
        if version < old.version:  # an eviction's leave repeats the version held
            raise not_newer(op, rid, old.version, version)
        if self.remember:
            self._seen(op, rid, version, False)
        del rows[src]
        del self.by_id[rid]

    def _match(self, d: Delta) -> None:
        op, rid, version, _, _, row, _, _, _ = d
        old = self.by_id.get(rid)
        if old is not None and not self.resuming:
            raise ProtocolViolation(f"match of {rid!r}, already matched")
        if old is not None and version < old.version:  # a resume's upsert
            raise not_newer(op, rid, old.version, version)
        if row is None:
            raise no_row(op, rid)
        if self.remember:
            self._seen(op, rid, version, self.synced and not self.resuming)
        self.by_id[rid] = row

    def _change(self, d: Delta) -> None:
        """Changes mode's `update` or `unmatch`."""
        op, rid, version, _, _, row, _, _, _ = d
        old = self.by_id.get(rid)
        resumed = self.resuming and op == "unmatch"  # a resume's: a no-op if not held
        if old is not None:
            if version < old.version or (version == old.version and not resumed):
                raise not_newer(op, rid, old.version, version)
        elif not self.truncated and not resumed:  # a truncated snapshot holds only some
            raise ProtocolViolation(f"{op} of {rid!r}, not matched")
        if op == "update":
            if row is None:
                raise no_row(op, rid)
            if self.remember:
                self._seen(op, rid, version, True)
            self.by_id[rid] = row
            return
        if self.remember:
            self._seen(op, rid, version, not resumed)
        if old is not None:
            del self.by_id[rid]

    def _seen(self, op: str, rid: str, version: int, live: bool) -> None:
        """The remembered checks: an enter, a leave or a snapshot's match may repeat a
        version (a promotion or eviction of an unchanged row), a live change never does."""
        last = self.versions.get(rid)
        if last is not None and version < last:
            raise ProtocolViolation(f"{op} of {rid!r}: its version went back "
                                    f"{last} -> {version}")
        seen = self.since_reset.get(rid)
        if live and seen is not None and version <= seen:
            raise ProtocolViolation(f"{op} of {rid!r} v{version} again since the reset "
                                    f"(already had v{seen}): a duplicate")
        self.versions[rid] = version
        self.since_reset[rid] = version
