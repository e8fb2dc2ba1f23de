"""Named cases of the matcher, one behaviour per test, with the exact messages expected.

Rows are `{"p": <number>}` sorted by `p` ascending (then id) unless a test says
otherwise; `W` is a window of 3 over them.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from cluster.query import CursorSigner, Query, parse_query
from shard import Change, Frame, Matcher, MatcherSettings, Row, ViewDelta

SIGNER = CursorSigner(b"s" * 32)
T, E = "t", "tasks"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """A matcher over one collection, with a store-like version counter."""

    def __init__(self, rows: dict[str, dict[str, Any]] | None = None, **kw: Any) -> None:
        self.clock = Clock()
        self.m = Matcher(SIGNER, settings=MatcherSettings(**kw), clock=self.clock)
        self.version = 0
        self.history: list[Change] = []
        loaded = []
        for rid, values in (rows or {}).items():
            self.version += 1
            loaded.append(Row(rid, self.version, values))
        self.m.load(T, E, loaded)

    def put(self, rid: str, **values: Any) -> list[ViewDelta]:
        return self.write(rid, values)

    def delete(self, rid: str) -> list[ViewDelta]:
        return self.write(rid, None)

    def write(self, rid: str, values: dict[str, Any] | None) -> list[ViewDelta]:
        self.version += 1
        change = Change(T, E, rid, self.version, values)
        self.history.append(change)
        return self.m.apply(change)

    def sub(self, sub_id: str, **query: Any) -> list[tuple[Any, ...]]:
        return brief(self.m.subscribe(sub_id, T, q(**query)))


def q(**query: Any) -> Query:
    obj: dict[str, Any] = {"entity": E, "sort": ["p"], "limit": 3, **query}
    if isinstance(obj.get("after"), tuple):
        plain = parse_query({**obj, "after": None}, signer=SIGNER)
        obj["after"] = SIGNER.make(E, plain.sort_spec, plain.sort_key(*obj["after"]))
    return parse_query(obj, signer=SIGNER)


def brief(frame: Frame | list[ViewDelta]) -> list[tuple[Any, ...]]:
    """Messages as (op, id, from, to) tuples (reset/synced as (op, count))."""
    if isinstance(frame, list):
        assert len(frame) <= 1, "one view expected"
        if not frame:
            return []
        frame = frame[0].frame
    out: list[tuple[Any, ...]] = []
    for msg in orjson.loads(frame.payload):
        op = msg["op"]
        if op == "reset":
            out.append(("reset",))
        elif op == "synced":
            out.append(("synced", msg["count"], *(["truncated"] if msg.get("truncated") else [])))
        elif "from" in msg:
            out.append((op, msg["id"], msg["from"], msg["to"]))
        else:
            out.append((op, msg["id"]))
    return out


FIVE = {"a": {"p": 1}, "b": {"p": 2}, "c": {"p": 3}, "d": {"p": 4}, "e": {"p": 5}}


@pytest.fixture
def h() -> Harness:
    h = Harness(FIVE)
    assert h.sub("s1") == [
        ("reset",), ("enter", "a", -1, 0), ("enter", "b", -1, 1), ("enter", "c", -1, 2),
        ("synced", 3),
    ]
    return h


def test_insert_into_a_full_window(h: Harness) -> None:
    assert brief(h.put("x", p=1.5)) == [("leave", "c", 2, -1), ("enter", "x", -1, 1)]


def test_insert_that_sorts_after_the_window_sends_nothing(h: Harness) -> None:
    assert h.put("x", p=4.5) == []
    assert h.put("y", p=3.5) == []


def test_delete_with_promotion_from_beyond_the_window(h: Harness) -> None:
    assert brief(h.delete("a")) == [("leave", "a", 0, -1), ("enter", "d", -1, 2)]


def test_delete_with_nothing_to_promote() -> None:
    h = Harness({"a": {"p": 1}, "b": {"p": 2}})
    h.sub("s1")
    assert brief(h.delete("a")) == [("leave", "a", 0, -1)]


def test_move_up(h: Harness) -> None:
    assert brief(h.put("c", p=0)) == [("move", "c", 2, 0)]


def test_move_down(h: Harness) -> None:
    assert brief(h.put("a", p=2.5)) == [("move", "a", 0, 1)]


def test_move_out(h: Harness) -> None:
    assert brief(h.put("a", p=9)) == [("leave", "a", 0, -1), ("enter", "d", -1, 2)]


def test_move_in(h: Harness) -> None:
    assert brief(h.put("e", p=0)) == [("leave", "c", 2, -1), ("enter", "e", -1, 0)]


@pytest.mark.parametrize("spare", [0, 8])
def test_move_past_the_end_but_still_next_is_a_move(spare: int) -> None:
    """With no spare rows the window's next row is found by a walk of the index."""
    h = Harness(FIVE, min_spare=spare, max_spare=spare)
    h.sub("s1")
    assert brief(h.put("b", p=3.5)) == [("move", "b", 1, 2)]
    assert brief(h.put("b", p=3.75)) == [("update", "b", 2, 2)]
    assert brief(h.put("b", p=9)) == [("leave", "b", 2, -1), ("enter", "d", -1, 2)]


