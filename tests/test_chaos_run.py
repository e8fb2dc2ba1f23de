"""Short `lq chaos` runs, as a user would start them: real Redis, shards, gateways and
clients over WebSocket, SSE and long polling, every fault kind injected, and the run
must report no anomaly (exit status 0, a PASS verdict, every count zero).

Standalone Redis with `appendfsync always` (where a lost acknowledged write fails the
run too), and a Redis Cluster of three masters with a replica each, whose master
failover really loses acknowledged writes: the proof there is that no list silently
disagrees with what Redis holds afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

_ROOT = Path(__file__).resolve().parents[1]
_ZERO_ROWS = ("seq gaps without reset", "duplicate deliveries",
              "stale deliveries (version back)", "lists over their limit",
              "other protocol violations", "divergences (list != oracle)")


def _chaos(tmp_path: Path, *flags: str, timeout: float) -> tuple[int, str, dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LQ_")}
    proc = subprocess.run([sys.executable, "-m", "lq", "chaos", "--logs", str(tmp_path),
                           "--progress", "30", *flags], cwd=_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    table: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=2)
        if len(parts) >= 2:
            table.setdefault(parts[0], parts[1])
    return proc.returncode, proc.stdout + proc.stderr, table


def _assert_clean(code: int, out: str, table: dict[str, str]) -> None:
    assert code == 0, out
    assert table.get("verdict") == "PASS", out
    for row in _ZERO_ROWS:
        assert table.get(row) == "0", f"{row}: {table.get(row)}\n{out}"


@pytest.mark.timeout(200)
def test_standalone_run_every_fault_kind(tmp_path: Path) -> None:
    code, out, table = _chaos(tmp_path, "--duration", "60", "--seed", "3", "--every", "4",
                              "--rate", "30", timeout=190)
    _assert_clean(code, out, table)
    assert table["acknowledged writes lost"] == "0", out
    faults = re.search(r"^faults\s+\d+\s+(.*)$", out, re.M)
    assert faults is not None, out
    for kind in ("kill", "term", "stop", "partition", "gateway", "slow-client", "redis",
                 "add-shard", "remove-shard"):
        assert re.search(rf"\b{kind} \d", faults.group(1)), f"no {kind} fault:\n{out}"
    assert int(table["subscriptions checked"]) >= 10
    # clients on a killed gateway resume their lists elsewhere (no snapshot), and every
    # resume is checked like a snapshot (the zero rows above)
    moved = [int(n) for n in re.findall(r"fault gateway \S+: (\d+) clients were on it", out)]
    if sum(moved):
        assert int(table["resumes (no snapshot)"]) >= 1, out
    assert table["writes answered 503 yet applied"] == "0", out


@pytest.mark.timeout(200)
def test_cluster_run_with_a_master_failover(tmp_path: Path) -> None:
    code, out, table = _chaos(tmp_path, "--redis", "cluster", "--duration", "40",
                              "--seed", "4", "--faults", "failover,kill,gateway,redis",
                              "--every", "5", "--rate", "30", timeout=190)
    _assert_clean(code, out, table)
    assert re.search(r"^faults\s+\d+\s+.*failover \d", out, re.M), out
    assert "loss scan after it" in out, out
    assert table["writes answered 503 yet applied"] == "0", out
