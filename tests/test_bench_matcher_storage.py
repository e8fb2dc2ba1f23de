"""`lq bench matcher` and `lq bench storage` run with tiny sizes (so they cannot rot):
every row of their tables is printed, the storage ratio comes from paired runs, and
each pair says where a write's time went."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)


def _bench(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "lq", "bench", *args],
        capture_output=True, text=True, timeout=110, check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_bench_matcher_tiny() -> None:
    out = _bench("matcher", "--runs", "1", "--rows", "2000", "--changes", "300",
                 "--subs", "200", "--shapes", "40", "--naive-queries", "3")
    for measure in ("(1) 1 view", "(2) 200 subs / 40 shapes", "(2t) same, every update sets ts",
                    "(3) 200 subs / 1 shape", "(4) naive", "memory per subscription",
                    "memory per cached row"):
        assert measure in out, out
    rate = re.search(r"\(2\) 200 subs / 40 shapes: changes/s\s+([\d,]+)", out)
    assert rate is not None and int(rate.group(1).replace(",", "")) > 0, out


def test_bench_storage_tiny(standalone_url: str) -> None:
    # standalone only: the ceiling pipelines EVALSHA, which redis-py refuses on a cluster
    out = _bench("storage", "--redis-url", standalone_url, "--runs", "2", "--writes", "200",
                 "--single", "20", "--batch", "50", "--rows", "300")
    ratio = re.search(r"pipelined / ceiling\s+([\d.]+)\s+goal >= 0.6; median of pairs "
                      r"run back to back: ([\d.]+) ([\d.]+)", out)
    assert ratio is not None, out
    assert float(ratio.group(1)) > 0
    for name in ("pipelined", "ceiling"):
        where = re.search(name + r": us per write\s+([\d,.]+)\s+client CPU ([\d.]+), "
                          r"Redis CPU ([\d.]+), waiting ([\d.]+)", out)
        assert where is not None, out
        assert float(where.group(2)) > 0, out  # this process did work for every write
    assert "collection load rows/s (300 rows)" in out
