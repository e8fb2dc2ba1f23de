"""Placeholder until the matcher benchmark lands (replaced by the matcher work)."""

from __future__ import annotations

import argparse

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    del parser


def run(args: argparse.Namespace) -> int:
    del args
    print("lq bench matcher: not built yet")
    return 1