def test_update_without_a_move(h: Harness) -> None:
    deltas = h.put("b", p=2, note="x")
    assert brief(deltas) == [("update", "b", 1, 1)]
    (msg,) = orjson.loads(deltas[0].frame.payload)
    assert msg["row"] == {"p": 2, "note": "x"} and msg["version"] == h.version


def test_tie_on_sort_keys_is_broken_by_id() -> None:
    h = Harness({"b": {"p": 1}, "d": {"p": 1}})
    assert h.sub("s1") == [("reset",), ("enter", "b", -1, 0), ("enter", "d", -1, 1), ("synced", 2)]
    assert brief(h.put("c", p=1)) == [("enter", "c", -1, 1)]
    assert brief(h.put("a", p=1)) == [("leave", "d", 2, -1), ("enter", "a", -1, 0)]
    assert brief(h.put("bb", p=1)) == [("leave", "c", 2, -1), ("enter", "bb", -1, 2)]


def test_the_last_row_deleted() -> None:
    h = Harness({"a": {"p": 1}})
    h.sub("s1")
    assert brief(h.delete("a")) == [("leave", "a", 0, -1)]
    assert brief(h.m.snapshot("s1")) == [("reset",), ("synced", 0)]


def test_an_empty_result_gaining_its_first_row() -> None:
    h = Harness()
    assert h.sub("s1", where={"p": {"$gt": 0}}) == [("reset",), ("synced", 0)]
    assert h.put("a", p=0) == []
    assert brief(h.put("b", p=1)) == [("enter", "b", -1, 0)]


def test_a_stale_version_is_ignored(h: Harness) -> None:
    h.put("a", p=0.5)
    stale = Change(T, E, "a", h.version - 1, {"p": 9})
    assert h.m.apply(stale) == []
    assert h.m.apply(h.history[-1]) == []  # a duplicate too
    assert brief(h.m.snapshot("s1"))[1] == ("enter", "a", -1, 0)


def test_a_delete_then_a_stale_put_of_the_old_version(h: Harness) -> None:
    h.put("x", p=0)
    old_put = h.history[-1]
    assert brief(h.delete("x")) == [("leave", "x", 0, -1), ("enter", "c", -1, 2)]
    assert h.m.apply(old_put) == []
    assert [m[1] for m in brief(h.m.snapshot("s1"))[1:-1]] == ["a", "b", "c"]
    assert brief(h.put("x", p=0)) == [("leave", "c", 2, -1), ("enter", "x", -1, 0)]


def test_forgotten_deletes_raise_the_floor() -> None:
    h = Harness(max_dead=2)
    h.sub("s1")
    for rid in "xyz":
        h.put(rid, p=1)
    puts = list(h.history)
    for rid in "xyz":
        h.delete(rid)
    coll = h.m.collection(T, E)
    assert coll is not None and coll.stats()["deletes_remembered"] == 2
    for put in puts:
        assert h.m.apply(put) == []  # x's delete was forgotten; the floor still stops it
    assert brief(h.put("w", p=1)) == [("enter", "w", -1, 0)]


def test_reanchor_forward_and_back(h: Harness) -> None:
    forward = q(after=("c", {"p": 3}))
    assert brief(h.m.reanchor("s1", forward)) == [
        ("reset",), ("enter", "d", -1, 0), ("enter", "e", -1, 1), ("synced", 2),
    ]
    assert brief(h.put("a", p=0)) == []  # before the cursor now
    assert brief(h.put("f", p=6)) == [("enter", "f", -1, 2)]
    assert brief(h.m.reanchor("s1", q(limit=2))) == [
        ("reset",), ("enter", "a", -1, 0), ("enter", "b", -1, 1), ("synced", 2),
    ]
    assert h.m.collection(T, E) is not None
    assert len(h.m.collection(T, E).views()) == 1  # type: ignore[union-attr]


def only(deltas: list[ViewDelta], sub_id: str) -> list[tuple[Any, ...]]:
    """The messages of one subscription among a change's deltas."""
    return brief([d for d in deltas if sub_id in d.subscribers])


