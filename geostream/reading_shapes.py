"""A §3.2 batch's readings decoded by the byte layout of a reading seen before (sans-IO).

A 1 Hz vehicle sends one reading per batch, and its readings array has the same bytes but for
the values every second: `[{"ts": …, "k": "pos", "lat": …, …, "q": …}]`, or a CAN snapshot
`[{"ts": …, "k": "can", "bus": "can0", "sig": {"EngineSpeed": …, …}, "q": …}]`, each float a
float64, each small integer in its head. `ReadingShapes` learns such a layout from an array the
strict decoder (`geostream.strict_cbor`) decoded and decodes the next array of that layout in
one call: the same list of one map (its one level of nested maps included), the same keys in
the same order, the same values of the same types, as the strict decoder builds.

Why the answers are the same: a layout matches only when every byte outside a number field is
the learned byte (the array and map heads, every key, every value's head, every text value;
of a number held in its head, the head's major type) and the length is exact, so the item is
one array holding one map of those distinct text keys with values of those types, nothing
after it, and no tag, indefinite length or other nesting anywhere; a number field's bytes
decode as CBOR decodes them (big-endian IEEE 754 of the head's width, or an integer of the
head's width, negative ones -1 - n; an integer in the head is 0..23 and is checked so). A
layout is only kept after decoding the learned array with it gave exactly the strict
decoder's values, types and key order. Anything else (another length, another byte) is left
to the strict decoder.

How a layout decodes: the fixed bytes are compared at once as one integer (`int.from_bytes`
of the array, masked: the number fields' bytes masked out), the number fields come from one
`struct` unpack that skips the fixed bytes, and the map is built by a display made for the
layout (`_compile`: its keys are written with `repr`, so each is exactly the learned text,
and nothing else from the wire reaches the source). Measured with the load tester's readings
on this project's machine, thread CPU per one-reading array: a position (118 bytes) 3.4 µs
through the configured strict decoder, 3.0 µs by session 12's layouts (a `struct` field per
fixed run and `dict(zip(…))`), ~1.0 µs so; a CAN snapshot (193 bytes, 8 signals) 3.7 µs
strict, ~1.3 µs so (bench/bench_app_path.py has the whole path's figures).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

# Layouts kept for the process (first come: a layout is learned once, from any vehicle). The
# agents' readings take a handful (which quantities a receiver gives, the width of `q` and of
# the small integers, the signals a CAN bus reports); a vehicle sending other layouts only
# misses the fast path.
MAX_SHAPES = 32
# Only arrays this short are learned or matched: a one-reading position is ~120 bytes, a CAN
# snapshot of 8 signals ~190.
MAX_SHAPE_BYTES = 256
# Learning attempts that found no layout, per array length, before that length is not tried
# again (a reading with a NaN, an array, a second level of maps: the strict decoder's).
MAX_MISSES_PER_LENGTH = 4

_INT_FIELD = {0x18: "B", 0x19: "H", 0x1A: "I", 0x1B: "Q"}  # an integer's width after its head
_FLOAT_FIELD = {0xF9: "e", 0xFA: "f", 0xFB: "d"}  # IEEE 754 half, single, double
_SIMPLE = {0xF4: False, 0xF5: True, 0xF6: None}
_IN_HEAD = 0x18  # the low 5 bits of a head below this are the integer itself (0..23)
_MAJOR = 0xE0  # a head's major type (its top 3 bits)
_BIT3 = 0x08  # with bit 4, a low-5-bit count of 24..31: not an integer in its head
_NEGATIVE = 0x20  # major type 1: the integer -1 - n


class _Layout:
    """A layout being learned from one array: the struct format of its number fields, which
    bytes are fixed, and the Python expression of its value."""

    def __init__(self, raw: bytes):
        self.raw = raw
        self.fmt = [">"]
        self.end = 0  # where the struct's last field (or pad) ended
        self.mask = bytearray(b"\xff" * len(raw))  # 0xFF: a fixed byte
        self.small = bytearray(len(raw))  # _BIT3 at the heads holding an integer
        self.names: list[str] = []

    def field(self, at: int, code: str) -> str:
        """A number field of struct `code` at byte `at`: its variable's name."""
        if at > self.end:
            self.fmt.append(f"{at - self.end}x")
        size = struct.calcsize(">" + code)
        self.fmt.append(code)
        self.end = at + size
        self.mask[at:at + size] = bytes(size)
        name = f"v{len(self.names)}"
        self.names.append(name)
        return name

    def map(self, pos: int, m: dict, nested: bool) -> tuple[str, int] | None:
        """The display of map `m` whose head is at `pos`, and where it ends; None if its
        bytes are not a layout (a key or value of another kind)."""
        raw = self.raw
        if raw[pos] != 0xA0 + len(m) or len(m) > 23:
            return None
        pos += 1
        items = []
        for key, v in m.items():
            head = raw[pos]
            if type(key) is not str or not 0x60 <= head <= 0x77:
                return None
            end = pos + 1 + head - 0x60
            if raw[pos + 1:end] != key.encode():
                return None
            pos = end
            head = raw[pos]
            if head & _MAJOR in (0, _NEGATIVE) and head & 0x1F < _IN_HEAD:
                name = self.field(pos, "B")
                self.mask[pos] = _MAJOR  # the type fixed, the count the value
                self.small[pos] = _BIT3
                expr = name if head < _NEGATIVE else f"(31 - {name})"
                pos += 1
            elif head & _MAJOR in (0, _NEGATIVE) and head & 0x1F in _INT_FIELD:
                name = self.field(pos + 1, _INT_FIELD[head & 0x1F])
                expr = name if head < _NEGATIVE else f"(-1 - {name})"
                pos = self.end
            elif head in _FLOAT_FIELD:
                expr = self.field(pos + 1, _FLOAT_FIELD[head])
                pos = self.end
            elif head in _SIMPLE:
                expr = repr(_SIMPLE[head])
                pos += 1
            elif 0x60 <= head <= 0x77 and type(v) is str:
                pos += 1 + head - 0x60
                expr = repr(v)
            elif 0xA0 <= head <= 0xB7 and type(v) is dict and not nested:
                inner = self.map(pos, v, True)
                if inner is None:
                    return None
                expr, pos = inner
            else:
                return None
            items.append(f"{key!r}: {expr}")
        return "{" + ", ".join(items) + "}", pos


