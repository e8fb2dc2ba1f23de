"""Log positions handed to changes-mode clients (PROTOCOL.md section 3, "Log position").

A pos names one entry of a partition's change log *and* the write it logged:
`<stream id>.<version>` (version `0` for a no-op marker, which logs no write). Both parts
are checked on a resume, so an entry that a Redis failover or restart lost, and whose id
was later given to another write, is never taken for the one a client saw: the other
write has another version (versions come from `max(counter + 1, Redis TIME in us)`, so a
write after a restart never repeats a lost one's). Pure; clients treat it as opaque.
Invariant: `decode(encode(sid, v)) == (sid, v)` for every valid stream id and version,
and `decode` answers None, never raises, for anything else.
"""

from __future__ import annotations

import re

__all__ = ["MAX_POS", "LogPos", "decode", "encode", "sid_key"]

MAX_POS = 64
LogPos = tuple[str, int]
"""(stream id, version of the write it logged; 0 for a marker)."""

_FORM = re.compile(r"([0-9]{1,20})-([0-9]{1,20})\.([0-9]{1,20})")


def encode(stream_id: str, version: int) -> str:
    return f"{stream_id}.{version}"


def decode(pos: object) -> LogPos | None:
    """The (stream id, version) a pos names, or None when it is not one."""
    if type(pos) is not str or len(pos) > MAX_POS:
        return None
    m = _FORM.fullmatch(pos)
    if m is None:
        return None
    return f"{m[1]}-{m[2]}", int(m[3])


def sid_key(stream_id: str) -> tuple[int, int]:
    """A stream id as a sortable pair (ms, seq)."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)
