"""State-diff resume (PROTOCOL.md section 3, "State-diff resume"): the fewest ops that
turn the list a client declared into the current window.

Pure: no I/O, no state. Invariants (tested against `lq_client.view.ViewState`, the
strict applier, in tests/test_live_resume_diff.py):
- applying `plan(declared, target)` in order to the declared list gives exactly
  `target` (ids, versions, values), every index in range for the list as the previous
  op left it, the list never longer than the longer of the two;
- the ops are the fewest possible: one `leave` per declared row not in the target, one
  `enter` per target row not declared, and one op (a `move` when out of place, else an
  `update`) per kept row whose version changed; a kept row whose version did not change
  is never sent. That holds because rows that did not change keep their relative order
  (their sort values did not change), so the rows that stay in place are a heaviest
  increasing subsequence of the kept rows' target positions that holds all of them;
- `plan` answers None, never a wrong plan, when the declaration cannot be right: a
  declared version newer than the current one, or unchanged rows declared out of order.
`declared` reads the wire's `rows` and answers None for what cannot be right (over the
limit, duplicate ids, malformed entries).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lq_client.view import Row

__all__ = ["Declared", "Op", "declared", "plan"]

Declared = list[tuple[str, int]]
"""(id, version) pairs, in the client's window order."""
Op = dict[str, Any]
"""A delta message without `type`, `sub` and `seq`."""

_MAX_ID = 256


def _valid_id(rid: Any) -> bool:
    return (type(rid) is str and 1 <= len(rid) <= _MAX_ID
            and not any(ord(c) < 32 or ord(c) == 127 for c in rid))


def declared(rows: Any, limit: int) -> Declared | None:
    """The declared list, or None when it cannot be right for a window of `limit`."""
    if not isinstance(rows, list) or len(rows) > limit:
        return None
    out: Declared = []
    seen: set[str] = set()
    for entry in rows:
        if type(entry) is not list or len(entry) != 2:
            return None
        rid, version = entry
        if not _valid_id(rid) or type(version) is not int or version < 0 or rid in seen:
            return None
        seen.add(rid)
        out.append((rid, version))
    return out


def _staying(positions: list[int], weights: list[int]) -> set[int]:
    """Indexes (into `positions`) of a heaviest strictly increasing subsequence.

    `positions` is a permutation of 0..k-1; a Fenwick tree of prefix maxima over
    positions makes it O(k log k)."""
    k = len(positions)
    tree: list[tuple[int, int]] = [(0, -1)] * (k + 1)  # (best weight, index) per node
    best: list[int] = [0] * k
    back: list[int] = [-1] * k
    for i, pos in enumerate(positions):
        j, top = pos, (0, -1)  # prefix max over positions < pos
        while j > 0:
            if tree[j][0] > top[0]:
                top = tree[j]
            j -= j & -j
        best[i], back[i] = top[0] + weights[i], top[1]
        j = pos + 1
        while j <= k:
            if best[i] > tree[j][0]:
                tree[j] = (best[i], i)
            j += j & -j
    out: set[int] = set()
    i = max(range(k), key=best.__getitem__, default=-1)
    while i >= 0:
        out.add(i)
        i = back[i]
    return out


def _with_row(op: str, r: Row, src: int, to: int) -> Op:
    return {"op": op, "id": r.id, "version": r.version, "row": r.values, "from": src,
            "to": to, "cursor": r.cursor}


def plan(declared_rows: Declared, target: Sequence[Row]) -> list[Op] | None:
    """The ops from `declared_rows` to `target` (see the module docstring), or None."""
    now = {r.id: r for r in target}
    ops: list[Op] = []
    for i in range(len(declared_rows) - 1, -1, -1):
        rid, version = declared_rows[i]
        if rid not in now:
            ops.append({"op": "leave", "id": rid, "version": version, "from": i, "to": -1})
    held = {rid: version for rid, version in declared_rows}
    kept = [rid for rid, _ in declared_rows if rid in now]
    order = [r.id for r in target if r.id in held]  # the kept rows in target order
    position = {rid: i for i, rid in enumerate(order)}
    changed = {rid for rid in kept if now[rid].version != held[rid]}
    if any(now[rid].version < held[rid] for rid in changed):
        return None  # the client says it holds a version the server never reached
    # unchanged rows weigh more than all changed ones together: all of them must stay
    heavy = len(kept) + 1
    stay = _staying([position[rid] for rid in kept],
                    [1 if rid in changed else heavy for rid in kept])
    staying = {kept[i] for i in stay}
    if any(rid not in staying for rid in kept if rid not in changed):
        return None  # unchanged rows out of order: not a list the server ever sent
    current = list(kept)
    for i, rid in enumerate(order):
        if rid in staying:
            continue
        src = current.index(rid)
        del current[src]
        to = current.index(order[i - 1]) + 1 if i else 0
        current.insert(to, rid)
        ops.append(_with_row("move", now[rid], src, to))
    for i, r in enumerate(target):
        if r.id not in held:
            ops.append({"op": "enter", "id": r.id, "version": r.version, "row": r.values,
                        "from": -1, "to": i, "cursor": r.cursor})
    for i, r in enumerate(target):
        if r.id in staying and r.id in changed:
            ops.append(_with_row("update", r, i, i))
    return ops
