"""`lq bench cluster` and `lq bench http` run with tiny sizes (so they cannot rot): each
starts what it needs (an embedded Redis, shard processes, a gateway and its bare
ceiling), prints every row of its table, and leaves no process behind. No timings are
asserted: only that each measure was taken."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(200)]


def _bench(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "lq", "bench", *args],
                         capture_output=True, text=True, timeout=190, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_bench_cluster_tiny() -> None:
    out = _bench("cluster", "--rates", "50", "--duration", "1", "--collections", "4",
                 "--burst", "200", "--runs", "1")
    for measure in ("write -> delta p50 @ 50/s", "write -> delta p99 @ 50/s",
                    "changes/s at saturation", "failover after SIGKILL",
                    "handoff after SIGTERM"):
        assert measure in out, out
    failover = re.search(r"failover after SIGKILL\s+([\d.]+) s", out)
    assert failover is not None and float(failover.group(1)) > 0, out


def test_bench_http_tiny() -> None:
    out = _bench("http", "--runs", "1", "--requests", "100", "--concurrency", "4",
                 "--max-seconds", "10")
    rates = re.findall(r"(gateway|ceiling) PUT requests/s\s+([\d,]+)", out)
    assert [k for k, _ in rates] == ["gateway", "ceiling"], out
    assert all(int(v.replace(",", "")) > 0 for _, v in rates), out
    assert re.search(r"gateway / ceiling\s+[\d.]+", out), out
