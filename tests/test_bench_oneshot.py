"""`lq bench oneshot` runs with tiny sizes (so it cannot rot): its table, every query
answered from memory while the shard is up, the same bytes from the scan after."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)


def test_bench_oneshot_tiny() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lq", "bench", "oneshot", "--rows", "300", "--queries", "8"],
        capture_output=True, text=True, timeout=110, check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for measure in ("memory p50 ms", "memory p99 ms", "scan p50 ms", "scan p99 ms"):
        assert measure in out.stdout
    assert "8 of 8 answered from memory" in out.stdout
