"""A §3.2 batch's readings decoded by the byte layout of a reading seen before (sans-IO).

A 1 Hz vehicle sends one position per batch, and its readings array has the same bytes but for
the values every second: `[{"ts": …, "k": "pos", "lat": …, …, "q": …}]`, each float a float64,
each small integer in its head. `ReadingShapes` learns such a layout from an array the strict
decoder (`geostream.strict_cbor`) decoded, as one `struct` format (keys, value heads and text
values as fixed bytes, numbers as fields), and decodes the next array of that layout with one
`unpack`: the same list of one map, its keys in the same order, as the strict decoder builds.

Why the answers are the same: a layout matches only when every byte outside a number field is
the learned byte (the array and map heads, every key, every value's head, every text value)
and the length is exact, so the item is one array holding one map of those distinct text keys
with values of those types, nothing after it, and no tag, indefinite length or other nesting
anywhere; a number field's bytes decode as CBOR decodes them (big-endian IEEE 754 of the head's
width, or an unsigned integer of the head's width; a small integer is its head). A layout is
only learned after decoding the learned array with it gave exactly the strict decoder's values
and types. Anything else (another length, another byte) is left to the strict decoder.

Why not cbor2 alone: a one-position array (118 bytes) took 1.9 µs through the configured
strict decoder (1.3 µs plain `cbor2.loads`, which checks none of the subset) and ~1.1 µs here,
measured on this project's machine (bench/bench_app_path.py has the whole path's figures).
"""

from __future__ import annotations

import struct
import sys
from operator import itemgetter
from typing import Any

# Layouts kept for the process (first come: a layout is learned once, from any vehicle). The
# agents' positions take a handful (which quantities a receiver gives, the width of `q` and of
# the small integers); a vehicle sending other layouts only misses the fast path.
MAX_SHAPES = 32
# Only arrays this short are learned or matched: a one-reading position is ~120 bytes.
MAX_SHAPE_BYTES = 256
# Learning attempts that found no layout, per array length, before that length is not tried
# again (a reading with a nested map, a negative or 64-bit-wide value: the strict decoder's).
MAX_MISSES_PER_LENGTH = 4

_UINT_FIELD = {0x18: "B", 0x19: "H", 0x1A: "I", 0x1B: "Q"}  # a uint's width after its head
_FLOAT_FIELD = {0xF9: "e", 0xFA: "f", 0xFB: "d"}  # IEEE 754 half, single, double
_SIMPLE = {0xF4: False, 0xF5: True, 0xF6: None}
_SMALL_UINT_END = 0x18  # a head below this is the unsigned integer itself (0..23)


class _Shape:
    """One learned layout: its struct, the fixed bytes it must hold, where the values are."""

    __slots__ = ("consts", "fixed", "fixed_of", "keys", "small_of", "unpack", "values_of")

    def __init__(self, fmt: str, fixed: list[tuple[int, bytes]], small: list[int],
                 values: list[int], consts: tuple, keys: tuple[str, ...]):
        self.unpack = struct.Struct(fmt).unpack
        idx = [i for i, _ in fixed]
        self.fixed_of = itemgetter(*idx, idx[0])  # always a tuple (one more item: never one)
        self.fixed = (*(b for _, b in fixed), fixed[0][1])
        self.small_of = itemgetter(*small, small[0]) if small else None
        self.values_of = itemgetter(*values, values[0])
        self.consts = consts
        self.keys = keys

    def decode(self, raw: bytes) -> list | None:
        t = self.unpack(raw)
        if self.fixed_of(t) != self.fixed:
            return None
        if self.small_of is not None and max(self.small_of(t)) >= _SMALL_UINT_END:
            return None
        return [dict(zip(self.keys, self.values_of(t + self.consts) if self.consts
                         else self.values_of(t), strict=False))]  # one value more: a tuple


