"""The session's DEFLATE stream for compressed batches (docs/protocol.md §3.1), sans-IO.

One `Deflater` per agent session, one `Inflater` per gateway session: each batch is the next
sync-flushed piece of a single raw DEFLATE stream, so a batch of one reading is compressed
against every reading sent before it on the session.
"""

from __future__ import annotations

import zlib

from .errors import ErrorCode, ProtocolError

# 4 KiB window: ~30 positions of history, ~11 KiB of inflater state per gateway connection
WINDOW_BITS = 12
LEVEL = 6
# what every sync flush ends with; left off the wire, added back before inflating (RFC 7692)
SYNC_TAIL = b"\x00\x00\xff\xff"


class Deflater:
    """The agent's end: `piece(data)` compresses the next batch's bytes."""

    def __init__(self, _obj=None):
        self._z = _obj or zlib.compressobj(LEVEL, zlib.DEFLATED, -WINDOW_BITS)

    def piece(self, data: bytes) -> bytes:
        out = self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)
        return out[: -len(SYNC_TAIL)]

    def copy(self) -> Deflater:
        """An independent copy, to size a batch without touching the session's stream."""
        return Deflater(self._z.copy())


class Inflater:
    """The gateway's end: `piece(z)` inflates the next piece, at most `limit` bytes."""

    def __init__(self, limit: int):
        self._z = zlib.decompressobj(-WINDOW_BITS)
        self._limit = limit

    def piece(self, z: bytes) -> bytes:
        try:
            raw = self._z.decompress(z + SYNC_TAIL, self._limit + 1)
        except zlib.error as exc:
            raise ProtocolError(ErrorCode.MALFORMED, f"bad DEFLATE data: {exc}") from None
        if len(raw) > self._limit or self._z.unconsumed_tail:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"'z' inflates beyond {self._limit} bytes")
        if self._z.eof:
            raise ProtocolError(ErrorCode.MALFORMED, "'z' ended the session's DEFLATE stream")
        return raw
