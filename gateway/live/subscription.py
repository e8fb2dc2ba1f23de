"""One client subscription on this gateway: its fence, its numbering, its mirror.

The rules of delivery (the epoch fence and its lifecycle PENDING -> LIVE -> RESETTING
-> LIVE ..., CLOSED final) are `gateway.live.delivery.SubFence`'s; this class applies
what the fence admits to the mirror and hands it to the outbox.

Invariants (DESIGN.md sections 2 and 6, PROTOCOL.md rule 3):
- the client never sees a delta that does not follow from its current list: only what
  the fence admits goes on, and a newer epoch without its `reset` asks for a resync;
- this object is the one writer of its `seq`, `queued`, `behind` and `resets`; the
  outbox reports what happened to its deltas through the `outbox.Queued` methods, and
  the hub reads `resets` to know that a requested snapshot came;
- `seq` is given as messages leave the outbox, so it never restarts (but for `start_over`)
  and never skips; nothing goes to the client while `behind` (before `subscribed`, or
  after an overflow until the outbox has room to catch it up).
- a subscribe that declared its rows (`resume_from`) is `resuming` until its mirror is
  complete: the shard's reset and snapshot go to the mirror only, then the client gets
  one group, the resume (`resume.plan`: `resume`, the ops, `synced`) or, when the
  declaration cannot be right, the mirror's snapshot with reason `resume_miss`; no
  `check` is sent before it.
- a changes-mode subscribe that named a log position (`resume_at`) has its `pos` sent to
  the shard with the subscribe, which answers with a resume or a snapshot; that answer
  passes through as it is, except that what comes before `subscribed` is queued is
  `held` (`held.Held`) and handed over at the announce.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from cluster.query import Mode, Query

from .delivery import Phase, Source, SubFence, Verdict, starts
from .group import Group
from .held import Held
from .mirror import Mirror
from .outbox import Outbox
from .resume import Declared, plan
from .wire import compact

__all__ = ["Subscription"]


class Subscription:
    __slots__ = (
        "behind", "catch_up_reason", "check_s", "declared", "fence", "held", "mirror",
        "on_reset", "on_resumed", "outbox", "p", "query", "queued", "request_resync",
        "resets", "resume_pos", "resuming", "rid", "seq", "sub", "sub_json", "tenant",
    )

    def __init__(
        self,
        rid: str,
        sub: str,
        tenant: str,
        p: int,
        query: Query,
        outbox: Outbox,
        mirror_max_bytes: int,
        request_resync: Callable[[Subscription], None],
        on_reset: Callable[[str], None] | None = None,
        check_s: int | None = None,
    ) -> None:
        self.rid = rid
        self.sub = sub
        self.sub_json = compact(orjson.dumps(sub))  # kept: right-sized
        self.tenant = tenant
        self.p = p
        self.query = query
        self.outbox = outbox
        self.request_resync = request_resync
        window = query.mode is Mode.WINDOW
        self.mirror = Mirror(window, query.limit, mirror_max_bytes, query.sort_key)
        self.fence = SubFence()
        self.seq = 0
        self.queued = 0
        self.behind = True  # nothing goes to the client before `subscribed`
        self.resets = 0  # resets accepted so far
        self.on_reset = on_reset  # told the reason of every reset passed on to the client
        self.check_s = check_s  # window mode: a `check` about every that many seconds
        # what a reset from the mirror says: the first catch-up is the announce, which
        # serves the first snapshot when it came before `subscribed` was queued
        self.catch_up_reason = "subscribe"
        self.resuming = False  # the first snapshot is held back for a resume
        self.declared: Declared | None = None  # the rows the client declared
        self.on_resumed: Callable[[bool], None] | None = None
        self.resume_pos: str | None = None  # changes mode: the log position named
        self.held: Held | None = None  # its answer, until it has gone to the client

    def __repr__(self) -> str:
        return f"Subscription({self.rid!r}, sub={self.sub!r}, {self.fence.phase.value})"

    @property
    def phase(self) -> Phase:
        return self.fence.phase

    @property
    def closed(self) -> bool:
        return self.fence.closed

    # -- lifecycle (the live service and the hub)

    def announce(self) -> None:
        """`subscribed` has been queued: from now on its messages go to the client."""
        self.outbox.wait_for_room(self)

    def resume_from(self, declared: Declared | None,
                    on_resumed: Callable[[bool], None] | None = None) -> None:
        """Before the registration, or before `start_over`: the client declared its rows
        (None: a declaration that cannot be right), so the next snapshot it gets becomes
        a resume (or a miss)."""
        self.resuming = True
        self.declared = declared
        self.on_resumed = on_resumed

    def resume_at(self, pos: str, on_resumed: Callable[[bool], None] | None = None) -> None:
        """Before the registration: a changes-mode client named the log position it
        holds; the shard answers the subscribe (sent with it) by a resume or a miss."""
        self.resume_pos = pos
        self.held = Held()
        self.on_resumed = on_resumed

    def _answered(self, first: str, reason: str) -> None:
        """The shard's answer to a `resume_at` goes to the client: count it."""
        if self.on_resumed is not None:
            self.on_resumed(first == "resume")
        if first != "resume" and self.on_reset is not None:
            self.on_reset(reason or "unknown")

    def _hold(self, group: Group) -> None:
        """An admitted group while the answer to `resume_at` has not gone out yet."""
        assert self.held is not None
        if self.behind:  # before `subscribed`: kept for the announce
            if not self.held.keep(group.ops, group.bodies):
                self.held = None  # too much: a fresh snapshot instead
                self.fence.lost()
                self.request_resync(self)
            return
        self.held = None
        if self.outbox.push_deltas(self, group.ops, group.bodies) and starts(group.ops[0]):
            self._answered(group.ops[0], group.reads[0][1])

    def _resumed(self) -> list[tuple[str, bytes]] | None:
        """The group that answers a resuming subscribe, its mirror complete: `resume`,
        the ops and `synced`, or the snapshot saying `resume_miss`."""
        self.resuming = False
        view, dumps = self.mirror.view, orjson.dumps
        ops = plan(self.declared, view.rows) if self.declared is not None else None
        if self.on_resumed is not None:
            self.on_resumed(ops is not None)
        if ops is None:
            if self.on_reset is not None:
                self.on_reset("resume_miss")
            return self.mirror.snapshot("resume_miss")
        assert self.declared is not None
        out = [("resume", dumps({"op": "resume", "count": len(self.declared)})[1:])]
        out += [(op["op"], dumps(op)[1:]) for op in ops]
        synced = {"op": "synced", "count": len(view.rows), "digest": view.digest()}
        out.append(("synced", dumps(synced)[1:]))
        return out

    def reanchored(self, query: Query) -> None:
        """The registration now holds `query` (a new window); its reset is on its way."""
        self.query = query
        self.mirror.limit = query.limit

    def start_over(self, sub: str) -> None:
        """A new client-side name (an SSE stream that starts over): seq starts again,
        and its queued deltas give way to a reset and a fresh snapshot (or, after
        `resume_from`, to the resume from the mirror)."""
        self.sub = sub
        self.sub_json = compact(orjson.dumps(sub))  # kept: right-sized
        self.seq = 0
        self.catch_up_reason = "resume_miss"
        self.outbox.overflow(self)

    def lost(self) -> None:
        """Frames may have been lost: drop everything until the next reset."""
        self.fence.lost()

    def close(self) -> None:
        """Final: nothing more is applied or sent."""
        self.fence.close()
        self.outbox.forget(self)

    # -- frames (the demux)

    def deliver(
        self,
        epoch: int,
        source: Source,
        group: Group,
    ) -> bool:
        """Apply one group of a frame; False when the fence drops it."""
        ops = group.ops
        first = starts(ops[0])
        verdict = self.fence.admit(epoch, source, first)
        if verdict is not Verdict.DELIVER:
            if verdict is Verdict.LOST_RESET:
                self.request_resync(self)
            return False
        if first:
            self.resets += 1
        self.mirror.apply_reads(group.reads, group.unit)
        if self.held is not None:
            self._hold(group)
            return True
        if self.resuming:
            if self.mirror.complete:
                if not self.behind:  # else `caught_up` serves it
                    resumed = self._resumed()
                    if resumed is not None:
                        self.outbox.push_deltas(self, [op for op, _ in resumed],
                                                [body for _, body in resumed])
            elif "synced" in ops:  # the mirror broke: a plain snapshot must serve
                self.resuming = False
                self.fence.lost()
                self.request_resync(self)
            return True
        if not self.behind and self.outbox.push_deltas(self, ops, group.bodies):
            if ops[0] == "reset" and self.on_reset is not None:
                self.on_reset(group.reads[0][1] or "unknown")
        return True

    def check(self) -> bool:
        """Queue a `check` of the client's list (the mirror's); False when it cannot
        now (not live, behind, or the mirror incomplete). Changes nothing else."""
        if self.behind or self.resuming or self.fence.phase is not Phase.LIVE:
            return False
        body = self.mirror.check()
        return body is not None and self.outbox.push_deltas(self, ("check",), (body,))

    # -- the outbox (`outbox.Queued`)

    def enqueued(self, count: int) -> None:
        self.queued += count

    def numbered(self) -> int:
        self.queued -= 1
        self.seq += 1
        return self.seq

    def unqueued(self) -> None:
        self.queued = 0

    def fell_behind(self) -> bool:
        if self.behind:
            return False
        self.behind = True
        return True

    def caught_up(self) -> list[tuple[str, bytes]] | None:
        """The outbox has room again: what to send to catch this subscription up.

        The mirror's snapshot when it can serve; None when a `reset` is on its way
        anyway (PENDING, RESETTING) or had to be asked for (the mirror is incomplete).
        """
        self.behind = False
        reason, self.catch_up_reason = self.catch_up_reason, "overflow"
        if self.fence.phase is not Phase.LIVE:
            return None
        held = self.held
        if held is not None and held.groups:  # the answer to `resume_at`, and what followed
            self.held = None
            self._answered(held.first_op() or "", self.mirror.view.reason)  # its reset's
            return held.messages()
        if self.resuming:  # its snapshot is complete: serve it; or still coming: wait
            if self.mirror.complete:
                return self._resumed()
            if not self.mirror.filling:  # broken (an SSE stream started over): a fresh one
                self.fence.lost()
                self.request_resync(self)
            return None
        snapshot = self.mirror.snapshot(reason)
        if snapshot is None:
            self.fence.lost()
            self.request_resync(self)
        elif self.on_reset is not None:
            self.on_reset(reason)
        return snapshot