def test_cursor_after_a_row_starts_strictly_after_it(h: Harness) -> None:
    assert h.sub("s2", after=("b", {"p": 2})) == [
        ("reset",), ("enter", "c", -1, 0), ("enter", "d", -1, 1), ("enter", "e", -1, 2),
        ("synced", 3),
    ]
    # Tied with the cursor's row on `p`: after it only when its id is.
    assert only(h.put("ba", p=2), "s2") == [("leave", "e", 2, -1), ("enter", "ba", -1, 0)]
    assert only(h.put("b", p=2.0), "s2") == []  # the cursor's own position
    assert only(h.put("a", p=2), "s2") == []


def test_changes_mode_match_update_unmatch() -> None:
    h = Harness({"a": {"p": 1}, "b": {"p": 5}})
    assert h.sub("s1", where={"p": {"$lt": 3}}, mode="changes", limit=10) == [
        ("reset",), ("match", "a"), ("synced", 1),
    ]
    assert brief(h.put("b", p=2)) == [("match", "b")]
    assert brief(h.put("b", p=2.5)) == [("update", "b")]
    assert brief(h.put("a", p=7)) == [("unmatch", "a")]
    assert h.put("a", p=8) == []
    assert brief(h.delete("b")) == [("unmatch", "b")]
    assert h.delete("a") == []


def test_changes_mode_truncation() -> None:
    h = Harness(FIVE)
    assert h.sub("s1", mode="changes", limit=2, sort=["-p"]) == [
        ("reset",), ("match", "e"), ("match", "d"), ("synced", 2, "truncated"),
    ]
    assert brief(h.put("z", p=0)) == [("match", "z")]  # no limit after the snapshot
    frame = h.m.subscribe("s2", T, q(mode="changes", limit=6))
    assert orjson.loads(frame.payload)[-1] == {
        "type": "delta", "op": "synced", "count": 6, "truncated": False,
    }


def test_two_subscriptions_of_one_shape_share_one_view(h: Harness) -> None:
    frame = h.m.subscribe("s2", T, q(), route="gw2")
    assert frame is h.m.snapshot("s1")  # the snapshot is encoded once too
    assert h.m.view_of("s1") is h.m.view_of("s2")
    (delta,) = h.put("a", p=0.5)
    assert dict(delta.routes) == {"": ("s1",), "gw2": ("s2",)}
    assert sorted(delta.subscribers) == ["s1", "s2"]
    (again,) = h.put("a", p=0.25)
    assert again.routes is delta.routes  # unchanged membership: one shared object
    h.m.unsubscribe("s1")
    (last,) = h.put("a", p=0.125)
    assert dict(last.routes) == {"gw2": ("s2",)}
    assert h.m.unsubscribe("s2") and not h.m.unsubscribe("s2")
    coll = h.m.collection(T, E)
    assert coll is not None and coll.views() == [] and coll.index_specs() == []


def test_a_change_is_not_offered_to_views_of_other_values() -> None:
    h = Harness({"a": {"p": 1, "team": "red"}, "b": {"p": 2, "team": "blue"}})
    h.sub("red", where={"team": "red"})
    h.sub("blue", where={"team": {"$in": ["blue", "green"]}})
    h.sub("big", where={"p": {"$gte": 10}})
    red, blue, big = (h.m.view_of(s) for s in ("red", "blue", "big"))
    h.put("b", p=3, team="blue")
    assert (red.offered, blue.offered, big.offered) == (0, 1, 0)
    h.put("b", p=3, team="red")  # offered for its old values and for its new ones
    assert (red.offered, blue.offered, big.offered) == (1, 2, 0)
    h.put("c", p=11, team="green")
    assert (red.offered, blue.offered, big.offered) == (1, 3, 1)
    h.put("d", p=1, team="white")
    assert (red.offered, blue.offered, big.offered) == (1, 3, 1)


def test_reload_resets_every_view(h: Harness) -> None:
    deltas = h.m.load(T, E, [Row("q", 99, {"p": 0})])
    assert [brief(d.frame) for d in deltas] == [[("reset",), ("enter", "q", -1, 0), ("synced", 1)]]


def test_idle_collections_are_evicted_after_a_grace() -> None:
    h = Harness(FIVE)
    h.sub("s1")
    assert h.m.idle(10) == [] and not h.m.evict(T, E)
    h.m.unsubscribe("s1")
    h.clock.now += 5
    assert h.m.idle(10) == []
    h.clock.now += 5
    assert h.m.idle(10) == [(T, E)]
    assert h.m.evict(T, E) and h.m.collection(T, E) is None
    assert h.m.apply(Change(T, E, "a", 1000, {"p": 1})) == []