def _compile(raw: bytes, m: dict) -> Callable[[bytes], list | None] | None:
    """The decoder of `raw`'s layout (an array of the one map `m`, as the strict decoder
    decoded it), or None if it has none."""
    if raw[0] != 0x81:
        return None
    layout = _Layout(raw)
    try:
        built = layout.map(1, m, False)
    except (IndexError, UnicodeEncodeError):  # cannot be (the strict decoder read it whole)
        return None
    if built is None or built[1] != len(raw):
        return None
    if layout.end < len(raw):
        layout.fmt.append(f"{len(raw) - layout.end}x")
    mask = int.from_bytes(layout.mask)
    namespace = {"from_bytes": int.from_bytes, "unpack": struct.Struct("".join(layout.fmt)).unpack,
                 "MASK": mask, "FIXED": int.from_bytes(raw) & mask,
                 "SMALL": int.from_bytes(layout.small)}
    lines = ["def decode(raw):",
             "    x = from_bytes(raw)",
             "    if x & MASK != FIXED or x & (x >> 1) & SMALL:",
             "        return None"]
    if layout.names:
        lines.append(f"    {', '.join(layout.names)}, = unpack(raw)")
    lines.append(f"    return [{built[0]}]")
    exec(compile("\n".join(lines), "<reading layout>", "exec"), namespace)  # noqa: S102
    return namespace["decode"]  # type: ignore[return-value]


class ReadingShapes:
    """The layouts learned so far, by array length."""

    def __init__(self) -> None:
        self._by_len: dict[int, list[Callable[[bytes], list | None]]] = {}
        self._count = 0
        self._misses: dict[int, int] = {}

    def __len__(self) -> int:
        return self._count

    def decode(self, raw: bytes) -> list | None:
        """The readings array in `raw` if a learned layout matches it (as the strict decoder
        would build it), else None."""
        shapes = self._by_len.get(len(raw))
        if shapes is not None:
            for decode in shapes:
                value = decode(raw)
                if value is not None:
                    return value
        return None

    def learn(self, raw: bytes, value: Any) -> bool:
        """Learn the layout of `raw`, which the strict decoder decoded as `value`, if it is a
        one-map array of numbers, short texts and maps of them; True if a layout was added."""
        n = len(raw)
        if (self._count >= MAX_SHAPES or n > MAX_SHAPE_BYTES or type(value) is not list
                or len(value) != 1 or type(value[0]) is not dict
                or self._misses.get(n, 0) >= MAX_MISSES_PER_LENGTH):
            return False
        decode = _compile(raw, value[0])
        if decode is None or not _same(decode(raw), value):
            self._misses[n] = self._misses.get(n, 0) + 1
            return False
        self._by_len.setdefault(n, []).append(decode)
        self._count += 1
        return True


def _same(got: Any, value: Any) -> bool:
    """Equal values of equal types in the same key order (1 == 1.0 == True in Python)."""
    if type(got) is not type(value):
        return False
    if type(value) is list:
        return len(got) == len(value) and all(map(_same, got, value))
    if type(value) is dict:
        return list(got) == list(value) and all(_same(got[k], value[k]) for k in value)
    return bool(got == value)
