"""The re-send rule of the hub (gateway/live/patience.py): an overdue request waits while
the shard it went to keeps answering others, goes again once that shard has answered
nothing for a timeout, and never waits past `patience` timeouts since it was sent, however
busy its shard is. A pure rule over a given clock; the hub's use of it runs in the
test_live_* suites (gaps, failures)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.live.patience import PATIENCE, Patience

T = 2.0


def test_an_overdue_request_waits_while_its_shard_answers_others() -> None:
    p = Patience(T)
    p.answered("s0", 10.0)
    assert not p.resend_now("s0", sent_at=7.0, now=10.5)  # overdue, the shard busy
    assert p.resend_now("s0", sent_at=7.0, now=12.0)  # nothing answered for a timeout
    assert p.resend_now("s1", sent_at=7.0, now=10.5)  # another shard: no answer seen
    assert p.resend_now(None, sent_at=7.0, now=10.5)  # sent nowhere


def test_no_request_waits_past_its_longest_however_busy_its_shard() -> None:
    p = Patience(T)
    sent_at = 0.0
    now = T
    while now < T * PATIENCE:  # the shard answers others all along
        p.answered("s0", now)
        assert not p.resend_now("s0", sent_at, now)
        now += 0.1
    p.answered("s0", now)
    assert p.resend_now("s0", sent_at, now)


def test_only_live_shards_are_remembered() -> None:
    p = Patience(T)
    p.answered("s0", 1.0)
    p.answered("s1", 1.0)
    p.live(["s1"])
    assert set(p.answered_at) == {"s1"}
    assert p.resend_now("s0", sent_at=0.0, now=1.5)


@given(st.lists(st.floats(0, 100), max_size=30), st.floats(0, 100), st.floats(0, 300))
def test_the_wait_is_bounded(answers: list[float], sent_at: float, later: float) -> None:
    p = Patience(T)
    for at in sorted(answers):
        p.answered("s0", at)
    now = sent_at + later
    if later >= T * PATIENCE:
        assert p.resend_now("s0", sent_at, now)
    if not p.resend_now("s0", sent_at, now):  # deferred: only for a recent answer
        assert now - max(answers) < T
