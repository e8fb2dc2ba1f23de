"""The state-diff resume plan (`gateway.live.resume`) against the strict applier.

A client's old window and the current one are made from a random collection, random
changes and a random limit; the plan applied by `lq_client.view.ViewState` (every index
checked) to the old list must give the current window, with the fewest ops.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from lq_client.view import ProtocolViolation, Row, ViewState, digest

from gateway.live.resume import declared, plan

Data = dict[str, tuple[int, int]]  # id -> (sort value, version)


def window(data: Data, limit: int) -> list[Row]:
    ordered = sorted(data.items(), key=lambda kv: (kv[1][0], kv[0]))[:limit]
    return [Row(rid, version, {"s": s, "v": version}, f"c-{rid}")
            for rid, (s, version) in ordered]


def held(rows: list[tuple[str, int]], limit: int) -> ViewState:
    """A client's list holding `rows` (its values marked as the client's own)."""
    state = ViewState(True, limit, numbered=False)
    state.apply({"op": "reset", "reason": "subscribe"})
    for i, (rid, version) in enumerate(rows):
        state.apply({"op": "enter", "id": rid, "version": version, "row": {"mine": True},
                     "from": -1, "to": i, "cursor": None})
    state.apply({"op": "synced", "count": len(rows), "digest": digest(rows)})
    return state


ids = st.sampled_from([f"r{i}" for i in range(30)])


@st.composite
def histories(draw: st.DrawFn) -> tuple[Data, Data, int]:
    before: Data = draw(st.dictionaries(ids, st.tuples(st.integers(0, 9), st.integers(1, 5)),
                                        max_size=25))
    after = dict(before)
    for rid in draw(st.lists(ids, max_size=12)):
        kind = draw(st.sampled_from(["write", "delete"]))
        version = max(after.get(rid, before.get(rid, (0, 0)))[1], 5) + draw(st.integers(1, 3))
        if kind == "delete":
            after.pop(rid, None)
        else:
            after[rid] = (draw(st.integers(0, 9)), version)
    return before, after, draw(st.integers(1, 20))


@given(histories())
@settings(max_examples=400, deadline=None)
def test_the_plan_turns_the_declared_list_into_the_window_with_the_fewest_ops(
        history: tuple[Data, Data, int]) -> None:
    before, after, limit = history
    old = [(r.id, r.version) for r in window(before, limit)]
    target = window(after, limit)
    ops = plan(old, target)
    assert ops is not None
    state = held(old, limit)
    for op in ops:
        state.apply(op)  # raises on any index out of range, wrong id or older version
        assert len(state.rows) <= limit
    assert [(r.id, r.version) for r in state.rows] == [(r.id, r.version) for r in target]
    state.apply({"op": "check", "count": len(target), "digest": digest(
        (r.id, r.version) for r in target)})
    versions, now = dict(old), {r.id: r.version for r in target}
    changed = {rid for rid in versions.keys() & now.keys() if versions[rid] != now[rid]}
    counts = {op: sum(1 for o in ops if o["op"] == op) for op in ("leave", "enter", "move",
                                                                  "update")}
    assert counts["leave"] == len(versions.keys() - now.keys())
    assert counts["enter"] == len(now.keys() - versions.keys())
    assert counts["move"] + counts["update"] == len(changed)
    assert {o["id"] for o in ops if o["op"] in ("move", "update")} == changed
    for r, mine in zip(target, state.rows, strict=True):  # values: the client's if unchanged
        assert mine.values == ({"mine": True} if r.id in versions and r.id not in changed
                               else r.values)


@given(st.lists(st.tuples(ids, st.integers(0, 8)), max_size=12, unique_by=lambda t: t[0]),
       st.lists(st.tuples(ids, st.integers(0, 8)), max_size=12, unique_by=lambda t: t[0]))
@settings(max_examples=400, deadline=None)
def test_any_declaration_gets_a_right_plan_or_none(
        old: list[tuple[str, int]], new: list[tuple[str, int]]) -> None:
    """Declarations no server ever sent (any order, any versions): never a wrong plan."""
    target = [Row(rid, version, {"v": version}) for rid, version in new]
    ops = plan(old, target)
    if ops is None:
        return
    state = held(old, 12)
    for op in ops:
        state.apply(op)
    assert [(r.id, r.version) for r in state.rows] == new


def test_rows_in_order_stay_and_only_the_changed_move() -> None:
    old = [("a", 1), ("b", 1), ("c", 1), ("d", 1)]
    target = [Row("d", 2, {}), Row("a", 1, {}), Row("b", 1, {}), Row("c", 1, {})]
    ops = plan(old, target)
    assert ops == [{"op": "move", "id": "d", "version": 2, "row": {}, "from": 3, "to": 0,
                    "cursor": None}]
    # an unchanged row out of place was never in a list the server sent
    assert plan(old, [Row("b", 1, {}), Row("a", 1, {})]) is None
    assert plan([("a", 3)], [Row("a", 2, {})]) is None  # newer than the server's


def test_declarations_that_cannot_be_right() -> None:
    ok: list[Any] = [["a", 1], ["b", 0]]
    assert declared(ok, 2) == [("a", 1), ("b", 0)]
    assert declared(ok, 1) is None  # over the limit
    assert declared([["a", 1], ["a", 2]], 5) is None  # an id twice
    for bad in (["a", 1], [["a"]], [["a", 1, 2]], [["", 1]], [["a", -1]], [["a", 1.0]],
                [["a", True]], [[1, 1]], [["a\n", 1]], [["x" * 257, 1]], [("a", 1)]):
        assert declared(bad, 5) is None, bad
    assert declared("rows", 5) is None


def test_a_violating_plan_would_be_caught() -> None:
    """The applier the properties lean on refuses a wrong index (the test can fail)."""
    state = held([("a", 1)], 3)
    try:
        state.apply({"op": "leave", "id": "a", "version": 1, "from": 1, "to": -1})
    except ProtocolViolation:
        return
    raise AssertionError("an index out of range was applied")
