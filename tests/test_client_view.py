"""The one protocol applier (`lq_client.view`): each rule it adds is refused when broken,
a refused message leaves the list as it was, and the simulated subscriber records what
the applier refuses. (The property tests against the shard's matcher are in
tests/test_live_wire.py.)"""

from __future__ import annotations

import time
from typing import Any

import pytest
from lq_client.view import DigestMismatch, ProtocolViolation, Row, ViewState, digest, read

from lq.bench._simsub import SimSub

RESET: dict[str, Any] = {"op": "reset"}


def _enter(rid: str, version: int, to: int) -> dict[str, Any]:
    return {"op": "enter", "id": rid, "version": version, "row": {"v": version},
            "from": -1, "to": to, "cursor": f"c{rid}"}


def _update(rid: str, version: int, index: int, op: str = "update", to: int | None = None
            ) -> dict[str, Any]:
    return {"op": op, "id": rid, "version": version, "row": {"v": version},
            "from": index, "to": index if to is None else to, "cursor": f"c{rid}"}


def _leave(rid: str, version: int, index: int) -> dict[str, Any]:
    return {"op": "leave", "id": rid, "version": version, "from": index, "to": -1}


def _change(op: str, rid: str, version: int) -> dict[str, Any]:
    return {"op": op, "id": rid, "version": version, "row": {"v": version}}


def _window(*messages: dict[str, Any], limit: int | None = 5, remember: bool = False
            ) -> ViewState:
    """A window view holding a (v3) and b (v5), synced, then `messages` applied."""
    view = ViewState(True, limit, numbered=False, remember=remember)
    for m in (RESET, _enter("a", 3, 0), _enter("b", 5, 1), {"op": "synced", "count": 2},
              *messages):
        view.apply(m)
    return view


def _changes(*messages: dict[str, Any], truncated: bool = False, remember: bool = False
             ) -> ViewState:
    """A changes view matching a (v3), synced, then `messages` applied."""
    view = ViewState(False, 50, numbered=False, remember=remember)
    synced = {"op": "synced", "count": 1, "truncated": truncated}
    for m in (RESET, _change("match", "a", 3), synced, *messages):
        view.apply(m)
    return view


def _state(view: ViewState) -> list[tuple[str, int, Any]]:
    return [(r.id, r.version, r.values) for r in view.current()]


# -- what a valid stream does


def test_a_valid_window_stream_gives_the_list() -> None:
    view = _window(_update("a", 4, 0), _update("b", 6, 1, "move", 0), _leave("a", 4, 1),
                   _enter("c", 1, 1))
    assert _state(view) == [("b", 6, {"v": 6}), ("c", 1, {"v": 1})]
    assert view.current()[1] == Row("c", 1, {"v": 1}, "cc")


def test_messages_without_seq_apply_when_not_numbered() -> None:
    numbered = ViewState(True, 5)
    with pytest.raises(ProtocolViolation, match="seq None after 0"):
        numbered.apply(RESET)
    assert _state(_window(_update("a", 4, 0))) == [("a", 4, {"v": 4}), ("b", 5, {"v": 5})]


def test_an_eviction_leave_and_a_promotion_enter_repeat_the_version_held() -> None:
    view = _window(_leave("b", 5, 1), _enter("b", 5, 1), remember=True)
    assert _state(view) == [("a", 3, {"v": 3}), ("b", 5, {"v": 5})]


# -- each rule a broken stream breaks (every message below is valid without the rule)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (_update("a", 3, 0), "update of 'a' v3 again .* a duplicate"),
        (_update("b", 5, 1, "move", 0), "move of 'b' v5 again .* a duplicate"),
        (_update("a", 2, 0), "update of 'a': its version went back 3 -> 2"),
        (_leave("b", 4, 1), "leave of 'b': its version went back 5 -> 4"),
        (_update("a", 4, 1), "the list holds 'b' there"),
        (_enter("a", 4, 2), "enter of 'a', already in the list"),
        (_update("a", 4, 0, to=1), "update of 'a' from 0 to 1"),
        ({**_leave("a", 3, 0), "version": "3"}, "without a string id and an integer version"),
        ({**_enter("c", 1, 2), "row": [1]}, "without a row object"),
        ({"op": "match", "id": "c", "version": 1, "row": {}}, "op 'match' in window mode"),
        ({"op": "synced", "count": 3}, "synced count 3, the list holds 2"),
        ({"op": "synced", "count": 2}, "synced again without a reset"),
    ],
)
def test_the_window_refuses_what_breaks_a_rule(message: dict[str, Any], error: str) -> None:
    view = _window()
    before = _state(view)
    with pytest.raises(ProtocolViolation, match=error):
        view.apply(message)
    assert _state(view) == before  # a refused message leaves the list as it was


def test_a_full_window_refuses_an_enter_and_keeps_its_rows() -> None:
    view = _window(limit=2)
    with pytest.raises(ProtocolViolation, match="a list of 3 exceeds limit 2"):
        view.apply(_enter("c", 1, 2))
    assert [r.id for r in view.current()] == ["a", "b"]


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (_change("match", "a", 4), "match of 'a', already matched"),
        (_change("update", "a", 3), "update of 'a' v3 again .* a duplicate"),
        (_change("unmatch", "a", 3), "unmatch of 'a' v3 again .* a duplicate"),
        (_change("update", "a", 2), "its version went back 3 -> 2"),
        (_change("update", "z", 9), "update of 'z', not matched"),
        ({"op": "unmatch", "id": "z", "version": 9, "row": None}, "unmatch of 'z', not matched"),
        (_enter("z", 9, 0), "op 'enter' in changes mode"),
    ],
)
def test_the_changes_list_refuses_what_breaks_a_rule(message: dict[str, Any], error: str
                                                     ) -> None:
    view = _changes()
    with pytest.raises(ProtocolViolation, match=error):
        view.apply(message)
    assert _state(view) == [("a", 3, {"v": 3})]


