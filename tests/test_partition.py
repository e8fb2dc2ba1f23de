"""Partitions and rendezvous ownership: stability, minimal movement, balance."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.partition import PARTITIONS, owned_partitions, owner, partition_of, weight

shard_ids = st.text(min_size=1, max_size=12)


def owners(live: list[str] | set[str]) -> list[str | None]:
    return [owner(p, live) for p in range(PARTITIONS)]


@settings(max_examples=60, deadline=None)
@given(live=st.lists(shard_ids, min_size=2, max_size=8, unique=True), data=st.data())
def test_removing_a_shard_moves_only_its_partitions(live: list[str], data: st.DataObject) -> None:
    gone = data.draw(st.sampled_from(live))
    before = owners(live)
    after = owners([s for s in live if s != gone])
    for p in range(PARTITIONS):
        if before[p] == gone:
            assert after[p] is not None and after[p] != gone
        else:
            assert after[p] == before[p], p
    assert gone not in after


@settings(max_examples=60, deadline=None)
@given(live=st.lists(shard_ids, min_size=1, max_size=8, unique=True), new=shard_ids)
def test_adding_a_shard_moves_partitions_only_to_it(live: list[str], new: str) -> None:
    if new in live:
        return
    before = owners(live)
    after = owners([*live, new])
    for p in range(PARTITIONS):
        assert after[p] in (before[p], new), p
    # and what it takes is exactly what it would own among the grown set
    taken = {p for p in range(PARTITIONS) if after[p] == new}
    assert taken == owned_partitions(new, live)


@settings(max_examples=60, deadline=None)
@given(live=st.lists(shard_ids, min_size=1, max_size=8, unique=True), data=st.data())
def test_owner_is_pure_in_the_live_set(live: list[str], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(live))
    assert owners(live) == owners(shuffled) == owners(set(live)) == owners(live + live)
    assert owners(live) == [owner(p, iter(live)) for p in range(PARTITIONS)]
    owned = [owned_partitions(s, live) for s in live]
    assert sum(len(o) for o in owned) == PARTITIONS  # disjoint ...
    assert frozenset().union(*owned) == frozenset(range(PARTITIONS))  # ... and covering
    for s, mine in zip(live, owned, strict=True):
        assert mine == {p for p in range(PARTITIONS) if owner(p, live) == s}


@pytest.mark.parametrize(
    "live",
    [
        [f"shard-{i}" for i in range(4)],
        [f"shard-{i}" for i in range(1, 5)],
        ["a", "b", "c", "d"],
        ["s1", "s2", "s3", "s4"],
        ["shard-a", "shard-b", "shard-c", "shard-d"],
        [f"10.0.0.{i}:7000" for i in range(1, 5)],
        [f"lq-shard-{i}.lq-shard.default.svc" for i in range(4)],
    ],
)
def test_four_shards_share_fairly(live: list[str]) -> None:
    counts = Counter(owners(live))
    assert set(counts) == set(live)  # everyone owns something
    fair = PARTITIONS / len(live)
    assert max(counts.values()) <= 1.5 * fair, counts


@settings(max_examples=40, deadline=None)
@given(live=st.lists(shard_ids, min_size=4, max_size=4, unique=True))
def test_random_four_shards_share_fairly(live: list[str]) -> None:
    counts = Counter(owners(live))
    assert max(counts.values()) <= 1.5 * PARTITIONS / 4, counts


@settings(max_examples=300, deadline=None)
@given(tenant=st.text(max_size=20), entity=st.text(max_size=20))
def test_partition_of_is_stable_and_in_range(tenant: str, entity: str) -> None:
    p = partition_of(tenant, entity)
    assert isinstance(p, int) and 0 <= p < PARTITIONS
    assert partition_of(tenant, entity) == p


def test_partition_of_is_pinned() -> None:
    # Every process (and every version) must agree, or rows land where no one looks.
    assert partition_of("t1", "tasks") == 106
    assert partition_of("acme", "orders") == 220
    assert partition_of("", "_") == 29
    assert partition_of("tenant-\u00e9", "x") == 146


def test_partition_of_separates_tenant_from_entity() -> None:
    # "ab" + "c" and "a" + "bc" are different pairs; most such pairs land apart
    pairs = [(f"t{i}", f"e{i}") for i in range(64)]
    glued = [(f"t{i}e", f"{i}") for i in range(64)]
    same = sum(partition_of(*a) == partition_of(*b) for a, b in zip(pairs, glued, strict=True))
    assert same < 8
    spread = {partition_of(f"tenant{i}", "tasks") for i in range(1000)}
    assert len(spread) > 200


def test_no_live_shard_owns_nothing() -> None:
    for p in (0, 1, PARTITIONS - 1):
        assert owner(p, []) is None
        assert owner(p, set()) is None
        assert owner(p, iter(())) is None
    assert owned_partitions("s1", []) == frozenset(range(PARTITIONS))


def test_weight_depends_on_shard_and_partition() -> None:
    assert weight("s1", 0) == weight("s1", 0)
    assert len({weight("s1", p) for p in range(PARTITIONS)}) == PARTITIONS
    assert weight("s1", 0) != weight("s2", 0)
    assert 0 <= weight("s1", 0) < 2**64
