"""Cursors: a row's position in a sort, bound to its entity and sort, tamper-evident.

Layout before base64url (no padding): version byte, flags byte (bit 0: zstd), a 16-byte
HMAC-SHA256 tag over (version, flags, entity, sort, body), then the body: the position
(the row's sort key, see `_order`), zstd-compressed when flagged. The tag covers the
body as sent, so nothing unauthenticated is ever decompressed, and only the one
canonical text of a cursor is accepted: a cursor used with another entity or sort, or
altered in any character, is refused. The key is shared by every process (DESIGN.md
section 3).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable

import zstandard

from cluster.errors import InvalidQuery

__all__ = ["CursorSigner"]

_VERSION = 1
_ZSTD = 1
_TAG = 16
_COMPRESS_ABOVE = 200
_compressor = zstandard.ZstdCompressor(level=3)
_decompressor = zstandard.ZstdDecompressor()
_MAX_POSITION = 1 << 20
_BLOCK = 64  # SHA-256's block size
_URLSAFE = bytes.maketrans(b"+/", b"-_")  # what base64.urlsafe_b64encode translates
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


class CursorSigner:
    """Makes and checks cursors with one secret key."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the cursor key must be at least 16 bytes")
        # HMAC-SHA256 (RFC 2104) with both padded keys hashed once: each tag then costs
        # two copies of a hash state, about 60% of `hmac.new` (and less than
        # `hmac.digest`, which fetches the algorithm per call on OpenSSL 3). A new window
        # row is signed on the hot path of a change. Equal to `hmac.new(key, msg,
        # sha256).digest()` (tested).
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def _tag(self, flags: int, entity: str, sort_spec: str, body: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(_head(flags, entity, sort_spec) + body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:_TAG]

    def make(self, entity: str, sort_spec: str, position: bytes) -> str:
        """The cursor text of `position` under (entity, sort)."""
        flags, body = 0, position
        if len(position) > _COMPRESS_ABOVE:
            packed = _compressor.compress(position)
            if len(packed) < len(position):
                flags, body = _ZSTD, packed
        raw = bytes([_VERSION, flags]) + self._tag(flags, entity, sort_spec, body) + body
        return _encode(raw)

    def maker(self, entity: str, sort_spec: str) -> Callable[[bytes], str]:
        """`make` bound to one (entity, sort): the same text for every position, with
        the tag's fixed prefix hashed once (an index signs each new window position on
        the hot path of a change). Positions long enough to compress go to `make`."""
        inner_head = self._inner.copy()
        inner_head.update(_head(0, entity, sort_spec))
        outer_head = self._outer
        lead = bytes([_VERSION, 0])
        full = self.make

        def make(position: bytes) -> str:
            if len(position) > _COMPRESS_ABOVE:
                return full(entity, sort_spec, position)
            inner = inner_head.copy()
            inner.update(position)
            outer = outer_head.copy()
            outer.update(inner.digest())
            raw = lead + outer.digest()[:_TAG] + position
            return _encode(raw)

        return make

    def open(self, text: object, entity: str, sort_spec: str, max_bytes: int) -> bytes:
        """The position inside a cursor; InvalidQuery('after', ...) if it is not ours."""
        if not isinstance(text, str) or not text:
            raise InvalidQuery("after", "a cursor must be a non-empty string (or null)")
        if len(text) > max_bytes:
            raise InvalidQuery("after", f"a cursor is at most {max_bytes} bytes")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError) as e:
            raise InvalidQuery("after", "the cursor is not valid cursor text") from e
        # The decoder skips stray characters and ignores the spare bits of the last one,
        # so several texts decode alike: accept only the one `make` writes.
        if len(raw) < 2 + _TAG or raw[0] != _VERSION or raw[1] & ~_ZSTD or _encode(raw) != text:
            raise InvalidQuery("after", "the cursor is not valid cursor text")
        flags, body = raw[1], raw[2 + _TAG :]
        if not hmac.compare_digest(raw[2 : 2 + _TAG], self._tag(flags, entity, sort_spec, body)):
            raise InvalidQuery(
                "after", "the cursor was altered, or made for another entity or sort"
            )
        if flags & _ZSTD:
            try:
                body = _decompressor.decompress(body, max_output_size=_MAX_POSITION)
            except zstandard.ZstdError as e:
                raise InvalidQuery("after", "the cursor is not valid cursor text") from e
        return body


def _head(flags: int, entity: str, sort_spec: str) -> bytes:
    """What the tag covers before the body: version, flags, entity, sort."""
    return b"%d\0%d\0%s\0%s\0" % (_VERSION, flags, entity.encode(), sort_spec.encode())


def _encode(raw: bytes) -> str:
    """base64url without padding (`base64.urlsafe_b64encode`, without its two calls)."""
    return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=").decode(
        "ascii"
    )
