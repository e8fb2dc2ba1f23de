"""The event loop a process of ours runs on: uvloop when it is installed, or as asked.

Invariants:
- `auto` is uvloop when the package imports (uvicorn[standard] installs it on Linux),
  else the standard asyncio loop; nothing else falls back silently: `uvloop` asked for
  and not installed is refused with a clear error before anything starts;
- the choice is made once, by the entry point, through `asyncio.Runner(loop_factory=...)`:
  no global event loop policy is set, so nothing else in the process is affected.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from cluster.settings import LOOPS

__all__ = ["loop_factory", "run"]

T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(choice: str) -> tuple[str, LoopFactory]:
    """(the loop's name, a factory for it) for `choice` in LOOPS; ValueError if it cannot be."""
    if choice not in LOOPS:
        raise ValueError(f"loop: choose from {', '.join(LOOPS)}")
    if choice == "asyncio":
        return "asyncio", asyncio.new_event_loop
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise ValueError(
                "loop: uvloop is not installed (pip install uvloop, or LQ_LOOP=asyncio)"
            ) from None
        return "asyncio", asyncio.new_event_loop
    factory: LoopFactory = uvloop.new_event_loop
    return "uvloop", factory


def run(main: Coroutine[Any, Any, T], factory: LoopFactory) -> T:
    """`asyncio.run(main)` on a loop made by `factory`."""
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
