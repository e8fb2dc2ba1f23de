"""The server as users install it: the Dockerfile's install steps replayed as a non-root
user into an empty venv (a plain `pip install .`, no extras), then the image's entry
point, a benchmark without its extra, and a whole `lq dev` run from that venv.

No Docker engine runs here, so the build stage is replayed by hand: its `COPY` sources
go to a scratch `/src`, its `RUN` lines that install Python packages run as written with
`/opt/lq` pointed at the scratch venv (the `apt-get` lines add a compiler this machine
already has). A suite that only ever installs `.[test,dev]` once hid a broken `lq`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from tests.gateway_helpers import free_port
from tests.test_ops_image import Stage, parse

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534
TEST_AND_DEV = ("httpx", "pytest", "hypothesis", "schemathesis", "testcontainers", "mypy",
                "ruff", "importlinter")


@dataclass(frozen=True)
class Image:
    """The replayed build: where its venv and its scratch home are."""

    venv: Path
    home: Path

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("LQ_", "PYTHON", "VIRTUAL_ENV", "PIP_"))}
        return {**keep, "HOME": str(self.home), "PATH": f"{self.venv}/bin:{keep['PATH']}",
                "PIP_CACHE_DIR": str(self.home / "pip-cache"), "XDG_STATE_HOME":
                str(self.home / "state")}

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*as_nobody(), *argv], env=self.env(), capture_output=True,
                              text=True, timeout=timeout, cwd=self.home)


def as_nobody() -> list[str]:
    """The prefix that runs a command as an unprivileged user (empty if we are one)."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]


def build_stage() -> Stage:
    _, stages = parse((ROOT / "Dockerfile").read_text())
    return stages[0]


def base_python() -> str:
    """A Python 3.11+ that the unprivileged user may run (root's pyenv is private)."""
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    for candidate in (base, shutil.which("python3"), "/usr/bin/python3"):
        if candidate and subprocess.run(
            [*as_nobody(), "sh", "-c", f"{candidate} -c 'import sys, ensurepip; "
             "assert sys.version_info >= (3, 11)'"], capture_output=True, timeout=30, cwd="/",
        ).returncode == 0:
            return candidate
    pytest.fail("no Python 3.11+ that an unprivileged user can run")


def install_steps(stage: Stage, venv: Path) -> list[str]:
    """The stage's RUN lines that make the venv and install into it, aimed at `venv`."""
    steps = []
    python = base_python()
    for run in stage.all("RUN"):
        if "apt-get" in run:
            continue
        steps.append(re.sub(r"(?<![\w/])python ", f"{python} ", run.replace("/opt/lq", str(venv))))
    assert any("pip install ." in s for s in steps), steps
    return steps


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    top = Path(tempfile.mkdtemp(prefix="lq-image-"))  # not under pytest's root-only dir
    home, src, venv = top / "home", top / "src", top / "opt-lq"
    home.mkdir()
    src.mkdir()
    stage = build_stage()
    for copy in stage.all("COPY"):
        *sources, dest = copy.split()
        for name in sources:
            origin = ROOT / name
            if origin.is_dir():  # `COPY dir ./dir`: the folder becomes dest
                shutil.copytree(origin, src / dest,
                                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:  # `COPY a b ./`: into the folder dest
                (src / dest).mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, src / dest / origin.name)
    if os.geteuid() == 0:
        for path in (top, home, src):
            os.chown(path, NOBODY, NOBODY)
        for path in src.rglob("*"):
            os.chown(path, NOBODY, NOBODY)
    built = Image(venv, home)
    for step in install_steps(stage, venv):
        done = subprocess.run([*as_nobody(), "sh", "-ec", step], cwd=src, env=built.env(),
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{step}\n{done.stdout}\n{done.stderr}"
    yield built
    shutil.rmtree(top, ignore_errors=True)


def test_the_image_entry_point_runs_as_non_root(image: Image) -> None:
    done = image.run("lq", "--version")
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"lq \d+\.\d+\.\d+\S*\n", done.stdout), done.stdout
    help_text = image.run("lq", "--help")
    for command in ("dev", "gateway", "shard", "status", "token", "bench"):
        assert command in help_text.stdout


def test_the_image_holds_the_runtime_only(image: Image) -> None:
    probe = ("import importlib.util, sys\n"
             f"print([m for m in {TEST_AND_DEV!r} if importlib.util.find_spec(m)])\n"
             "import lq.cli, gateway.app, shard, storage, cluster\n")
    done = image.run(str(image.venv / "bin" / "python"), "-c", probe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_benchmark_without_its_extra_names_the_extra(image: Image) -> None:
    done = image.run("lq", "bench", "gateway", "--runs", "1")
    assert done.returncode == 2
    assert "'httpx'" in done.stderr and "lq-cluster[bench]" in done.stderr
    assert "Traceback" not in done.stderr
    # a benchmark whose packages are all in the runtime still parses its flags
    assert image.run("lq", "bench", "matcher", "--help").returncode == 0
    chaos = image.run("lq", "chaos", "--duration", "10")  # its clients need the extra
    assert chaos.returncode == 2 and "lq-cluster[bench]" in chaos.stderr, chaos.stderr
    assert "Traceback" not in chaos.stderr


def _processes_under(path: Path) -> list[int]:
    """Pids of this machine's processes whose command line names `path`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(path).encode() in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def _call(method: str, url: str, token: str, body: object = None) -> object:
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return orjson.loads(answer.read())


def test_lq_dev_from_a_plain_install_serves_and_leaves_nothing(image: Image) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*as_nobody(), "lq", "dev", "--port", str(port)], env=image.env(), cwd=image.home,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("press Ctrl-C") or time.monotonic() > deadline:
                break
        out = "".join(lines)
        token = re.search(r"^\s+token\s+(\S+)", out, re.M)
        assert token, out
        base = f"http://127.0.0.1:{port}/v1/entities/tasks/rows/t1"
        written = _call("PUT", base, token.group(1), {"title": "ship it"})
        assert isinstance(written, dict) and written["id"] == "t1"
        read = _call("GET", base, token.group(1))
        assert isinstance(read, dict) and read["row"] == {"title": "ship it"}, read
        assert len(_processes_under(image.venv)) >= 4, out  # lq dev, redis, shards, gateway
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=40)
        finally:
            proc.stdout.close()
    assert code == 0, "".join(lines)
    deadline = time.monotonic() + 10
    while _processes_under(image.venv) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_under(image.venv) == []


if __name__ == "__main__":  # pragma: no cover - a manual replay of the install
    sys.exit(pytest.main([__file__, "-q"]))
