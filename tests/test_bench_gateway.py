"""`lq bench gateway` with tiny sizes on every stack it can serve with, so it cannot rot:
each stack's gateway and bare broadcast start, the fan-out reaches every subscriber and
the stacks' table has every row. Timings are printed by the bench, never asserted here.
Also: a stack that cannot be run is refused, by the bench and by `lq gateway`."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from lq._serving import STACKS, missing, split_stack

pytestmark = pytest.mark.timeout(150)

_LQ = [sys.executable, "-m", "lq"]


def test_every_stack_runs_side_by_side() -> None:
    absent = [s for s in STACKS if missing(*split_stack(s)) is not None]
    assert not absent, f"install the extras of {absent} (scripts/setup does)"
    done = subprocess.run(
        [*_LQ, "bench", "gateway", "--runs", "1", "--fanout", "3", "--connections", "4",
         "--throughput-subs", "2", "--throughput-writes", "2", "--stalled-subs", "0",
         "--stacks", ",".join(STACKS)],
        capture_output=True, text=True, timeout=140)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "lq bench gateway on websockets-sansio" in out
    for stack in STACKS:
        fan = re.search(rf"^{stack}: fan-out to 3 p50 / p99\s+([\d.]+) / ([\d.]+) ms\s+bare "
                        r"([\d.]+) / ([\d.]+) ms; p99 ratio ([\d.]+); past the first "
                        r"([\d.]+)$", out, re.M)
        assert fan is not None, out
        assert all(float(x) > 0 for x in fan.groups()[:5]), fan.group(0)
        idle = re.search(rf"^{stack}: per idle connection\s+(-?[\d.]+) KB\s+bare (-?[\d.]+) KB; "
                         r"4 held;", out, re.M)
        assert idle is not None, out
    assert re.search(r"gateway / bare\s+[\d.]+", out), out
    assert re.search(r"fan-out to 3: first has it, gateway / bare\s+[\d.]+ / [\d.]+ ms", out)


def test_a_stack_that_cannot_run_is_refused() -> None:
    done = subprocess.run([*_LQ, "bench", "gateway", "--stacks", "websockets,nginx"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "unknown stack 'nginx'" in done.stderr, done.stderr
    env = {**os.environ, "LQ_JWT_SECRET": "x" * 40, "LQ_SERVER": "gunicorn"}
    done = subprocess.run([*_LQ, "gateway"], capture_output=True, text=True, timeout=30,
                          env=env)
    assert done.returncode == 2 and "server: choose from uvicorn, granian" in done.stderr, \
        done.stderr
    done = subprocess.run([*_LQ, "gateway", "--ws-impl", "h11"], capture_output=True,
                          text=True, timeout=30, env={**env, "LQ_SERVER": "uvicorn"})
    assert done.returncode == 2 and "ws_impl: choose from" in done.stderr, done.stderr
