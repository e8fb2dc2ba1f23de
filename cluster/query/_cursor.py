"""Cursors: a row's position in a sort, bound to its entity and sort, tamper-evident.

Layout before base64url (no padding): version byte, flags byte (bit 0: zstd), a 16-byte
HMAC-SHA256 tag over (version, entity, sort, position), then the position (the row's
sort key, see `_order`). A cursor used with another entity or sort, or altered in any
byte, fails the tag check. The key is shared by every process (DESIGN.md section 3).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

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


class CursorSigner:
    """Makes and checks cursors with one secret key."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the cursor key must be at least 16 bytes")
        self._key = key

    def _tag(self, entity: str, sort_spec: str, position: bytes) -> bytes:
        msg = b"%d\0%s\0%s\0%s" % (_VERSION, entity.encode(), sort_spec.encode(), position)
        return hmac.new(self._key, msg, hashlib.sha256).digest()[:_TAG]

    def make(self, entity: str, sort_spec: str, position: bytes) -> str:
        """The cursor text of `position` under (entity, sort)."""
        flags, body = 0, position
        if len(position) > _COMPRESS_ABOVE:
            packed = _compressor.compress(position)
            if len(packed) < len(position):
                flags, body = _ZSTD, packed
        raw = bytes([_VERSION, flags]) + self._tag(entity, sort_spec, position) + body
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

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
        if len(raw) < 2 + _TAG or raw[0] != _VERSION or raw[1] & ~_ZSTD:
            raise InvalidQuery("after", "the cursor is not valid cursor text")
        body = raw[2 + _TAG :]
        if raw[1] & _ZSTD:
            try:
                body = _decompressor.decompress(body, max_output_size=_MAX_POSITION)
            except zstandard.ZstdError as e:
                raise InvalidQuery("after", "the cursor is not valid cursor text") from e
        if not hmac.compare_digest(raw[2 : 2 + _TAG], self._tag(entity, sort_spec, body)):
            raise InvalidQuery(
                "after", "the cursor was altered, or made for another entity or sort"
            )
        return body
