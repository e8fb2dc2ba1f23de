"""Does a client's list equal the oracle? Pure: the query oracle (`oracle`) over the
acknowledged-write model (`model`), and a plain comparison with a fresh HTTP query.

- `explain(...)` at one version V: the list must hold, in the total order, exactly the
  first `limit` rows (window mode, or a truncated changes snapshot) or every row
  (changes mode) that match the query and lie after its cursor, each at a state the row
  may hold as of V (`RowHistory.possible`); every other row must have some state that
  keeps it out. None when so, else the first reason it is not.
- `snapshot_diff(...)`: a list taken at a `synced` is a snapshot as of *some* version in
  a window (it cannot hold a write made after it arrived, and it may be as old as the
  start of its claim), so it passes when `explain` passes at one of the versions where
  the model changes inside that window. Ambiguity (an unknown outcome, an expiry, a
  lost write) only ever widens what passes, never narrows it.
- `final_diff(...)`: at the end of a quiet run, at V = infinity, expiries settled, lost
  writes gone; a truncated changes list need only be a subset of the matching rows,
  each at its current state.
- `http_diff(...)`: the list against the rows a fresh `POST .../query` returned.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from lq.chaos.check import Listed
from lq.chaos.model import INF, RowHistory, State
from lq.chaos.oracle import oracle_compare, oracle_match

__all__ = ["explain", "final_diff", "http_diff", "snapshot_diff"]

Anchor = tuple[str, dict[str, Any]] | None
Coll = Mapping[str, RowHistory]


def _brief(states: Sequence[State]) -> str:
    return ", ".join("absent" if s is None else f"v{s[0]}" for s in states)


def _in(query: dict[str, Any], anchor: Anchor, row: tuple[str, dict[str, Any]]) -> bool:
    """The row matches the query's filter and lies after its cursor."""
    if not oracle_match(query.get("where"), row[1]):
        return False
    return anchor is None or oracle_compare(row, anchor, query.get("sort") or []) > 0


def explain(query: dict[str, Any], anchor: Anchor, listed: Listed, truncated: bool,
            coll: Coll, v: int, *, now: int | None = None, grace: int = 0,
            subset: bool = False) -> str | None:
    """Why `listed` is not the query's result as of version `v` (None when it is)."""
    sort = query.get("sort") or []
    window = query.get("mode", "window") == "window"
    cap = query.get("limit") if window or truncated else None
    empty = RowHistory()
    held: set[str] = set()
    for i, (rid, version, values) in enumerate(listed):
        states = coll.get(rid, empty).possible(v, now, grace)
        if (version, values) not in states:
            return f"{rid!r} v{version} is not a state of the row (it may be: " \
                   f"{_brief(states)})"
        if not _in(query, anchor, (rid, values)):
            return f"{rid!r} v{version} does not match the query or its cursor"
        if window and i and oracle_compare((listed[i - 1][0], listed[i - 1][2]),
                                           (rid, values), sort) >= 0:
            return f"{rid!r} is out of order after {listed[i - 1][0]!r}"
        held.add(rid)
    if subset:  # a truncated changes list grows past its limit with later matches
        return None
    if cap is not None and len(listed) > cap:
        return f"{len(listed)} rows over the limit {cap}"
    full = cap is not None and len(listed) == cap
    def order(a: tuple[str, dict[str, Any]], b: tuple[str, dict[str, Any]]) -> int:
        return oracle_compare(a, b, sort)

    last = (max(((r, vals) for r, _, vals in listed), key=functools.cmp_to_key(order))
            if listed else None)
    for rid, h in coll.items():
        if rid in held:
            continue
        states = h.possible(v, now, grace)
        if not any(s is None or not _in(query, anchor, (rid, s[1]))
                   or (full and last is not None and oracle_compare((rid, s[1]), last, sort) > 0)
                   for s in states):
            return f"{rid!r} is missing (it is {_brief(states)} and belongs in the result)"
    return None


def snapshot_diff(query: dict[str, Any], anchor: Anchor, listed: Listed, truncated: bool,
                  coll: Coll, lo: int, hi: int) -> str | None:
    """None when the snapshot equals the result as of some version in [lo, hi]."""
    lo = max([lo, *(version for _, version, _ in listed)])
    if lo > hi:
        return f"it holds a version newer than it could (v{lo} > bound v{hi})"
    points = {lo}
    for h in coll.values():
        points |= h.points(lo, hi)
    for v in sorted(points):
        if explain(query, anchor, listed, truncated, coll, v) is None:
            return None
    why = explain(query, anchor, listed, truncated, coll, hi)
    return f"no version in [{lo}, {hi}] fits; at the newest: {why}"


def final_diff(query: dict[str, Any], anchor: Anchor, listed: Listed, truncated: bool,
               coll: Coll, now: int, grace: int) -> str | None:
    """None when the list equals the result over the model at the end of a quiet run."""
    subset = query.get("mode") == "changes" and truncated
    return explain(query, anchor, listed, truncated, coll, INF, now=now, grace=grace,
                   subset=subset)


def http_diff(query: dict[str, Any], listed: Listed, truncated: bool,
              rows: Sequence[dict[str, Any]]) -> str | None:
    """None when the list equals the HTTP query's rows (ids, versions and values; a
    set in changes mode, a subset of it when the snapshot was truncated)."""
    have = [(r, v, vals) for r, v, vals in listed]
    want = [(r["id"], r["version"], r["row"]) for r in rows]
    if query.get("mode") == "changes":
        got, ref = {h[0]: h for h in have}, {w[0]: w for w in want}
        extra = [r for r in got if got[r] != ref.get(r)]
        missing = [] if truncated else [r for r in ref if r not in got]
        if extra or missing:
            return f"changes list: wrong or stale {extra[:5]}, missing {missing[:5]}"
        return None
    if have != want:
        return (f"window {[(r, v) for r, v, _ in have]} but the query returns "
                f"{[(r, v) for r, v, _ in want]}")
    return None
