"""Command-line flags generated from settings dataclasses: flags > `LQ_` env > defaults.

Every field of a settings class becomes `--field-name` (booleans get `--no-...` too),
with the field's own help text and environment variable in the help, so the command line,
the environment and the defaults can never drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from cluster.settings import env_name, from_env

__all__ = ["add_settings_flags", "settings_from"]

T = TypeVar("T")
_TYPES: dict[str, Any] = {"int": int, "float": float, "str": str}


def add_settings_flags(parser: argparse.ArgumentParser, cls: type[Any], title: str) -> None:
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        text = f"{f.metadata.get('help', '')} (env {env_name(cls, f.name)}; default {f.default!r})"
        text = text.replace("%", "%%")
        if kind == "bool":
            group.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text
            )
        else:
            group.add_argument(flag, dest=f.name, type=_TYPES[kind], default=None, help=text)


def settings_from(cls: type[T], args: argparse.Namespace, env: Mapping[str, str]) -> T:
    """`cls` from defaults, then `LQ_*` in `env`, then the flags that were given."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    return from_env(cls, env, **{n: getattr(args, n, None) for n in names})
