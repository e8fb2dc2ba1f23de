"""What the protocol applier (`view.ViewState`) refuses, and the window digest it checks.

Pure, standard library only (imported by `view`, which must import where neither
`websockets` nor `httpx` is installed). Invariant: every refusal of the applier is a
`ProtocolViolation` (a diverged list a `DigestMismatch`), built here only when raised,
and `digest` is PROTOCOL.md section 3's window digest, the one hash both clients' tests
and the gateway's mirror compare.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Protocol

__all__ = ["DigestMismatch", "ProtocolViolation", "digest", "elsewhere", "no_row",
           "not_newer"]


class ProtocolViolation(Exception):
    """The server's messages broke a rule of PROTOCOL.md section 3."""


class DigestMismatch(ProtocolViolation):
    """A `synced` or `check` digest differs from the list's: the list diverged."""


def digest(rows: Iterable[tuple[str, int]]) -> str:
    """The window digest of PROTOCOL.md section 3 over (id, version) pairs in order."""
    h = hashlib.sha256()
    for rid, version in rows:
        h.update(f"{rid}\n{version}\n".encode())
    return h.hexdigest()[:16]


class _Held(Protocol):
    @property
    def id(self) -> str: ...


def elsewhere(op: str, rid: str, index: int, held: _Held) -> ProtocolViolation:
    return ProtocolViolation(f"{op} of {rid!r} from {index}: the list holds {held.id!r} there")


def not_newer(op: str, rid: str, held: int, version: int) -> ProtocolViolation:
    if version < held:
        return ProtocolViolation(f"{op} of {rid!r}: its version went back {held} -> {version}")
    return ProtocolViolation(f"{op} of {rid!r} v{version} again (the list holds v{held}): "
                             f"a duplicate")


def no_row(op: str, rid: str) -> ProtocolViolation:
    return ProtocolViolation(f"{op} of {rid!r} without a row object")
