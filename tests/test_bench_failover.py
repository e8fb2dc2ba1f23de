"""`lq bench failover` with tiny sizes on real processes, so it cannot rot: every row of
its table for each size, every row loaded by the survivor's claims, and flags that
cannot be run refused. Timings are printed by the bench, never asserted here."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from cluster.partition import owner, partition_of
from lq.bench.failover import SHARDS, VICTIM, victim_collections

pytestmark = pytest.mark.timeout(150)

_LQ = [sys.executable, "-m", "lq", "bench", "failover"]


def test_the_collections_are_the_victims_each_in_its_own_partition() -> None:
    found = victim_collections(5)
    partitions = [partition_of(t, e) for t, e in found]
    assert len(set(partitions)) == 5
    assert all(owner(p, SHARDS) == VICTIM for p in partitions)


def test_a_tiny_run_prints_every_row_and_loads_every_row(standalone_url: str) -> None:
    done = subprocess.run(
        [*_LQ, "--redis-url", standalone_url, "--rows", "300,900", "--repeats", "1",
         "--collections", "3"],
        capture_output=True, text=True, timeout=140)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("lq bench failover"))
    assert lines[start + 1].split() == ["measure", "median", "note"]
    rows = {re.split(r"\s{2,}", line)[0]: line for line in lines[start + 3:] if line}
    assert "machine" in rows
    for size in ("300", "900"):
        total = rows[f"{size} rows: SIGKILL -> all synced"]
        assert re.search(r"\d+\.\d\d s", total), total
        assert re.search(r"\d+\.\d\d s", rows[f"{size} rows: lease TTL wait"])
        assert re.search(r"[\d,]+ rows/s", rows[f"{size} rows: claims"])
        phases = rows[f"{size} rows: in claims registry / load / fill / snapshot / send"]
        assert re.search(r"(\d+\.\d\d / ){4}\d+\.\d\d s", phases), phases
        assert "summed over 3 claims (every row)" in phases, phases
        assert re.search(r"leases the survivor lost\s+\d+", rows[
            f"{size} rows: leases the survivor lost"])
    assert "protocol violations" not in done.stdout
    assert "failover 1:" in done.stderr  # the progress lines


def test_flags_that_cannot_be_run_are_refused() -> None:
    for bad, why in ((["--rows", "100,-5"], "--rows"), (["--rows", "x"], "--rows"),
                     (["--repeats", "0"], "--repeats"),
                     (["--collections", "200"], "--collections")):
        done = subprocess.run([*_LQ, *bad], capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and why in done.stderr, (bad, done.stderr)
