"""Compressed batches (docs/protocol.md §3.1, §3.2), sans-IO.

Two shapes, chosen in the hello and welcome:
- §3.1, the session's DEFLATE stream (revisions 1–4): one `Deflater` per agent session, one
  `Inflater` per gateway session; each batch is the next sync-flushed piece of one raw DEFLATE
  stream, compressed against every reading sent before it on the session. The gateway holds
  ~11 KiB of zlib state per connection for it.
- §3.2, a preset dictionary (revision 5): each batch is one complete raw DEFLATE stream begun
  with a dictionary every session shares (`geostream/zdict.py`): `DictionaryDeflater` on the
  agent, `inflate_alone` on the gateway, nothing held between batches on either side.

Both bound what they inflate (`limit`): a piece inflates to at most `limit` bytes or is refused,
and zlib never writes more than `limit + 1` bytes of output for it.
"""

from __future__ import annotations

import zlib

from .errors import ErrorCode, ProtocolError
from .zdict import DICTIONARIES

# 4 KiB window: ~30 positions of history, ~11 KiB of inflater state per gateway connection
WINDOW_BITS = 12
LEVEL = 6
# what every sync flush ends with; left off the wire, added back before inflating (RFC 7692)
SYNC_TAIL = b"\x00\x00\xff\xff"
# a preset dictionary is at most the window: bytes further back could never be referred to
DICTIONARY_BYTES = 1 << WINDOW_BITS
# the agent's compressor per dictionary batch: memLevel 8 is zlib's default (memLevel only
# sizes the compressor's own tables, never what the inflater needs)
MEM_LEVEL = 8
# ... and for a batch of at most SMALL_BYTES (a live batch: one to a few readings), memLevel 4:
# its tables (~30 KiB against memLevel 8's ~150 KiB) are what each batch's copy of the primed
# compressor allocates and writes, and 1 << (4 + 6) symbols hold any such batch in one block
SMALL_MEM_LEVEL = 4
SMALL_BYTES = 1 << (SMALL_MEM_LEVEL + 6)


class Deflater:
    """The agent's end of §3.1: `piece(data)` compresses the next batch's bytes."""

    KEY = "z"  # the batch key its pieces travel in

    def __init__(self, _obj=None):
        self._z = _obj or zlib.compressobj(LEVEL, zlib.DEFLATED, -WINDOW_BITS)

    def piece(self, data: bytes) -> bytes:
        out = self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)
        return out[: -len(SYNC_TAIL)]

    def copy(self) -> Deflater:
        """An independent copy, to size a batch without touching the session's stream."""
        return Deflater(self._z.copy())


class Inflater:
    """The gateway's end of §3.1: `piece(z)` inflates the next piece, at most `limit` bytes.

    zlib's state (~11 KiB with the window) is made at the first piece, so a session that never
    sends one (a §3.2 agent, or none compressed) holds nothing for it."""

    __slots__ = ("_z", "_limit")

    def __init__(self, limit: int):
        self._z: zlib._Decompress | None = None
        self._limit = limit

    def piece(self, z: bytes) -> bytes:
        d = self._z
        if d is None:
            d = self._z = zlib.decompressobj(-WINDOW_BITS)
        try:
            raw = d.decompress(z + SYNC_TAIL, self._limit + 1)
        except zlib.error as exc:
            raise ProtocolError(ErrorCode.MALFORMED, f"bad DEFLATE data: {exc}") from None
        if len(raw) > self._limit or d.unconsumed_tail:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"'z' inflates beyond {self._limit} bytes")
        if d.eof:
            raise ProtocolError(ErrorCode.MALFORMED, "'z' ended the session's DEFLATE stream")
        return raw


# (dictionary id, memLevel) → a compressor that has taken the dictionary, never used
_PRIMED: dict[tuple[int, int], object] = {}


def _primed(dict_id: int, mem_level: int = MEM_LEVEL):
    """A compressor with dictionary `dict_id` set and nothing compressed, made once per
    process: each batch starts from a copy of it. Setting a 4 KiB dictionary hashes all of it
    (11 µs of a fresh compressor's 17 µs per one-reading batch, measured with the load
    tester's readings); a copy is the same state, so the same bytes come out, for ~7 µs. One
    such compressor is ~150 KiB at memLevel 8 (~30 KiB at 4), held for the process's life."""
    z = _PRIMED.get((dict_id, mem_level))
    if z is None:
        z = _PRIMED[dict_id, mem_level] = zlib.compressobj(
            LEVEL, zlib.DEFLATED, -WINDOW_BITS, mem_level, zdict=DICTIONARIES[dict_id])
    return z


def mem_level_for(size: int) -> int:
    """The memLevel a §3.2 batch of `size` bytes is compressed with."""
    return SMALL_MEM_LEVEL if size <= SMALL_BYTES else MEM_LEVEL


class DictionaryDeflater:
    """The agent's end of §3.2: each `piece(data)` is a complete raw DEFLATE stream begun with
    preset dictionary `dict_id` as its history. Stateless between batches.

    A batch of at most SMALL_BYTES starts from a memLevel-4 compressor (`mem_level_for`): a
    one-reading batch took 11.5-12.0 µs from memLevel 8's copy against 8.3-8.7 from memLevel
    4's (least of 7 rounds each, interleaved, 1,000 of the load tester's one-reading batches;
    docs/benchmarks.md "The load generator, session 13"), most of the difference the copy's
    ~150 KiB of tables, allocated and written per batch, which also push the caller's own
    data out of the cache. The bytes are the same but where zlib's hash chains are cut short
    (level 6 walks at most 128 entries; memLevel 4 has 2^11 hash buckets against 2^15): 10
    of 2,096 random batches of ≤ 1 KiB came out different, 3 bytes longer in all; the
    inflater cannot tell (memLevel never reaches the stream's format)."""

    KEY = "zd"

    __slots__ = ("dict_id", "_primed", "_small")

    def __init__(self, dict_id: int):
        self.dict_id = dict_id
        self._primed = _primed(dict_id)
        self._small = _primed(dict_id, SMALL_MEM_LEVEL)

    def piece(self, data: bytes) -> bytes:
        z = (self._small if len(data) <= SMALL_BYTES else self._primed).copy()
        return z.compress(data) + z.flush(zlib.Z_FINISH)

    def copy(self) -> DictionaryDeflater:
        return self  # nothing carries over from one batch to the next


def inflate_alone(zd: bytes, dict_id: int, limit: int) -> bytes:
    """The gateway's end of §3.2: one batch's `zd` against dictionary `dict_id`, at most `limit`
    bytes; the inflater lives only for this call."""
    z = zlib.decompressobj(-WINDOW_BITS, zdict=DICTIONARIES[dict_id])
    try:
        raw = z.decompress(zd, limit + 1)
    except zlib.error as exc:
        raise ProtocolError(ErrorCode.MALFORMED, f"bad DEFLATE data: {exc}") from None
    if len(raw) > limit or z.unconsumed_tail:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"'zd' inflates beyond {limit} bytes")
    if not z.eof:
        raise ProtocolError(ErrorCode.MALFORMED, "'zd' ends before its final DEFLATE block")
    if z.unused_data:
        raise ProtocolError(ErrorCode.MALFORMED, "bytes after the final DEFLATE block of 'zd'")
    return raw


def pick_dictionary(offered: tuple[int, ...]) -> int | None:
    """The dictionary a gateway names in its welcome: the highest id both sides carry."""
    known = [d for d in offered if d in DICTIONARIES]
    return max(known) if known else None
