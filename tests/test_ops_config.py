"""docs/configuration.md is generated from the settings and must equal what the
generator prints now; every setting it lists is a flag of the commands it names."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import cluster.settings
from lq.cli import build_parser
from lq.docs_config import SETTINGS, render

ROOT = Path(__file__).resolve().parent.parent


def test_the_committed_configuration_page_is_the_generated_one() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == render(), (
        "docs/configuration.md is stale: run `python -m lq.docs_config > docs/configuration.md`"
    )


def test_the_generator_runs_as_a_module() -> None:
    out = subprocess.run([sys.executable, "-m", "lq.docs_config"], capture_output=True,
                         text=True, check=True, timeout=60, cwd=ROOT)
    assert out.stdout == render()


def test_every_settings_class_and_field_is_documented() -> None:
    classes = {
        obj for _, obj in inspect.getmembers(cluster.settings, inspect.isclass)
        if dataclasses.is_dataclass(obj) and obj.__module__ == "cluster.settings"
    }
    assert classes == {cls for cls, _ in SETTINGS}
    page = render()
    for cls in classes:
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
            assert f"`{cluster.settings.env_name(cls, f.name)}`" in page


@pytest.mark.parametrize("cls, commands", SETTINGS, ids=[c.__name__ for c, _ in SETTINGS])
def test_every_setting_is_a_flag_of_the_commands_that_read_it(
    cls: type, commands: tuple[str, ...]
) -> None:
    parser = build_parser()
    for command in commands:
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            argv = [command, flag] if kind == "bool" else [command, flag, "1"]
            args = parser.parse_args(argv)
            assert getattr(args, f.name) is not None, (command, flag)
