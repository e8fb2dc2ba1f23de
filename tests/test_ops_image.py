"""The Dockerfile and .dockerignore, checked statically (no Docker engine here): slim
bases, a runtime stage with only the installed environment, a non-root user, `lq` as the
entry point, and a build context without tests, caches or secrets."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """ARGs before the first FROM, and the stages with their instructions."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            assert keyword == "ARG", line
            key, _, value = rest.partition("=")
            args[key] = value
        else:
            stages[-1].instructions.append((keyword, rest.strip()))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse((ROOT / "Dockerfile").read_text())[1]


def test_every_stage_builds_on_a_slim_python(stages: list[Stage]) -> None:
    assert len(stages) == 2
    for stage in stages:
        assert re.fullmatch(r"python:3\.1[1-9][.\d]*-slim(-\w+)?", stage.base), stage.base


def test_the_runtime_stage_runs_lq_as_a_non_root_user(stages: list[Stage]) -> None:
    runtime = stages[-1]
    (user,) = runtime.all("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so runAsNonRoot can verify it
    assert any(f"--uid {uid}" in run for run in runtime.all("RUN"))
    kinds = [kw for kw, _ in runtime.instructions]
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k in ("RUN", "COPY"))
    assert json.loads(runtime.all("ENTRYPOINT")[0]) == ["lq"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["lq"] == "lq.cli:main"
    exposed = " ".join(runtime.all("EXPOSE")).split()
    assert exposed == ["8080", "9100"]  # the gateway's port, the shard's health port


def test_the_runtime_stage_holds_only_the_installed_environment(stages: list[Stage]) -> None:
    build, runtime = stages
    copies = runtime.all("COPY")
    assert copies == [f"--from={build.name} /opt/lq /opt/lq"]
    runs = " ".join(runtime.all("RUN"))
    assert "apt-get" not in runs and "pip" not in runs  # no compiler, no build tools
    installs = " ".join(build.all("RUN"))
    assert "pip install ." in installs and "[test" not in installs and "[dev" not in installs


def test_the_build_copies_only_what_exists_and_is_not_ignored(stages: list[Stage]) -> None:
    ignored = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for excluded in (".git", ".venv", "tests", "**/__pycache__", ".mypy_cache"):
        assert excluded in ignored
    copied = [source for copy in stages[0].all("COPY") for source in copy.split()[:-1]]
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]
    tops = {p.rstrip("*") for p in find["include"] if "." not in p.rstrip("*")}
    wanted = {str(Path(where, top)).removeprefix("./") for top in tops
              for where in find.get("where", ["."]) if (ROOT / where / top).is_dir()}
    assert len(wanted) == len(tops), (tops, wanted)
    linked = {str(path.resolve().relative_to(ROOT)) for top in wanted
              for path in (ROOT / top).rglob("*") if path.is_symlink()}
    assert linked, "gateway/static/lq-client.js links to clients/js"
    assert wanted | linked | {"pyproject.toml", "README.md"} == set(copied)
