"""The simulated gateway's own rules, without processes: the multi-process tests are only
as good as this checker, so it must catch what it claims to catch (epochs, gaps,
duplicates, wrong indexes, limits)."""

from __future__ import annotations

import time
from typing import Any

import orjson

from cluster.settings import StorageSettings
from lq.bench._shardsim import SimGateway, SimSub
from storage import DeltaFrame

UNUSED = StorageSettings(redis_url="redis://unused")  # never started: no Redis


def _sub(gw: SimGateway, rid: str, query: dict[str, Any], p: int = 7) -> SimSub:
    sub = SimSub(rid, p, "t", query, time.monotonic())
    gw.subs[rid] = sub
    return sub


def _frame(n: int, epoch: int, groups: list[tuple[tuple[str, ...], list[dict[str, Any]]]],
           shard: str = "s0", inc: str = "i0", p: int = 7) -> DeltaFrame:
    encoded = tuple((rids, orjson.dumps(msgs)) for rids, msgs in groups)
    return DeltaFrame(shard, inc, n, p, epoch, encoded)


def _enter(row_id: str, version: int, to: int) -> dict[str, Any]:
    return {"op": "enter", "id": row_id, "version": version, "row": {"n": version},
            "from": -1, "to": to, "cursor": "c"}


RESET = {"op": "reset"}


def test_epochs_resets_and_stale_frames() -> None:
    gw = SimGateway(UNUSED, "gw")
    sub = _sub(gw, "gw.1", {"entity": "e", "limit": 2})
    gw._frame(_frame(1, 10, [(("gw.1",), [_enter("a", 1, 0)])]), 0.0)
    assert sub.applied == 0 and sub.dropped_newer == 1  # nothing before the first reset
    gw._frame(_frame(2, 10, [(("gw.1",), [RESET, _enter("a", 1, 0),
                                          {"op": "synced", "count": 1}])]), 0.0)
    assert sub.synced and sub.ids() == ["a"] and not sub.awaiting
    # a newer epoch from another shard takes over only with its reset
    gw._frame(_frame(1, 20, [(("gw.1",), [_enter("b", 2, 0)])], shard="s1", inc="i1"), 0.0)
    assert sub.ids() == ["a"] and sub.awaiting  # dropped, and a resync is asked for
    gw._frame(_frame(2, 20, [(("gw.1",), [RESET, _enter("b", 2, 0),
                                          {"op": "synced", "count": 1}])], shard="s1",
                     inc="i1"), 0.0)
    assert sub.ids() == ["b"] and sub.epoch == 20
    # the old epoch is dropped from now on
    gw._frame(_frame(3, 10, [(("gw.1",), [_enter("c", 3, 0)])]), 0.0)
    assert sub.ids() == ["b"] and sub.dropped_stale == 1
    assert not sub.errors


def test_gap_asks_for_resync_and_drops_until_reset() -> None:
    gw = SimGateway(UNUSED, "gw")
    sub = _sub(gw, "gw.1", {"entity": "e", "limit": 5})
    pending = _sub(gw, "gw.2", {"entity": "e", "limit": 5})
    gw._frame(_frame(1, 10, [(("gw.1",), [RESET, {"op": "synced", "count": 0}])]), 0.0)
    gw._frame(_frame(3, 10, [(("gw.1",), [_enter("a", 1, 0)])]), 0.0)  # 2 is missing
    assert gw.gaps == 1 and sub.awaiting and sub.ids() == []
    assert pending.refresh  # still waiting for its first reset: resynced too
    gw._frame(_frame(4, 10, [(("gw.1",), [RESET, _enter("a", 1, 0),
                                          {"op": "synced", "count": 1}])]), 0.0)
    assert sub.ids() == ["a"] and not sub.awaiting and not sub.errors


def test_violations_are_recorded() -> None:
    gw = SimGateway(UNUSED, "gw")
    sub = _sub(gw, "gw.1", {"entity": "e", "limit": 1})
    update = {"op": "update", "id": "a", "version": 1, "row": {}, "from": 0, "to": 0,
              "cursor": "c"}
    gw._frame(_frame(1, 10, [(("gw.1",), [
        RESET, _enter("a", 1, 0), {"op": "synced", "count": 1},
        update,  # the snapshot already had v1: a duplicate
        _enter("b", 2, 1),  # over the limit of 1
        {"op": "leave", "id": "z", "version": 1, "from": 0, "to": -1},  # not at index 0
        {"op": "synced", "count": 5},  # wrong count
    ])]), 0.0)
    text = "\n".join(sub.errors)
    assert "duplicate" in text and "exceeds limit" in text
    assert "the list holds 'a'" in text and "synced count 5" in text
    changes = _sub(gw, "gw.2", {"entity": "e", "mode": "changes"})
    gw._frame(_frame(2, 10, [(("gw.2",), [
        RESET, {"op": "synced", "count": 0},
        {"op": "unmatch", "id": "q", "version": 3, "row": None},  # never matched
        {"op": "match", "id": "r", "version": 5, "row": {}},
        {"op": "update", "id": "r", "version": 4, "row": {}},  # version went back
    ])]), 0.0)
    text = "\n".join(changes.errors)
    assert "not matched" in text and "went back" in text
