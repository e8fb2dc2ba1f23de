"""Whether a process of ours still runs, by its pid (for the tests that kill and count)."""

from __future__ import annotations

__all__ = ["alive"]


def alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (dead, not yet reaped by init) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False
