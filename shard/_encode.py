"""`encode_value` with a memo for plain scalars, for the hot path of every change.

Dispatch and the value indexes encode a row's value at each indexed column for every
change; such columns usually hold few distinct values (a status, a category, an owner),
so encodings of scalars are memoised. The memo is one dict per type: Python's
`1 == 1.0 == True` must not mix the encodings of bools and numbers (a per-type dict is
cheaper to consult than a typed `lru_cache`). Each dict holds at most `_MEMO` entries
and is emptied when full: a column of mostly distinct values (a timestamp) costs one
encoding per lookup, as without a memo, and never grows memory.
Invariant: `encoded(x) == encode_value(x)` for every x.
"""

from __future__ import annotations

from typing import Any

from cluster.query import encode_value

__all__ = ["encoded"]

_MEMO = 8192
_memos: dict[type, dict[Any, bytes]] = {str: {}, int: {}, float: {}, bool: {}}


def encoded(x: Any) -> bytes:
    """The order-preserving encoding of a value (see `cluster.query.encode_value`)."""
    memo = _memos.get(type(x))
    if memo is None:
        return encode_value(x)
    e = memo.get(x)
    if e is None:
        if len(memo) >= _MEMO:
            memo.clear()
        e = memo[x] = encode_value(x)
    return e
