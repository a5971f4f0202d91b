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
    argument `n` in the shortest form (RFC 8949 §4.2.1, as cbor2 writes it)."""
    if n <= 23:
        return bytes((major | n,))
    for info, fmt, top in ((24, ">BB", 0xFF), (25, ">BH", 0xFFFF), (26, ">BI", 0xFFFFFFFF)):
        if n <= top:
            return struct.pack(fmt, major | info, n)
    return struct.pack(">BQ", major | 27, n)
