"""`encode_value` with a memo for plain scalars, for the hot path of every change.

Dispatch and the value indexes encode a row's value at each indexed column for every
change; such columns usually hold few distinct values (a status, a category, an owner),
so encodings of scalars are memoised (bounded LRU). The memo is typed: Python's
`1 == 1.0 == True` must not mix the encodings of bools and numbers.
Invariant: `encoded(x) == encode_value(x)` for every x.
"""

from __future__ import annotations

import functools
from typing import Any

from cluster.query import encode_value

__all__ = ["encoded"]

_SCALARS = (str, int, float, bool)
_memo = functools.lru_cache(maxsize=8192, typed=True)(encode_value)


def encoded(x: Any) -> bytes:
    """The order-preserving encoding of a value (see `cluster.query.encode_value`)."""
    if type(x) in _SCALARS:
        return _memo(x)
    return encode_value(x)