def test_a_truncated_snapshot_takes_changes_of_rows_it_does_not_hold() -> None:
    view = _changes(_change("update", "z", 9), {"op": "unmatch", "id": "y", "version": 4,
                                                "row": None}, truncated=True)
    assert sorted(_state(view)) == [("a", 3, {"v": 3}), ("z", 9, {"v": 9})]
    view.apply(RESET)  # the next snapshot is whole until its synced says otherwise
    assert not view.truncated
    with pytest.raises(ProtocolViolation, match="not matched"):
        view.apply(_change("update", "z", 10))


def test_remember_refuses_a_version_going_back_across_a_reset() -> None:
    stream = (RESET, _enter("a", 2, 0))  # a stale snapshot: a was v3 before the reset
    forgetful = _window(*stream)
    assert _state(forgetful) == [("a", 2, {"v": 2})]  # only held rows are checked
    with pytest.raises(ProtocolViolation, match="enter of 'a': its version went back 3 -> 2"):
        _window(*stream, remember=True)


def test_remember_refuses_a_change_of_a_row_no_longer_held_twice() -> None:
    stream = (_change("unmatch", "a", 4), _change("match", "a", 4))  # unmatched at v4
    assert _state(_changes(*stream)) == [("a", 4, {"v": 4})]
    with pytest.raises(ProtocolViolation, match="match of 'a' v4 again since the reset"):
        _changes(*stream, remember=True)
    # a snapshot after a reset may hold a row at the version it had before
    view = _changes(RESET, _change("match", "a", 3), remember=True)
    assert _state(view) == [("a", 3, {"v": 3})]


def test_a_dropped_list_waits_for_a_reset() -> None:
    view = _window()
    view.drop()
    assert view.current() == []
    with pytest.raises(ProtocolViolation, match="the first message is 'update', not reset"):
        view.apply(_update("a", 4, 0))
    view.apply(RESET)
    view.apply(_enter("a", 4, 0))
    assert _state(view) == [("a", 4, {"v": 4})]


def test_a_message_read_once_steps_many_lists() -> None:
    one, two = _window(), _window()
    delta = read(_update("a", 4, 0))
    one.step(delta)
    two.step(delta)
    assert one.current()[0] is two.current()[0]  # the same row, built once
    with pytest.raises(ProtocolViolation, match="a duplicate"):
        one.step(delta)


# -- the simulated subscriber records what the applier refuses


def test_the_simulated_subscriber_records_and_goes_on() -> None:
    sub = SimSub("gw.1", 7, "t", {"entity": "e", "limit": 2}, time.monotonic())
    sub.apply([RESET, _enter("a", 3, 0), {"op": "synced", "count": 1}], "s0", 10, 0.0)
    sub.apply([_update("a", 3, 0), _enter("b", 1, 1)], "s0", 10, 1.0)  # a duplicate, then ok
    assert len(sub.errors) == 1 and "a duplicate" in sub.errors[0]
    assert "recent: [(1, 's0', 10, 'reset'" in sub.errors[0]
    assert sub.ids() == ["a", "b"] and sub.items[1].row == {"v": 1} and sub.synced
    sub.apply([RESET, _enter("a", 2, 0)], "s1", 11, 2.0)  # v3 before: a stale snapshot
    assert len(sub.errors) == 2 and "went back 3 -> 2" in sub.errors[1]
    assert sub.ids() == [] and not sub.synced  # the list started over at the reset
    assert sub.resets == 2 and [e for _, _, e in sub.reset_log] == [10, 11]


def test_resume_keeps_a_synced_list_and_is_checked_like_a_snapshot() -> None:
    view = _window()
    held = view.held()
    assert held == [(r.id, r.version) for r in view.rows] and len(held) == 2
    view.restart()
    with pytest.raises(ProtocolViolation):  # the count must be the list's
        view.step(read({"op": "resume", "count": 3}))
    view.step(read({"op": "resume", "count": 2}))
    with pytest.raises(ProtocolViolation):  # resume once, as the first message only
        view.step(read({"op": "resume", "count": 2}))
    view.step(read(_update(held[1][0], held[1][1] + 1, 1)))
    after = [(r.id, r.version) for r in view.rows]
    with pytest.raises(DigestMismatch):
        view.step(read({"op": "synced", "count": 2, "digest": digest(held)}))
    view.step(read({"op": "synced", "count": 2, "digest": digest(after)}))
    assert view.synced and view.held() == after


def test_resume_is_refused_to_a_list_that_was_not_synced_or_started_over() -> None:
    view = ViewState(True, 5, numbered=False)
    view.step(read(RESET))
    view.step(read(_enter("a", 1, 0)))
    assert view.held() is None  # a snapshot cut short: never declared
    view.restart()
    with pytest.raises(ProtocolViolation):
        view.step(read({"op": "resume", "count": 1}))
    changes = ViewState(False, 5, numbered=False)
    changes.step(read(RESET))
    changes.step(read({"op": "synced", "count": 0}))
    assert changes.held() is None