class ReadingShapes:
    """The layouts learned so far, by array length."""

    def __init__(self) -> None:
        self._by_len: dict[int, list[_Shape]] = {}
        self._count = 0
        self._misses: dict[int, int] = {}

    def __len__(self) -> int:
        return self._count

    def decode(self, raw: bytes) -> list | None:
        """The readings array in `raw` if a learned layout matches it (as the strict decoder
        would build it), else None."""
        shapes = self._by_len.get(len(raw))
        if shapes is not None:
            for shape in shapes:
                value = shape.decode(raw)
                if value is not None:
                    return value
        return None

    def learn(self, raw: bytes, value: Any) -> bool:
        """Learn the layout of `raw`, which the strict decoder decoded as `value`, if it is a
        one-map array of numbers and short texts; True if a layout was added."""
        n = len(raw)
        if (self._count >= MAX_SHAPES or n > MAX_SHAPE_BYTES or type(value) is not list
                or len(value) != 1 or type(value[0]) is not dict
                or self._misses.get(n, 0) >= MAX_MISSES_PER_LENGTH):
            return False
        try:
            shape = _layout(raw, value[0])
        except IndexError:  # cannot be (the strict decoder read it whole): no layout then
            shape = None
        if shape is None or not _same(shape.decode(raw), value):
            self._misses[n] = self._misses.get(n, 0) + 1
            return False
        self._by_len.setdefault(n, []).append(shape)
        self._count += 1
        return True


def _same(got: list | None, value: list) -> bool:
    """Equal values of equal types in the same key order (1 == 1.0 == True in Python)."""
    if got is None or got != value:
        return False
    a, b = got[0], value[0]
    return list(a) == list(b) and all(type(a[k]) is type(b[k]) for k in b)


def _layout(raw: bytes, m: dict) -> _Shape | None:
    """The layout of `raw` (an array of the one map `m`, as the strict decoder decoded it)."""
    if raw[0] != 0x81 or not 0xA0 <= raw[1] <= 0xB7 or raw[1] - 0xA0 != len(m):
        return None
    fmt = [">"]
    fixed: list[tuple[int, bytes]] = []
    small: list[int] = []
    values: list[int] = []
    consts: list = []
    const_at: list[int] = []  # where each constant's value goes among `values`
    run = bytearray(raw[:2])
    fields = 0  # struct fields so far
    pos = 2

    def close_run() -> None:
        nonlocal fields
        if run:
            fmt.append(f"{len(run)}s")
            fixed.append((fields, bytes(run)))
            fields += 1
            run.clear()

    for key, v in m.items():
        head = raw[pos]
        if type(key) is not str or not 0x60 <= head <= 0x77:
            return None
        end = pos + 1 + head - 0x60
        if raw[pos + 1:end] != key.encode():
            return None
        run += raw[pos:end]
        pos = end
        head = raw[pos]
        if head < _SMALL_UINT_END:  # the value is its head
            close_run()
            fmt.append("B")
            small.append(fields)
            values.append(fields)
            fields += 1
            pos += 1
        elif head in _UINT_FIELD or head in _FLOAT_FIELD:
            code = _UINT_FIELD.get(head) or _FLOAT_FIELD[head]
            run.append(head)
            close_run()
            fmt.append(code)
            values.append(fields)
            fields += 1
            pos += 1 + struct.calcsize(">" + code)
        elif head in _SIMPLE or (0x60 <= head <= 0x77 and type(v) is str):
            end = pos + 1 + (head - 0x60 if head < 0x78 else 0)
            run += raw[pos:end]
            pos = end
            const_at.append(len(values))
            values.append(-1)  # placed below, after the struct's fields
            consts.append(v if head not in _SIMPLE else _SIMPLE[head])
        else:
            return None
    if pos != len(raw):
        return None
    close_run()
    for k, at in enumerate(const_at):
        values[at] = fields + k
    return _Shape("".join(fmt), fixed, small, values, tuple(consts),
                  tuple(sys.intern(k) for k in m))
