"""The JavaScript client's own suite (`clients/js/test/`, Node's built-in runner) passes.

It needs Node 20 or newer and nothing from npm. A machine without `node` fails this test
with a message saying how to install it (never a skip: `.ci/run` installs Debian's
nodejs). The TAP summary is read as well as the exit code, so a run that found no tests,
or cancelled some (a promise that never settled), does not pass.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "clients" / "js" / "test"
MIN_NODE = 20


def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail("node is not installed: install Node.js 20 or newer "
                    "(Debian: apt-get install nodejs) to test clients/js", pytrace=False)
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    if major < MIN_NODE:
        pytest.fail(f"node {version.stdout.strip()} is too old: clients/js needs Node.js "
                    f"{MIN_NODE} or newer", pytrace=False)
    return path


def summary(tap: str) -> dict[str, int]:
    """The counts of the TAP summary lines (`# pass 83`, `# fail 0`, ...)."""
    return {key: int(n) for key, n in re.findall(r"^# (\w+) (\d+)$", tap, re.MULTILINE)}


def test_node_suite_passes() -> None:
    run = subprocess.run(
        [node(), "--test", "--test-reporter=tap", str(SUITE)],
        cwd=ROOT, capture_output=True, text=True, timeout=100,
    )
    counts = summary(run.stdout)
    failed = [line for line in run.stdout.splitlines() if line.lstrip().startswith("not ok")]
    report = "\n".join(failed) + "\n" + run.stdout[-4000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    assert counts.get("fail") == 0 and counts.get("cancelled") == 0, report
    # the suite holds over 80 tests: fewer means a file stopped being found or loaded
    assert counts.get("pass", 0) >= 80, f"too few tests ran: {counts}\n{report}"


def test_summary_reads_counts() -> None:
    assert summary("ok 1 - x\n# tests 3\n# pass 2\n# fail 1\n") == {"tests": 3, "pass": 2,
                                                                    "fail": 1}
