"""The proof can fail: `lq chaos`'s checker reports a planted gap, duplicate, stale
version, over-long list and wrong list, and passes a correct stream; the model's
ambiguity (unknown outcomes, expiries, lost writes) only widens what passes; the same
seed plans the same fault timeline."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from lq_client.view import digest

from lq.chaos import compare
from lq.chaos.check import SubCheck
from lq.chaos.faults import FaultRecord
from lq.chaos.model import INF, Model, RowHistory, Write
from lq.chaos.schedule import ALL_KINDS, Fault, PlanSettings, plan
from lq.chaos.verdict import classify_rewinds

WINDOW = {"entity": "tasks", "where": {}, "sort": ["-n"], "limit": 2, "mode": "window"}


def _stream(*ops: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "delta", "sub": "c", "seq": i + 1, **op} for i, op in enumerate(ops)]


def _enter(rid: str, version: int, n: int, to: int) -> dict[str, Any]:
    return {"op": "enter", "id": rid, "version": version, "row": {"n": n}, "from": -1,
            "to": to, "cursor": "x"}


GOOD = _stream({"op": "reset"}, _enter("a", 5, 9, 0), _enter("b", 6, 8, 1),
               {"op": "synced", "count": 2},
               {"op": "update", "id": "a", "version": 7, "row": {"n": 10}, "from": 0,
                "to": 0, "cursor": "x"})


def _run(messages: list[dict[str, Any]], query: dict[str, Any] = WINDOW) -> SubCheck:
    sub = SubCheck("ws-0.s0", "t0", query)
    sub.new_life()
    for i, m in enumerate(messages):
        sub.apply(m, 1000.0 + i)
    return sub


def _kinds(sub: SubCheck) -> list[str]:
    return [a.kind for a in sub.anomalies]


def test_a_correct_stream_passes() -> None:
    sub = _run(GOOD)
    assert sub.anomalies == [] and sub.rewinds == []
    assert sub.is_synced and [r for r, _, _ in sub.listed()] == ["a", "b"]
    assert len(sub.snapshots) == 1 and sub.snapshots[0].rows[0] == ("a", 5, {"n": 9})


def test_a_planted_gap_is_reported() -> None:
    stream = [*GOOD[:4], {**GOOD[4], "seq": 6}]
    sub = _run(stream)
    assert _kinds(sub) == ["gap"] and "seq 6 after 4" in sub.anomalies[0].detail
    assert sub.broken  # nothing more applies until the subscription starts over


def test_a_planted_duplicate_is_reported() -> None:
    by_seq = _run([*GOOD, GOOD[4]])  # the same message again
    assert _kinds(by_seq) == ["duplicate"]
    again = {**GOOD[4], "seq": 6}  # the same change again, numbered on
    by_version = _run([*GOOD, again])
    assert _kinds(by_version) == ["duplicate"] and "again" in by_version.anomalies[0].detail


def test_a_stale_version_is_reported_unless_redis_lost_the_newer_one() -> None:
    stream = [*GOOD, *[{**m, "seq": 6 + i} for i, m in enumerate(
        [{"op": "reset"}, _enter("a", 6, 9, 0), {"op": "synced", "count": 1}])]]
    sub = _run(stream)
    assert sub.anomalies == [] and [(r.row, r.newer, r.older) for r in sub.rewinds] == [
        ("a", 7, 6)]
    lossy = FaultRecord(Fault(0.0, "failover", "third-0"), start=0.0, lossy=True)
    assert classify_rewinds([sub], [lossy], lambda *key: True) == 1  # v7 was lost
    assert sub.anomalies == []
    assert classify_rewinds([sub], [lossy], lambda *key: False) == 0  # v7 survived
    assert _kinds(sub) == ["stale"] and "v7 -> v6" in sub.anomalies[0].detail
    fresh = _run(stream)
    assert classify_rewinds([fresh], [], lambda *key: True) == 0  # no fault could lose it
    assert _kinds(fresh) == ["stale"]


def test_an_over_long_list_is_reported() -> None:
    sub = _run([*GOOD[:3], _enter("c", 7, 1, 2) | {"seq": 4}])
    assert _kinds(sub) == ["over_limit"]


def test_other_violations_are_protocol_anomalies() -> None:
    sub = _run([*GOOD[:3], {"type": "delta", "seq": 4, "op": "synced", "count": 5}])
    assert _kinds(sub) == ["protocol"] and "count" in sub.anomalies[0].detail
    first = _run([GOOD[1] | {"seq": 1}])
    assert _kinds(first) == ["protocol"] and "reset" in first.anomalies[0].detail


def test_a_new_life_starts_seq_over() -> None:
    sub = _run(GOOD)
    sub.new_life()
    for i, m in enumerate(GOOD[:4]):
        sub.apply(m, 2000.0 + i)
    assert sub.anomalies == [] and sub.lives == 2


def test_a_reconnect_declares_a_synced_list_and_a_resume_keeps_it() -> None:
    sub = _run(GOOD)
    sub.new_life(keep=True)
    message = sub.subscribe_message("ws-0.s0.2")
    assert message["resume"] == {"rows": [("a", 7), ("b", 6)]} and sub.declared == 1
    resume = _stream({"op": "resume", "count": 2},
                     {"op": "update", "id": "b", "version": 9, "row": {"n": 8}, "from": 1,
                      "to": 1, "cursor": "x"},
                     {"op": "synced", "count": 2, "digest": digest([("a", 7), ("b", 9)])})
    for i, m in enumerate(resume):
        sub.apply(m, 2000.0 + i)
    assert sub.anomalies == [] and len(sub.resumes) == 1 and len(sub.resets) == 1
    assert sub.restarts == [1000.0, 2000.0] and sub.snapshots[-1].reset_t == 2000.0
    assert sub.listed() == (("a", 7, {"n": 10}), ("b", 9, {"n": 8}))


def test_a_life_started_over_declares_nothing_and_a_resume_then_is_a_violation() -> None:
    sub = _run([*GOOD[:3], {**GOOD[4], "seq": 6}])  # a gap: broken
    sub.new_life(keep=True)
    assert "resume" not in sub.subscribe_message("ws-0.s0.2") and sub.declared == 0
    sub.apply({"type": "delta", "sub": "c", "seq": 1, "op": "resume", "count": 2}, 2000.0)
    assert _kinds(sub) == ["gap", "protocol"]
    missed = _run(GOOD)
    missed.new_life(keep=True)
    missed.subscribe_message("ws-0.s0.2")
    missed.apply({"type": "delta", "sub": "c", "seq": 1, "op": "reset",
                  "reason": "resume_miss"}, 2000.0)
    assert missed.misses == 1 and missed.anomalies == []


# -- lists against the model and the HTTP query


def _model(*writes: tuple[str, Write]) -> dict[str, RowHistory]:
    m = Model()
    for rid, w in writes:
        m.record(("t0", "tasks", rid), w)
    return dict(m.collection("t0", "tasks"))


def test_a_wrong_final_list_is_reported() -> None:
    coll = _model(("a", Write(10, {"n": 9})), ("b", Write(11, {"n": 8})),
                  ("c", Write(12, {"n": 1})), ("a", Write(20, {"n": 0})))
    right = (("b", 11, {"n": 8}), ("c", 12, {"n": 1}))
    assert compare.final_diff(WINDOW, None, right, False, coll, 10**9, 0) is None
    stale = (("a", 10, {"n": 9}), ("b", 11, {"n": 8}))  # misses a's update
    assert "not a state" in str(compare.final_diff(WINDOW, None, stale, False, coll, 10**9, 0))
    short = (("b", 11, {"n": 8}),)  # c belongs in the window
    assert "is missing" in str(compare.final_diff(WINDOW, None, short, False, coll,
                                                  10**9, 0))
    swapped = (right[1], right[0])
    assert "out of order" in str(compare.final_diff(WINDOW, None, swapped, False, coll,
                                                     10**9, 0))
    http = [{"id": r, "version": v, "row": vals} for r, v, vals in right]
    assert compare.http_diff(WINDOW, right, False, http) is None
    assert "window" in str(compare.http_diff(WINDOW, short, False, http))


def test_a_snapshot_passes_at_some_version_of_its_window_only() -> None:
    coll = _model(("a", Write(10, {"n": 9})), ("b", Write(11, {"n": 8})),
                  ("a", Write(20, {"n": 0})), ("c", Write(30, {"n": 5})))
    old = (("a", 10, {"n": 9}), ("b", 11, {"n": 8}))  # as of 11..19
    assert compare.snapshot_diff(WINDOW, None, old, False, coll, 0, 25) is None
    assert compare.snapshot_diff(WINDOW, None, old, False, coll, 20, 40) is not None
    mixed = (("a", 20, {"n": 0}), ("b", 11, {"n": 8}))  # never a state: b ranks first
    assert compare.snapshot_diff(WINDOW, None, mixed, False, coll, 0, 40) is not None


def test_changes_mode_and_truncation() -> None:
    changes = {"entity": "tasks", "where": {"n": {"$gte": 5}}, "mode": "changes"}
    coll = _model(("a", Write(10, {"n": 9})), ("b", Write(11, {"n": 1})),
                  ("c", Write(12, {"n": 7})))
    both = (("c", 12, {"n": 7}), ("a", 10, {"n": 9}))
    assert compare.final_diff(changes, None, both, False, coll, 10**9, 0) is None
    assert compare.final_diff(changes, None, both[:1], False, coll, 10**9, 0) is not None
    truncated = {**changes, "limit": 1}
    assert compare.final_diff(truncated, None, both[:1], True, coll, 10**9, 0) is None


def test_ambiguity_widens_and_settles() -> None:
    h = RowHistory()
    h.add(Write(10, {"n": 1}, expires=50))
    assert h.possible(40) == [(10, {"n": 1})]
    assert h.possible(60) == [(10, {"n": 1}), None]  # the sweep may or may not have run
    assert h.possible(INF, now=100, grace=10) == [None]  # settled at the end
    h.add(Write(90, None, since=70, acked=False))  # a delete read back: in [70, 90]
    assert None in h.possible(75) and h.possible(95) == [None]
    m = Model()
    m.record(("t", "e", "r"), Write(5, {"n": 1}))
    m.record(("t", "e", "r"), Write(8, {"n": 2}))
    lost = m.reconcile(("t", "e", "r"), (5, {"n": 1}))
    assert [w.version for w in lost] == [8] and len(m.lost) == 1
    h2 = m.history("t", "e", "r")
    assert h2.possible(9) == [(5, {"n": 1}), (8, {"n": 2})]  # a snapshot before the loss
    assert h2.possible(INF, now=0) == [(5, {"n": 1})]  # after it


# -- the fault timeline


def _settings(seed: int, **kw: Any) -> PlanSettings:
    base = PlanSettings(seed=seed, duration=120.0, kinds=tuple(ALL_KINDS), shards=3,
                        gateways=2, slow_clients=("ws-0", "poll-0"), lease_s=2.0)
    return dataclasses.replace(base, **kw)


def test_same_seed_same_timeline() -> None:
    assert plan(_settings(7)) == plan(_settings(7))
    assert plan(_settings(7)) != plan(_settings(8))


@pytest.mark.parametrize("seed", range(20))
def test_every_kind_comes_and_targets_exist(seed: int) -> None:
    faults = plan(_settings(seed, duration=90.0))
    assert {f.kind for f in faults} >= set(ALL_KINDS) - {"remove-shard", "add-shard"}
    assert [f.t for f in faults] == sorted(f.t for f in faults)
    live = {"shard-0", "shard-1", "shard-2"}
    for f in faults:
        if f.kind == "add-shard":
            live.add(f.target)
        elif f.kind in ("kill", "term", "stop", "partition", "remove-shard"):
            assert f.target in live
            if f.kind == "remove-shard":
                live.remove(f.target)
        assert live


def test_a_loss_scan_ghosts_only_what_redis_cannot_explain() -> None:
    key = ("t", "e", "r")

    def model(*writes: Write) -> Model:
        m = Model()
        for w in writes:
            m.record(key, w)
        return m

    # gone: the TTL put at 20 expired (25 <= now), so only the put after it was lost
    m = model(Write(10, {"n": 1}), Write(20, {"n": 2}, expires=25), Write(30, {"n": 3}))
    assert [w.version for w in m.reconcile(key, None, lost_at=28, now=40)] == [30]
    assert len(m.lost) == 1
    # gone with its expiry passed: explained, nothing lost
    m = model(Write(10, {"n": 1}), Write(20, {"n": 2}, expires=25))
    assert m.reconcile(key, None, lost_at=28, now=40) == [] and not m.lost
    # gone before its expiry: nothing explains it, so every write back to the last
    # absence (none: the row's creation) was lost
    m = model(Write(10, {"n": 1}), Write(20, {"n": 2}, expires=50))
    assert [w.version for w in m.reconcile(key, None, lost_at=15, now=40)] == [10, 20]
    # present at an older version: what came after it was lost
    m = model(Write(10, {"n": 1}), Write(20, None), Write(30, {"n": 3}))
    assert [w.version for w in m.reconcile(key, (10, {"n": 1}), lost_at=25, now=40)] == [
        20, 30]


def test_a_loss_the_scan_cannot_tell_is_a_maybe() -> None:
    m = Model()
    key = ("t", "e", "r")
    m.record(key, Write(10, {"n": 1}, expires=20))  # before the fault at 15
    m.record(key, Write(16, None))  # a delete the master acknowledged during the fault
    assert m.reconcile(key, None, lost_at=15, now=40) == []  # expired, or deleted?
    h = m.history(*key)
    assert [w.maybe_lost for w in h.writes] == [False, True] and m.maybe_lost == 1
    assert (10, {"n": 1}) in h.possible(17)  # the delete may be gone: v10 until it expired
    assert h.possible(INF, now=40, grace=5) == [None]


def test_recovery_counts_resets_by_reason_and_resumes_apart() -> None:
    from lq.chaos.report import measure_recovery
    from lq.chaos.runner import Outcome
    from lq.chaos.settings import ChaosSettings

    reset = _run(GOOD)  # reset at 1000, synced at 1003
    reset.resets, reset.reset_reasons = [1000.0], ["failover"]
    resumed = _run(GOOD)
    resumed.resets, resumed.reset_reasons, resumed.resumes = [], [], [1001.0]
    resumed.synced = [1004.5]
    gone = FaultRecord(Fault(0.0, "gateway", "gateway-0"), start=999.0)
    out = Outcome(ChaosSettings(), [], records=[gone], subs=[reset, resumed])
    measure_recovery(out)
    assert (gone.resets, gone.resumes, dict(gone.reasons)) == (1, 1, {"failover": 1})
    assert gone.recovery == pytest.approx(5.5)  # the resumed list's synced came last
