"""The gateway's mirror on the client's applier: it breaks on what a client would refuse,
on a bound passed and on a truncated snapshot, serves again after the next reset +
synced, and reads a group once for every subscription it is handed to. (Its snapshot
against the shard's matcher is a property test in tests/test_live_wire.py.)"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.live.group import Group
from gateway.live.mirror import Mirror

RESET: dict[str, Any] = {"op": "reset"}


def _key(rid: str, values: dict[str, Any]) -> bytes:
    return rid.encode()


def _enter(rid: str, version: int, to: int) -> dict[str, Any]:
    return {"op": "enter", "id": rid, "version": version, "row": {"v": version},
            "from": -1, "to": to, "cursor": "c"}


def _update(rid: str, version: int, index: int) -> dict[str, Any]:
    return {"op": "update", "id": rid, "version": version, "row": {"v": version},
            "from": index, "to": index, "cursor": "c"}


def _window(limit: int = 5, max_bytes: int = 1 << 20) -> Mirror:
    mirror = Mirror(True, limit, max_bytes, _key)
    mirror.apply([RESET, _enter("a", 1, 0), _enter("b", 1, 1), {"op": "synced", "count": 2}],
                 10)
    assert mirror.complete
    return mirror


def _rows(mirror: Mirror) -> list[tuple[str, int]]:
    snapshot = mirror.snapshot()
    assert snapshot is not None
    bodies = [orjson.loads(b"{" + body) for _, body in snapshot]
    return [(b["id"], b["version"]) for b in bodies if "id" in b]


def test_a_message_the_client_refuses_breaks_the_mirror_until_reset_and_synced() -> None:
    mirror = _window()
    mirror.apply([_update("a", 2, 0)], 10)
    assert _rows(mirror) == [("a", 2), ("b", 1)]
    mirror.apply([_update("a", 2, 0)], 10)  # the same change again
    assert not mirror.complete and mirror.snapshot() is None and len(mirror) == 0
    mirror.apply([_update("b", 2, 1)], 10)  # ignored: it waits for a reset
    assert mirror.snapshot() is None
    mirror.apply([RESET, _enter("b", 2, 0)], 10)
    assert mirror.filling and mirror.snapshot() is None
    mirror.apply([{"op": "synced", "count": 1}], 10)
    assert _rows(mirror) == [("b", 2)]


def test_a_second_synced_without_its_reset_breaks_the_mirror() -> None:
    mirror = _window()
    mirror.apply([{"op": "synced", "count": 2}], 10)
    assert mirror.snapshot() is None


def test_replaced_rows_give_back_their_bytes() -> None:
    mirror = _window(max_bytes=25)  # a and b: 20 bytes
    for version in range(2, 20):
        mirror.apply([_update("a", version, 0)], 10 + version % 2)
    assert mirror.complete and mirror.size == 21
    mirror.apply([{"op": "leave", "id": "b", "version": 1, "from": 1, "to": -1},
                  _enter("c", 1, 1)], 14)
    assert mirror.complete and mirror.size == 25
    mirror.apply([_update("a", 20, 0)], 12)
    assert mirror.snapshot() is None  # 26 bytes


def test_a_smaller_limit_applies_to_the_window_at_once() -> None:
    mirror = _window()
    mirror.limit = 2  # a reanchor: the old window's deltas may still come before its reset
    mirror.apply([_enter("c", 1, 2)], 10)
    assert mirror.snapshot() is None


def test_changes_mode_breaks_on_a_truncated_snapshot_and_past_its_limit() -> None:
    match = {"op": "match", "id": "a", "version": 1, "row": {}}
    truncated = Mirror(False, 1, 1 << 20, _key)
    truncated.apply([RESET, match, {"op": "synced", "count": 1, "truncated": True}], 10)
    assert truncated.snapshot() is None
    full = Mirror(False, 1, 1 << 20, _key)
    full.apply([RESET, match, {"op": "synced", "count": 1, "truncated": False}], 10)
    assert full.complete
    full.apply([{**match, "id": "b"}], 10)  # a second matching row: more than a snapshot
    assert full.snapshot() is None


def test_mirrors_handed_one_group_read_it_once_and_keep_their_own_lists() -> None:
    one, two, broken = _window(), _window(), _window()
    broken.apply([_update("a", 1, 0)], 10)  # a duplicate: broken
    group = Group.of([_update("a", 2, 0), {"op": "leave", "id": "b", "version": 1,
                                           "from": 1, "to": -1}], 10)
    for mirror in (one, two, broken):
        mirror.apply_reads(group.reads, group.unit)  # as Subscription.deliver does
    assert _rows(one) == _rows(two) == [("a", 2)]
    assert one.view.rows[0] is two.view.rows[0]  # one row object for both
    assert broken.snapshot() is None
    two.apply([_update("a", 3, 0)], 10)
    assert _rows(one) == [("a", 2)] and _rows(two) == [("a", 3)]
