"""A batch's readings already in wire form, and the CBOR heads that frame them.

Apart from `geostream.codec` (which re-exports both) so that the agent's journal, which
stores and drains readings in this form, does not load the whole codec (its messages,
commands and DEFLATE dictionaries): in the emulated VM of tests/system/journal/
test_powercut_vm.py that import was seconds of every boot.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import final


@final  # no subclass: `type(r) is EncodedReadings` tells the two forms apart (and types)
@dataclass(frozen=True, slots=True)
class EncodedReadings:
    """A batch's readings already in wire form: `cbor`, the CBOR array of the reading maps
    (each with its "q"), and their sequence numbers `seqs` in the same order. The journal's
    stored payloads become one without a decode and re-encode (agent/journal_drain.py
    `encoded_rows`); a session sends it as it sends the maps (`ClientSession.send_batch`)."""

    seqs: tuple[int, ...]
    cbor: bytes

    def __len__(self) -> int:
        return len(self.seqs)


def cbor_head(major: int, n: int) -> bytes:
    """A CBOR item's head: major type `major` (its top 3 bits, e.g. 0x40 a byte string) with
    argument `n` in the shortest form (RFC 8949 §4.2.1, as cbor2 writes it). Unrolled, one
    lookup or one `struct` call: it is called two or three times per batch on both sides."""
    if n < 24:
        return _HEAD_BYTE[major | n]
    if n < 256:
        return _HEAD8.pack(major | 24, n)
    if n < 65536:
        return _HEAD16.pack(major | 25, n)
    if n < 4294967296:
        return _HEAD32.pack(major | 26, n)
    return _HEAD64.pack(major | 27, n)


_HEAD_BYTE = tuple(bytes((b,)) for b in range(256))
_HEAD8, _HEAD16, _HEAD32, _HEAD64 = (struct.Struct(f">B{c}") for c in "BHIQ")
