"""The `lq dev` supervisor on tiny child processes: readiness, a failed start, restart
with backoff after a death, SIGKILL for a child that ignores SIGTERM, and the guard that
ends a child when its parent is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from lq import _orphan_guard
from lq._orphan_guard import guarded
from lq.supervisor import ChildSpec, ChildState, Supervisor, describe_exit
from tests.gateway_helpers import free_port
from tests.pids import alive

# Answers 200 to every GET and ignores SIGTERM, so only SIGKILL ends it.
STUBBORN = """
import http.server, signal, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *args):
        pass
print("serving", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


# Starts a guarded `sleep` (as lq dev starts its children), prints its pid, and waits.
PARENT = """
import subprocess, sys, time
from lq._orphan_guard import guarded
child = subprocess.Popen(guarded(["sleep", "60"]), start_new_session=True)
print(child.pid, flush=True)
time.sleep(60)
"""


def test_a_child_that_exits_while_starting_fails_the_group_with_its_output() -> None:
    said: list[str] = []
    supervisor = Supervisor(said.append)
    code = "print('no such setting'); raise SystemExit(2)"
    spec = ChildSpec("bad-0", [sys.executable, "-c", code], dict(os.environ),
                     f"http://127.0.0.1:{free_port()}/readyz")
    assert supervisor.start_group([spec], timeout=20) is False
    text = "\n".join(said)
    assert "bad-0      failed" in text and "(exit 2) while starting" in text
    assert "bad-0      | no such setting" in text


def test_a_dead_child_is_restarted_and_a_stubborn_one_killed_on_stop() -> None:
    said: list[str] = []
    supervisor = Supervisor(said.append, stop_timeout=1.0)
    port = free_port()
    spec = ChildSpec("stub-0", [sys.executable, "-c", STUBBORN, str(port)], dict(os.environ),
                     f"http://127.0.0.1:{port}/readyz")
    assert supervisor.start_group([spec], timeout=20)
    (child,) = supervisor.children
    first = child.pid
    assert first is not None and child.state is ChildState.READY
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while not (child.state is ChildState.READY and child.pid != first):
        assert time.monotonic() < deadline, said
        supervisor.tick()
        time.sleep(0.05)
    text = "\n".join(said)
    assert "(ended by SIGKILL); starting again in 0.5 s" in text
    assert "stub-0     | serving" in text  # its last lines are shown when it dies
    second = child.pid
    assert second is not None and alive(second)
    supervisor.stop([supervisor.children])
    assert not alive(second) and supervisor.children[0].state is ChildState.STOPPED
    assert "stub-0     killed" in said[-1]


def test_exit_codes_read_as_words() -> None:
    assert describe_exit(0) == "exit 0"
    assert describe_exit(-15) == "ended by SIGTERM"
    assert describe_exit(-200) == "ended by signal 200"


def test_a_guarded_child_dies_with_its_parent_even_when_that_is_sigkilled() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    with parent.stdout:
        child = int(parent.stdout.readline())
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0] != b"sleep":
            assert time.monotonic() < deadline, "the guard never ran its command"
            time.sleep(0.01)  # until the guard has armed itself and exec'd `sleep`
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5
        while alive(child):
            assert time.monotonic() < deadline, "the child outlived its SIGKILLed parent"
            time.sleep(0.02)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_guard_whose_parent_is_already_gone_runs_nothing(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    argv = [sys.executable, "-I", "-S", _orphan_guard.__file__, "1", "--", "touch", str(ran)]
    assert subprocess.run(argv, timeout=30).returncode == 1  # its parent is not pid 1
    assert not ran.exists()
    argv[4] = str(os.getpid())
    assert subprocess.run(argv, timeout=30).returncode == 0 and ran.exists()


def test_only_the_main_thread_guards_its_children() -> None:
    wrapped = guarded(["sleep", "1"])
    assert wrapped[-3:] == ["--", "sleep", "1"] and wrapped[0] == sys.executable
    elsewhere: list[list[str]] = []
    thread = threading.Thread(target=lambda: elsewhere.append(guarded(["sleep", "1"])))
    thread.start()
    thread.join()
    assert elsewhere == [["sleep", "1"]]  # the guard would fire when this thread ends
