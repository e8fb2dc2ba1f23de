"""`lq bench e2e` with tiny sizes, so it cannot rot: the table's shape, every write
delivered, the plot written, bad flags refused, and Ctrl-C stopping everything it
started. Timings are printed by the bench, never asserted here.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.pids import alive

_LQ = [sys.executable, "-m", "lq", "bench", "e2e"]
_TINY = ["--duration", "1", "--repeat", "1", "--ws", "2", "--sse", "1", "--slots", "3",
         "--connections", "4", "--drain", "15"]


def test_a_tiny_run_prints_its_table_and_delivers_every_write(tmp_path: Path) -> None:
    plot = tmp_path / "e2e.png"
    done = subprocess.run(
        [*_LQ, *_TINY, "--rates", "30,60", "--sat-from", "60", "--sat-step", "1.5",
         "--sat-max", "90", "--plot", str(plot)],
        capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("lq bench e2e"))
    assert lines[start + 1].split() == ["measure", "median", "note"]
    rows = {re.split(r"\s{2,}", line)[0]: line for line in lines[start + 3:]
            if line and not line.startswith("plot written")}
    for rate in ("30", "60"):
        ws = rows[f"@ {rate}/s write -> WebSocket p50 / p99 / max"]
        assert re.search(r"\d+\.\d\d / \d+\.\d\d / \d+\.\d\d ms", ws), ws
        assert "all delivered" in ws, ws
        assert f"sent {rate}/s" in ws, ws
        assert f"@ {rate}/s write -> SSE p50 / p99 / max" in rows
        assert f"@ {rate}/s write -> HTTP 200 p50 / p99" in rows
        assert f"@ {rate}/s WebSocket p50 / HTTP p50 / PING" in rows
    assert "NOT DELIVERED" not in done.stdout
    for name in ("machine", "clients", "Redis PING round trip p50", "saturation point"):
        assert name in rows, rows
    # two steps (60, 90) of the search; both keep up on any machine that runs the suite,
    # or the row says from which step on it did not
    assert re.search(r"saturation point\s+(>= )?(\d+|< 60) writes/s", rows["saturation point"])
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert "saturation search: 60 writes/s" in done.stderr  # the progress lines


def test_flags_that_cannot_be_run_are_refused() -> None:
    for bad, why in ((["--rates", "100,-5"], "--rates"), (["--gateways", "3"], "--gateways"),
                     (["--sat-step", "1"], "--sat-step")):
        done = subprocess.run([*_LQ, *bad], capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and why in done.stderr, done.stderr


def test_plot_without_matplotlib_names_the_extra_before_starting_anything() -> None:
    code = ("import sys; sys.modules['matplotlib'] = None; from lq.cli import main; "
            "sys.exit(main(['bench', 'e2e', '--plot', 'x.png']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2, done.stderr
    assert "'matplotlib'" in done.stderr and "lq-cluster[bench]" in done.stderr, done.stderr
    assert "Redis" not in done.stdout  # nothing was started


def _pids(progress: str) -> list[int]:
    return [int(p) for p in re.findall(r"starting\s+pid (\d+)", progress)]


def _writers(port: str) -> list[int]:
    """Writer processes of the run whose first gateway listens on `port`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"_e2e_writer" in argv and f'"ports":[{port}'.encode() in argv:
            found.append(int(pid))
    return found


def test_ctrl_c_stops_every_process_it_started() -> None:
    with subprocess.Popen([*_LQ, *_TINY, "--rates", "50", "--duration", "30",
                           "--no-saturation"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        started, redis_port = _interrupted(proc)
    assert [pid for pid in started if alive(pid)] == []
    with socket.socket() as s:  # the embedded Redis is gone too
        assert s.connect_ex(("127.0.0.1", redis_port)) != 0


def _interrupted(proc: subprocess.Popen[str]) -> tuple[list[int], int]:
    """Ctrl-C (SIGINT) once the first step writes: the pids it had started, Redis's port."""
    try:
        assert proc.stdout is not None and proc.stderr is not None
        redis_line = proc.stdout.readline()
        redis_port = int(redis_line.rsplit(":", 1)[1].split("/")[0])
        progress = ""
        while "run 1/1" not in progress:
            line = proc.stderr.readline()
            assert line, f"the bench ended early:\n{progress}"
            progress += line
        gateway_port = re.search(r"gateway-0\s+starting.*http://127.0.0.1:(\d+)", progress)
        assert gateway_port is not None, progress
        deadline = time.monotonic() + 10
        while not (writers := _writers(gateway_port[1])) and time.monotonic() < deadline:
            time.sleep(0.1)
        started = _pids(progress) + writers
        assert len(started) == 5, progress  # 2 shards, 2 gateways, the writer
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=40) == 130
        return started, redis_port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
