"""The pure delivery core: every phase x every input of the fence, the frame counters,
and the gap policy's three groups (written out here as a table, not derived from the
code under test)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from gateway.live.delivery import (
    FrameCounters,
    FrameVerdict,
    Phase,
    SubFence,
    Verdict,
    gap_targets,
)

A1 = ("shard-a", "inc1")
A2 = ("shard-a", "inc2")  # shard-a restarted
B1 = ("shard-b", "inc1")
EPOCH = 5  # the epoch a LIVE or RESETTING fence holds


def fence_in(phase: Phase) -> SubFence:
    fence = SubFence()
    if phase is Phase.PENDING:
        return fence
    assert fence.admit(EPOCH, A1, True) is Verdict.DELIVER
    if phase is Phase.RESETTING:
        fence.lost()
    elif phase is Phase.CLOSED:
        fence.close()
    assert fence.phase is phase
    return fence


# (phase, epoch of the group relative to the fence's, starts with reset)
#   -> (verdict, phase after, epoch after, source after is the group's)
OLDER, SAME, NEWER = -1, 0, 1
ADMIT: dict[tuple[Phase, int, bool], tuple[Verdict, Phase, int, bool]] = {
    (Phase.PENDING, OLDER, True): (Verdict.STALE, Phase.PENDING, 0, False),
    (Phase.PENDING, OLDER, False): (Verdict.STALE, Phase.PENDING, 0, False),
    (Phase.PENDING, SAME, True): (Verdict.DELIVER, Phase.LIVE, 0, True),
    (Phase.PENDING, SAME, False): (Verdict.WAITING, Phase.PENDING, 0, False),
    (Phase.PENDING, NEWER, True): (Verdict.DELIVER, Phase.LIVE, 1, True),
    (Phase.PENDING, NEWER, False): (Verdict.WAITING, Phase.PENDING, 0, False),
    (Phase.LIVE, OLDER, True): (Verdict.STALE, Phase.LIVE, EPOCH, False),
    (Phase.LIVE, OLDER, False): (Verdict.STALE, Phase.LIVE, EPOCH, False),
    (Phase.LIVE, SAME, True): (Verdict.DELIVER, Phase.LIVE, EPOCH, True),
    (Phase.LIVE, SAME, False): (Verdict.DELIVER, Phase.LIVE, EPOCH, False),
    (Phase.LIVE, NEWER, True): (Verdict.DELIVER, Phase.LIVE, EPOCH + 1, True),
    (Phase.LIVE, NEWER, False): (Verdict.LOST_RESET, Phase.RESETTING, EPOCH, False),
    (Phase.RESETTING, OLDER, True): (Verdict.STALE, Phase.RESETTING, EPOCH, False),
    (Phase.RESETTING, OLDER, False): (Verdict.STALE, Phase.RESETTING, EPOCH, False),
    (Phase.RESETTING, SAME, True): (Verdict.DELIVER, Phase.LIVE, EPOCH, True),
    (Phase.RESETTING, SAME, False): (Verdict.WAITING, Phase.RESETTING, EPOCH, False),
    (Phase.RESETTING, NEWER, True): (Verdict.DELIVER, Phase.LIVE, EPOCH + 1, True),
    (Phase.RESETTING, NEWER, False): (Verdict.WAITING, Phase.RESETTING, EPOCH, False),
    (Phase.CLOSED, OLDER, True): (Verdict.CLOSED, Phase.CLOSED, EPOCH, False),
    (Phase.CLOSED, OLDER, False): (Verdict.CLOSED, Phase.CLOSED, EPOCH, False),
    (Phase.CLOSED, SAME, True): (Verdict.CLOSED, Phase.CLOSED, EPOCH, False),
    (Phase.CLOSED, SAME, False): (Verdict.CLOSED, Phase.CLOSED, EPOCH, False),
    (Phase.CLOSED, NEWER, True): (Verdict.CLOSED, Phase.CLOSED, EPOCH, False),
    (Phase.CLOSED, NEWER, False): (Verdict.CLOSED, Phase.CLOSED, EPOCH, False),
}


def test_the_table_covers_every_phase_and_input() -> None:
    assert set(ADMIT) == set(itertools.product(Phase, (OLDER, SAME, NEWER), (True, False)))


@pytest.mark.parametrize(("phase", "relative", "reset"), list(ADMIT),
                         ids=[f"{p.value}-{r}-{'reset' if s else 'delta'}" for p, r, s in ADMIT])
def test_admit(phase: Phase, relative: int, reset: bool) -> None:
    fence = fence_in(phase)
    before_epoch, before_source = fence.epoch, fence.source
    epoch = before_epoch + relative
    verdict, after, epoch_after, takes_source = ADMIT[(phase, relative, reset)]
    assert fence.admit(epoch, B1, reset) is verdict
    assert fence.phase is after
    assert fence.epoch == epoch_after
    assert fence.source == (B1 if takes_source else before_source)


# phase -> phase after `lost()`, after `close()`
LOST = {Phase.PENDING: Phase.PENDING, Phase.LIVE: Phase.RESETTING,
        Phase.RESETTING: Phase.RESETTING, Phase.CLOSED: Phase.CLOSED}


@pytest.mark.parametrize("phase", list(Phase), ids=[p.value for p in Phase])
def test_lost_and_close(phase: Phase) -> None:
    fence = fence_in(phase)
    fence.lost()
    assert fence.phase is LOST[phase]
    assert fence.awaiting is (LOST[phase] in (Phase.PENDING, Phase.RESETTING))
    fence.close()
    assert fence.closed


def test_no_way_out_of_closed_and_no_way_back_to_pending() -> None:
    fence = fence_in(Phase.CLOSED)
    for phase in (Phase.PENDING, Phase.LIVE, Phase.RESETTING):
        with pytest.raises(RuntimeError):
            fence.move(phase)
    live = fence_in(Phase.LIVE)
    with pytest.raises(RuntimeError):
        live.move(Phase.PENDING)


def test_frame_counters() -> None:
    counters = FrameCounters()
    assert counters.check(A1, 1) is FrameVerdict.NEXT
    assert counters.check(A1, 2) is FrameVerdict.NEXT
    assert counters.check(A1, 4) is FrameVerdict.GAP
    assert counters.expected(A1) == 5
    # a counter going backwards (a correct shard never sends it) re-bases as a gap
    assert counters.check(A1, 2) is FrameVerdict.GAP
    assert counters.check(A1, 3) is FrameVerdict.NEXT
    # the first frame seen from an incarnation counts from 0: a lost first frame is a gap
    assert counters.check(A2, 2) is FrameVerdict.GAP
    assert counters.check(B1, 1) is FrameVerdict.NEXT


def test_frame_counters_forget_the_oldest_and_then_err_towards_a_gap() -> None:
    counters = FrameCounters(bound=2)
    counters.check(A1, 1)
    counters.check(A2, 1)
    counters.check(A1, 2)  # A1 is the most recent again
    counters.check(B1, 1)  # A2 is forgotten
    assert A2 not in counters.last and len(counters.last) == 2
    assert counters.check(A2, 2) is FrameVerdict.GAP


@dataclass
class Sub:
    name: str
    p: int
    fence: SubFence = field(default_factory=SubFence)


def test_gap_targets_are_the_three_groups() -> None:
    owners = {1: "shard-a", 2: "shard-b", 3: "shard-a"}
    last_reset_by_a1 = Sub("reset by A1", 2)
    last_reset_by_a1.fence.admit(3, A1, True)
    pending = Sub("pending, elsewhere", 2)
    claimed = Sub("owned by shard-a now, last reset by B1", 1)
    claimed.fence.admit(3, B1, True)
    restarted = Sub("owned by shard-a, reset by its old incarnation", 3)
    restarted.fence.admit(3, A2, True)
    untouched = Sub("reset by B1, owned by shard-b", 2)
    untouched.fence.admit(3, B1, True)
    ended = Sub("closed", 1)
    ended.fence.close()
    subs = [last_reset_by_a1, pending, claimed, restarted, untouched, ended]
    hit = gap_targets(A1, subs, owners.get)
    assert [s.name for s in hit] == [last_reset_by_a1.name, pending.name, claimed.name,
                                     restarted.name]
