"""Strict JSON input: a client's JSON is taken exactly as written, or refused.

orjson parses an integer beyond 64 bits as the nearest double (12345678901234567890123
becomes 1.2345678901234568e+22), keeps 2**63..2**64-1 as integers no signed 64-bit
reader shares, and its encoder refuses nesting past 254 levels. So lq accepts:
- integers from -2**63 to 2**63-1 (signed 64 bits); any other integer is refused,
  never rounded; a number written with a fraction or an exponent is a float and stays one;
- at most `MAX_NESTING` levels of arrays and objects in one document (a body, a live
  message, a `?q=`), which leaves room under the encoder's limit for the envelopes a
  value travels in (a delta batch, a page of rows, a registry entry).

Invariant: `loads` returns orjson's value of a text only when that value is the text
exactly; otherwise it raises `Refused`, whose `path` names the part at fault where it
can be named (not past orjson's own limit of 1024 levels). `check` applies the rules to
a value built in Python (`check_encoded` to one with its encoded text at hand). They stay
cheap when nothing is wrong: the exact re-parse runs only when the text holds a run of 19
digits; depth is bounded by the count of brackets, and past that answered by orjson's
encoder limit in C; the Python walk that names the path runs only to name it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any, Final

import orjson

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "MAX_NESTING",
    "Refused",
    "check",
    "check_encoded",
    "loads",
    "render_path",
]

INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1
MAX_NESTING: Final = 128
_INT_RULE = f"integers must fit in signed 64 bits ({INT_MIN} to {INT_MAX})"
_DEPTH_RULE = f"nested too deep: arrays and objects nest at most {MAX_NESTING} levels"
# Every integer outside the signed 64-bit range has at least 19 digits (JSON has no
# leading zeros), so a text without such a run needs no exact re-parse.
_SHOWN_PATH = 12

Segment = str | int


class Refused(ValueError):
    """A JSON value lq will not take as it is; `path` leads to the part at fault.

    `kind` is `integer`, `depth` or `value` (not a JSON value, in `check` only);
    `document` is the parsed document when there is one, for callers that need to
    read other fields of it (a live message's type and sub).
    """

    def __init__(self, kind: str, problem: str, path: Iterable[Segment] = ()) -> None:
        self.kind = kind
        self.problem = problem
        self.path: tuple[Segment, ...] = tuple(path)
        self.document: Any = None
        super().__init__(self.message())

    def part(self, root: str = "") -> str:
        """The path under `root` (`row.a.b`, `ops[2].row`, `where.price.$gt`)."""
        return render_path(root, self.path)

    def message(self, root: str = "") -> str:
        part = self.part(root)
        return f"{part}: {self.problem}" if part else self.problem


def render_path(root: str, path: Iterable[Segment]) -> str:
    """`root` followed by `.key` and `[index]` segments; very deep paths are elided."""
    segments = [f"[{s}]" if isinstance(s, int) else f".{s[:80]}" for s in path]
    if len(segments) > _SHOWN_PATH:
        hidden = len(segments) - 10
        segments = [*segments[:8], f" ...{hidden} more... ", *segments[-2:]]
    text = root + "".join(segments)
    return text[1:] if not root and text.startswith(".") else text


def _int_problem(text: str) -> str:
    shown = text if len(text) <= 40 else f"an integer of {len(text.lstrip('-'))} digits"
    return f"{_INT_RULE}; got {shown}"


class _Wide:
    """An integer literal outside the signed 64-bit range, as written."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _exact_int(text: str) -> int | _Wide:
    if len(text) < 19:  # at most 18 digits (and a sign): always in range
        return int(text)
    if len(text) > 20:
        return _Wide(text)
    n = int(text)
    return n if INT_MIN <= n <= INT_MAX else _Wide(text)


def _exact(text: bytes | str) -> Any:
    """The value with every integer exact (out-of-range ones as `_Wide`); stdlib json.

    Only ever called on a text orjson accepted (or refused for a huge number), and never
    on one nested deeper than `MAX_NESTING`, so the recursive parser stays shallow.
    """
    return json.loads(text, parse_int=_exact_int)


class _Found(Exception):
    """Unwinds a walk, collecting the path in reverse."""

    def __init__(self, kind: str, problem: str) -> None:
        self.kind = kind
        self.problem = problem
        self.reversed_path: list[Segment] = []

    def refused(self, document: Any = None) -> Refused:
        refused = Refused(self.kind, self.problem, reversed(self.reversed_path))
        refused.document = document
        return refused


# What a walk looks at besides containers (and `_Wide`, which only `_exact` makes).
_SHAPE, _INTS, _STRICT = 0, 1, 2


def _walk(value: Any, depth: int, mode: int) -> None:
    t = type(value)
    if t is dict:
        items: Iterable[tuple[Segment, Any]] = value.items()
    elif t is list:
        items = enumerate(value)
    else:
        _scalar(value, t, mode)
        return
    if depth > MAX_NESTING:
        raise _Found("depth", _DEPTH_RULE)
    strict_keys = mode == _STRICT and t is dict
    for key, item in items:
        if strict_keys:
            _key(key)
        ti = type(item)
        if ti is dict or ti is list or ti is _Wide or (ti is int and mode) or mode == _STRICT:
            try:
                _walk(item, depth + 1, mode)
            except _Found as found:
                found.reversed_path.append(key)
                raise


def _scalar(value: Any, t: type, mode: int) -> None:
    if t is int:
        if not INT_MIN <= value <= INT_MAX:
            raise _Found("integer", _int_problem(str(value)))
    elif t is _Wide:
        raise _Found("integer", _int_problem(value.text))
    elif mode != _STRICT or value is None or t is bool:
        return
    elif t is float:
        if not math.isfinite(value):
            raise _Found("value", "a number must be finite (NaN and infinity are not JSON)")
    elif t is str:
        _text(value)
    else:
        raise _Found("value", f"{t.__name__} is not a JSON value")


def _key(key: Any) -> None:
    if type(key) is not str:
        raise _Found("value", f"object keys are strings, got {type(key).__name__}")
    _text(key)


def _text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise _Found("value", "text holds a lone surrogate (not valid Unicode)") from None


def _refuse(value: Any, mode: int, document: Any = None) -> None:
    try:
        _walk(value, 1, mode)
    except _Found as found:
        raise found.refused(document) from None


def check(value: Any, *, strict: bool = True) -> None:
    """Refused if `value` breaks the integer or nesting rule; with `strict`, also if it is
    not plain JSON (dict with str keys, list, str, finite float, int, bool, None)."""
    _refuse(value, _STRICT if strict else _INTS)


# -- cheap tests on the text, so that a value is walked only when it may break a rule ----

_DIGITS_ONLY = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_RUN = b"0" * 19


def _as_bytes(text: bytes | str) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")


def _long_digits(raw: bytes) -> bool:
    """Whether `raw` holds a run of 19 digits (bytes.translate and `in` run in C)."""
    return _RUN in raw.translate(_DIGITS_ONLY)


def _encoder_depth() -> int | None:
    """The deepest nesting orjson.dumps encodes (254 in orjson 3); None if none below 4096."""

    def encodes(levels: int) -> bool:
        value: Any = 0
        for _ in range(levels):
            value = [value]
        try:
            orjson.dumps(value)
        except TypeError:
            return False
        return True

    if encodes(4096):
        return None
    low, high = 0, 4096  # encodes(low), not encodes(high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if encodes(mid) else (low, mid)
    return low


_ENCODER_DEPTH = _encoder_depth()


def _deeper_than_allowed(value: Any, raw: bytes) -> bool:
    """Whether `value` (encodable, as `raw` is its text) nests past MAX_NESTING.

    The bracket count bounds the depth; past it, orjson's own limit answers in C: the
    value inside enough extra arrays fails to encode exactly when it is too deep.
    """
    if raw.count(b"[") + raw.count(b"{") <= MAX_NESTING:
        return False
    if _ENCODER_DEPTH is None or _ENCODER_DEPTH <= MAX_NESTING:
        try:
            _walk(value, 1, _SHAPE)
        except _Found:
            return True
        return False
    for _ in range(_ENCODER_DEPTH - MAX_NESTING):
        value = [value]
    try:
        orjson.dumps(value)
    except TypeError:
        return True
    return False


def check_encoded(value: Any, raw: bytes) -> None:
    """`check(value, strict=False)` for a value that encodes as `raw`, walking it only when
    the text shows it may break a rule (the cheap test for rows on every write)."""
    if _long_digits(raw):
        _refuse(value, _INTS)
    elif _deeper_than_allowed(value, raw):
        _refuse(value, _SHAPE)


def _explain(text: bytes | str, error: orjson.JSONDecodeError) -> None:
    """Refused when orjson's refusal is one of ours (too deep, a huge integer)."""
    reason = str(error)
    if reason.startswith("depth limit exceeded"):
        raise Refused("depth", _DEPTH_RULE) from None
    if reason.startswith("number is infinity") and _long_digits(_as_bytes(text)):
        try:
            exact = _exact(text)
        except (ValueError, RecursionError):
            return
        _refuse(exact, _SHAPE, exact)


def loads(text: bytes | str) -> Any:
    """The JSON value of `text`, exactly; Refused (integer range, nesting) naming where, or
    orjson.JSONDecodeError when the text is not JSON at all."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        _explain(text, e)
        raise
    raw = _as_bytes(text)
    if _deeper_than_allowed(value, raw):
        _refuse(value, _SHAPE, value)
    if _long_digits(raw):
        # Integers in the signed range come out of `_exact` as ints; any other is `_Wide`.
        _refuse(_exact(text), _SHAPE, value)
    return value
