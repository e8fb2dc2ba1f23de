"""Children that die with their parent, even when the parent is SIGKILLed.

`guarded(argv)` prefixes a command with this file run as a script. The script asks the
kernel for SIGKILL when its parent ends (`prctl(PR_SET_PDEATHSIG)`), checks that the
parent it was started by is still its parent (else that parent died before the request
took effect, and it exits 1 without running anything), then `exec`s the command: the
death signal survives `exec` (of a program that is not set-user-ID), so the program
itself, `python` or `redis-server`, carries it, under the same pid.

Invariant: the kernel watches the *thread* that forked, not the process. `guarded` only
wraps when called on the main thread, which lives as long as the process; a command
started from another thread runs as given (it would otherwise be killed when that
thread ends). Elsewhere than Linux there is no such signal and commands run as given.

The script part imports the standard library only, since it runs with `-I -S` (no site
packages, no environment), which keeps the extra interpreter start to some 20 ms.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["guarded"]

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def guarded(argv: Sequence[str]) -> list[str]:
    """`argv`, wrapped to be SIGKILLed when the calling thread (the main one) ends."""
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return list(argv)
    return [sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid()), "--",
            *argv]


def _arm() -> str | None:
    """Ask for SIGKILL on the parent's death; a reason when that failed."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            return os.strerror(ctypes.get_errno())
    except (ImportError, OSError, AttributeError) as e:
        return str(e)
    return None


def _main(args: list[str]) -> NoReturn:
    if len(args) < 3 or args[1] != "--" or not args[0].isdigit():
        print("usage: _orphan_guard.py PARENT_PID -- COMMAND...", file=sys.stderr)
        raise SystemExit(2)
    parent, command = int(args[0]), args[2:]
    problem = _arm()
    if problem is not None:  # run anyway: the guard is a safety net, not a requirement
        print(f"lq: cannot tie {command[0]} to its parent ({problem})", file=sys.stderr)
    if os.getppid() != parent:
        raise SystemExit(1)
    # what subprocess's restore_signals does for a direct exec (Python ignores these)
    for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    os.execvp(command[0], command)


if __name__ == "__main__":
    _main(sys.argv[1:])
