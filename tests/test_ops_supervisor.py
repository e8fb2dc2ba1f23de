"""The `lq dev` supervisor on tiny child processes: readiness, a failed start, restart
with backoff after a death, and SIGKILL for a child that ignores SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
import time

from lq.supervisor import ChildSpec, ChildState, Supervisor, describe_exit
from tests.gateway_helpers import free_port

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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


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
    assert second is not None and _alive(second)
    supervisor.stop([supervisor.children])
    assert not _alive(second) and supervisor.children[0].state is ChildState.STOPPED
    assert "stub-0     killed" in said[-1]


def test_exit_codes_read_as_words() -> None:
    assert describe_exit(0) == "exit 0"
    assert describe_exit(-15) == "ended by SIGTERM"
    assert describe_exit(-200) == "ended by signal 200"
