"""geostream/1.0's CBOR subset, decoded strictly (docs/protocol.md §2).

A geostream message is CBOR *without tags*: no value sharing (tags 28/29, which let a few hundred
bytes stand for 10^9 elements or for a map that contains itself), no string references (25/256),
no bignums, dates or other extensions. `loads` refuses, while decoding and before the objects a
tag would build exist:
- every tag, of any number (cbor2's built-in decoders are all replaced by one that refuses, and
  its `tag_hook` for the tags it does not know refuses too);
- nesting deeper than `MAX_CBOR_DEPTH`;
- indefinite-length strings and containers (fleet-agent never sends them);
- duplicate map keys and keys other than text or bytes (hash-collision attacks);
- bytes after the one data item.
Without tags every decoded object stands for at least one byte of input, so the message size
bound (`MAX_MESSAGE_BYTES`) also bounds every string, array and map, and the element count;
integers are at most 64 bits wide (major types 0/1: bignums are tags). What a field may hold
(types, ranges, finiteness) is checked on the decoded values by `geostream.schema`.

Why a configured cbor2 decoder rather than a pre-pass over the bytes: measured on a batch of
1,000 positions (~100 KB) on this project's machine, cbor2's C decoder took 0.81 ms plain and
0.93 ms configured as here, while a minimal pure-Python walk over the item headers (no objects
built) alone took 4.6 ms: the pre-pass would have multiplied the decoding cost by ~6.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import cbor2

from .errors import ErrorCode, ProtocolError
from .limits import MAX_CBOR_DEPTH


class _TagRefused(Exception):
    pass


def _refuse_tag(*_args: Any) -> Any:
    raise _TagRefused("CBOR tags are not part of geostream/1.0")


class _EveryTag(Mapping):
    """A `semantic_decoders` mapping that answers every tag number with the refusal, so none of
    cbor2's built-in tag decoders (value sharing among them) ever runs."""

    def __getitem__(self, tag: int) -> Any:
        return _refuse_tag

    def __contains__(self, tag: object) -> bool:
        return True

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


_EVERY_TAG = _EveryTag()


def _decoder() -> cbor2.CBORDecoder:
    return cbor2.CBORDecoder(
        io.BytesIO(b""), semantic_decoders=_EVERY_TAG, tag_hook=_refuse_tag,
        max_depth=MAX_CBOR_DEPTH, allow_indefinite=False, allow_duplicate_keys=False,
        strict_hashable_types=True)


# One configured decoder per thread, given each message's bytes as its `fp`: building one took
# ~3 of the ~4.4 µs of a small message's `loads` (two per batch on the gateway), a kept one
# 1.5 µs (cbor2 6.3, measured on this project's machine). A decoder that raised is dropped, so
# no state of a refused item is ever carried into the next.
_kept = threading.local()


def loads(data: bytes, what: str = "CBOR") -> Any:
    """The one data item in `data`; raises ProtocolError(MALFORMED) for anything outside the
    subset (module docstring) or undecodable."""
    fp = io.BytesIO(data)
    try:
        decoder = _kept.decoder
    except AttributeError:
        decoder = _kept.decoder = _decoder()
    try:
        decoder.fp = fp
        value = decoder.decode()
    except Exception as exc:  # cbor2 wraps our refusal and raises several types on garbage
        del _kept.decoder
        if isinstance(exc.__cause__, _TagRefused) or isinstance(exc, _TagRefused):
            raise ProtocolError(ErrorCode.MALFORMED, f"CBOR tag in {what}: tags are not "
                                "part of geostream/1.0") from None
        raise ProtocolError(ErrorCode.MALFORMED, f"undecodable {what}: {exc}") from None
    if fp.tell() != len(data):
        raise ProtocolError(ErrorCode.MALFORMED,
                            f"{len(data) - fp.tell()} bytes after the CBOR item in {what}")
    return value
