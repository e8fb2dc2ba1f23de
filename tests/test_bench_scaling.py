"""`lq bench scaling` with tiny sizes (so it cannot rot): both sweeps run through real
processes, each table has one row per size asked with every column filled, the plots
are PNGs; bad flags are refused. Timings are printed by the bench, never asserted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(150)

_LQ = [sys.executable, "-m", "lq", "bench", "scaling"]
_NUM = r"[\d,]+(?:\.\d+)?"


def test_tiny_sweeps_print_both_tables_and_plots(tmp_path: Path) -> None:
    done = subprocess.run(
        [*_LQ, "--subs", "100,200", "--rows", "2000", "--changes", "300",
         "--connections", "50,60", "--repeat", "1", "--max-messages", "300",
         "--plot", str(tmp_path)],
        capture_output=True, text=True, timeout=140, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"^machine: \d+ cores; load average .* open files [\d,]+ \(hard", out,
                     re.M), out
    for subs, shapes in (("100", "10"), ("200", "20")):
        row = re.search(rf"^{subs}\s+{shapes}\s+" + r"\s+".join([f"({_NUM})"] * 6) + r"\s*$",
                        out, re.M)
        assert row is not None, out
        changes_s, _, _, _, traced, rss_mb = (float(x.replace(",", "")) for x in row.groups())
        assert changes_s > 0 and traced > 0 and rss_mb > 0, row.group(0)
    for conns in ("50", "60"):
        row = re.search(
            rf"^{conns}\s+{conns}\s+({_NUM}) / ({_NUM})\s+(-?{_NUM})\s+({_NUM})\s+({_NUM}) "
            rf"\((\d+) writes\)\s+({_NUM}) / ({_NUM})\s+({_NUM}) / ({_NUM})\s*$", out, re.M)
        assert row is not None, out  # every connection held
        assert int(row.group(6)) == 300 // int(conns), row.group(0)  # --max-messages / n
        assert float(row.group(5).replace(",", "")) > 0, row.group(0)
        assert float(row.group(8)) >= float(row.group(7)) > 0, row.group(0)
    for name in ("scaling-matcher.png", "scaling-gateway.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"plot: {tmp_path / name}" in out


@pytest.mark.parametrize(("flags", "says"), [
    (["--subs", "100,x"], "--subs: whole numbers"),
    (["--connections", "0"], "--connections: at least one size, each at least 1"),
    (["--parts", "redis"], "--parts: choose from matcher, gateway"),
    (["--repeat", "0"], "--repeat: at least 1"),
    (["--stack", "nginx"], "unknown stack 'nginx'"),
    (["--connections", "100000000"], "does not fit under this box's open-files limit"),
])
def test_bad_flags_are_refused(flags: list[str], says: str) -> None:
    done = subprocess.run([*_LQ, *flags], capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert "lq bench scaling: matcher" not in done.stdout
