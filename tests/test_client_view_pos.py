"""The strict applier's log-position resume (PROTOCOL.md section 3, "Log-position
resume"): `pos` kept, the relaxed `match`/`unmatch` only between `resume` and `synced`."""

from __future__ import annotations

from typing import Any

import pytest
from lq_client.view import ProtocolViolation, ViewState


def d(seq: int, op: str, **kw: Any) -> dict[str, Any]:
    return {"type": "delta", "sub": "c", "seq": seq, "op": op, **kw}


def synced_set() -> ViewState:
    s = ViewState(False, 10)
    s.apply(d(1, "reset", reason="subscribe"))
    s.apply(d(2, "match", id="a", version=1, row={"n": 1}))
    s.apply(d(3, "match", id="b", version=2, row={"n": 2}))
    s.apply(d(4, "synced", count=2, truncated=False, pos="5-0.2"))
    s.apply(d(5, "update", id="a", version=3, row={"n": 3}, pos="6-0.3"))
    s.restart()
    return s


def test_pos_is_kept_and_a_resume_applies_the_relaxed_ops() -> None:
    s = synced_set()
    assert s.held_pos() == "6-0.3" and s.held() is None
    s.apply(d(1, "resume", pos="6-0.3"))
    s.apply(d(2, "match", id="a", version=3, row={"n": 3}))  # held, same version: kept
    s.apply(d(3, "match", id="c", version=7, row={"n": 7}))  # new: added
    s.apply(d(4, "unmatch", id="zz", version=8, row=None))  # not held: a no-op
    s.apply(d(5, "unmatch", id="b", version=9, row=None))  # held: removed
    s.apply(d(6, "synced", count=2, truncated=False, pos="9-0.9"))
    assert {r.id: r.version for r in s.current()} == {"a": 3, "c": 7}
    assert s.pos == "9-0.9"
    with pytest.raises(ProtocolViolation):  # strict again after synced
        s.apply(d(7, "match", id="a", version=10, row={}))


@pytest.mark.parametrize("bad", [
    d(1, "resume", pos="1-0.1"),  # not the pos the list is at
    d(1, "resume"),
])
def test_a_resume_from_another_position_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ProtocolViolation):
        synced_set().apply(bad)


def test_relaxed_ops_never_go_back_and_the_count_is_checked() -> None:
    s = synced_set()
    s.apply(d(1, "resume", pos="6-0.3"))
    with pytest.raises(ProtocolViolation):
        s.apply(d(2, "match", id="a", version=2, row={}))  # older than held
    s.apply(d(3, "unmatch", id="x", version=1, row=None))  # (seq 2 was taken)
    with pytest.raises(ProtocolViolation):
        s.apply(d(4, "synced", count=5, truncated=False, pos="7-0.1"))


def test_a_truncated_or_unsynced_list_names_no_pos() -> None:
    s = ViewState(False, 1)
    s.apply(d(1, "reset"))
    s.apply(d(2, "match", id="a", version=1, row={}))
    s.apply(d(3, "synced", count=1, truncated=True, pos="5-0.2"))
    s.restart()
    assert s.held_pos() is None
    with pytest.raises(ProtocolViolation):
        s.apply(d(1, "resume", pos="5-0.2"))


def test_a_changes_mode_resume_without_a_pos_is_refused_even_when_none_was_held() -> None:
    """An older gateway's changes-mode synced names no pos; a resume naming none then
    must not be taken as a match (the JavaScript applier refuses it too)."""
    s = ViewState(False, 10)
    s.apply(d(1, "reset", reason="subscribe"))
    s.apply(d(2, "synced", count=0, truncated=False))
    s.restart()
    assert s.held_pos() is None
    with pytest.raises(ProtocolViolation):
        s.apply(d(1, "resume"))
