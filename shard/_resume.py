"""Log-position resume of a changes-mode view (PROTOCOL.md section 3, "Log-position
resume"): the frame that brings a client's set, as of a log position it names, to the
view's current state.

Pure: the log read is the caller's. Invariant: applied with the relaxed meaning of the
protocol (between `resume` and `synced`, `match` upserts and `unmatch` removes if held),
to any set that equals the view's result as of some state at or after the named entry,
the frame gives exactly the view's current result, because every row that changed after
that entry is sent with its state now and every other row is as it was there. It answers
None (a `resume_miss`) when more rows match now than `limit`: a snapshot would have been
truncated, and a resume never gives a list that a snapshot would not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from . import _messages as m
from ._changes import ChangesView
from ._types import Frame, Message

__all__ = ["resume_frame"]


def resume_frame(
    view: ChangesView,
    pos: str,
    changed: Sequence[tuple[str, int]],
    now_pos: str,
    gone: Callable[[str], int | None],
) -> Frame | None:
    """`resume` (echoing `pos`), the state now of each row id in `changed` ((id, logged
    version) in log order, from the log after `pos`), then `synced` at `now_pos`.
    `gone(id)` is the version of the delete the collection applied last for a row it
    does not hold (None: not remembered; the newest logged version is used)."""
    limit = view.query.limit
    count = len(view.walk(None, limit + 1))
    if count > limit:
        return None
    newest: dict[str, int] = {}
    for rid, version in changed:  # distinct ids, each in the order of its last change
        newest[rid] = max(version, newest.pop(rid, 0))
    rows, matches = view.rows, view.matches
    msgs: list[Message] = [{"type": "delta", "op": "resume", "pos": pos}]
    for rid, logged in newest.items():
        held = rows.get(rid)
        if held is not None and matches(held[1]):
            msgs.append(m.match(rid, held[0], held[1]))
        elif held is not None:
            msgs.append(m.unmatch(rid, held[0], held[1]))
        else:
            msgs.append(m.unmatch(rid, gone(rid) or logged, None))
    synced = m.synced(count, False)
    synced["pos"] = now_pos
    msgs.append(synced)
    return Frame.of(msgs)
