"""A reading's CBOR with holes: the bytes the agent's encoder writes for one shape of reading,
with its varying numbers packed in place by one `struct` call (sans-IO, no state).

The load generator makes thousands of readings a second in one process, and building each
as the agent's `Position`/`Signals` and encoding it (`agent.wire_encode.encode`) was ~17 µs of
a vehicle-second's ~130 µs of client CPU (docs/benchmarks.md, issue 29's client profile). A
simulated vehicle's readings all have the same shape (same keys, same kinds of number, only
the values change), so the shape is encoded once by the agent's own encoder with sentinel
values, and each sentinel's argument becomes a hole of a fixed-width `struct` field. Exact
only while a value keeps the sentinel's width (float64 always; an int within its argument's
byte range): `Skeleton.pack` checks nothing, its caller keeps the values in range, and
tests/unit/loadtest/test_wire_skeleton.py holds the output byte-equal to the encoder's for
random readings.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence


class Skeleton:
    """`pack(*values)` → the reference encoding of a reading with those values."""

    def __init__(self, reference: bytes, holes: Sequence[tuple[bytes, str]],
                 sentinels: Sequence):
        """`reference`: the encoder's bytes for a reading with the values `sentinels`;
        `holes`: in the order they appear, each sentinel's encoding (head byte + argument) and
        the `struct` code of its argument ("d" float64, "Q" / "I" / "H" / "B" an 8/4/2/1-byte
        uint), from `float_hole` / `uint_hole`."""
        parts: list[bytes] = []
        fmt = ">"
        pos = 0
        for marker, code in holes:
            at = reference.index(marker, pos)
            if struct.calcsize(">" + code) != len(marker) - 1:
                raise ValueError(f"hole {marker!r} is not one head byte + a {code!r}")
            parts.append(reference[pos:at + 1])  # up to and with the sentinel's head byte
            fmt += f"{len(parts[-1])}s{code}"
            pos = at + len(marker)
        parts.append(reference[pos:])
        fmt += f"{len(parts[-1])}s"
        # the pack call's arguments, the values' places left None (filled by slice)
        self._args = [x for part in parts[:-1] for x in (part, None)] + [parts[-1]]
        self._pack = struct.Struct(fmt).pack
        self.holes = len(holes)
        if self.pack(*sentinels) != reference:  # a sentinel's bytes also stood elsewhere
            raise ValueError("the skeleton does not reproduce its reference")

    def pack(self, *values) -> bytes:
        args = self._args.copy()
        args[1:-1:2] = values  # raises ValueError unless one value per hole
        return self._pack(*args)


def float_hole(sentinel: float) -> tuple[bytes, str]:
    """The hole of a float (the agent writes every float as float64, head 0xfb)."""
    return struct.pack(">Bd", 0xFB, sentinel), "d"


def uint_hole(sentinel: int) -> tuple[bytes, str]:
    """The hole of a uint of the sentinel's width (RFC 8949 preferred serialization: the
    shortest argument; so only values of the same width fit it, never one of 0..23)."""
    for head, code, top in ((0x18, "B", 0xFF), (0x19, "H", 0xFFFF), (0x1A, "I", 2**32 - 1),
                            (0x1B, "Q", 2**64 - 1)):
        if sentinel <= top:
            if sentinel <= 23:
                raise ValueError("0..23 is written in the head byte: no hole for it")
            return struct.pack(">B" + code, head, sentinel), code
    raise ValueError("beyond 64 bits")
