"""Fast CBOR (RFC 8949) payloads for the journal's accept path; sans-IO, no state but caches.

`encode(reading)` returns exactly the bytes `cbor2.dumps(reading.to_wire())` returns for the
common shapes — positions and CAN signal readings whose numbers are plain `int`/`float` and
whose text values are `str` — without building the wire dict. Everything else (events, bools,
ints beyond 64 bits, nested values, > 23 signals) goes to cbor2, so the output is always the
reading map of docs/protocol.md §4 and `cbor2.loads(encode(r)) == r.to_wire()`.

Floats are always written as float64 (header 0xfb), as cbor2 does when not canonical; ints get
the shortest argument (RFC 8949 §4.2.1 "preferred serialization"), also as cbor2 does.
"""

from __future__ import annotations

import struct

import cbor2

from geostream import schema

from .readings import Action, Event, Position, Reading, Signals, position_values

# A CBOR data item starts with one byte: major type in the top 3 bits, "additional info" in
# the low 5. Additional info 0..23 is the argument itself; 24/25/26/27 say that a 1/2/4/8-byte
# big-endian argument follows.
MAJOR_UINT = 0x00  # major type 0: unsigned integer n
MAJOR_NEGINT = 0x20  # major type 1: negative integer, the argument is -1 - n
MAJOR_MAP = 0xA0  # major type 5: map, the argument is its number of key/value pairs
DIRECT_MAX = 23  # largest argument that fits in the initial byte
ARG_1, ARG_2, ARG_4, ARG_8 = 24, 25, 26, 27  # argument follows in 1, 2, 4 or 8 bytes
FLOAT64 = 0xFB  # major type 7, additional info 27: an IEEE 754 binary64 follows
U32_MAX, U64_MAX = 2**32 - 1, 2**64 - 1  # largest 4- and 8-byte arguments

_BYTE = [bytes((i,)) for i in range(256)]  # single bytes, e.g. uints 0..23, map heads
_P1, _P2, _P4, _P8 = (struct.Struct(f">B{c}").pack for c in "BHIQ")  # head byte + argument
_F64 = struct.Struct(">Bd").pack  # FLOAT64 + the float


class _Unsupported(Exception):
    """A value the hand encoder does not write; the whole reading goes to cbor2 instead."""


def _int(v: int) -> bytes:
    """Major type 0 (v >= 0) or 1 (v < 0) with the shortest argument."""
    major = MAJOR_UINT
    if v < 0:
        major, v = MAJOR_NEGINT, -1 - v
    if v <= DIRECT_MAX:
        return _BYTE[major | v]
    if v <= 0xFF:
        return _P1(major | ARG_1, v)
    if v <= 0xFFFF:
        return _P2(major | ARG_2, v)
    if v <= U32_MAX:
        return _P4(major | ARG_4, v)
    if v <= U64_MAX:
        return _P8(major | ARG_8, v)
    raise _Unsupported  # beyond 64 bits: cbor2 writes a bignum tag


_TEXT: dict[str, bytes] = {}  # encoded text strings: keys, bus and signal names, enum values
_CACHE_MAX = 4096  # bound for both caches, so unusual data cannot grow them without limit


def _text(s: str) -> bytes:
    b = _TEXT.get(s)
    if b is None:
        if type(s) is not str:
            raise _Unsupported
        b = cbor2.dumps(s)  # cold path: the first time a string is seen
        if len(_TEXT) < _CACHE_MAX:
            _TEXT[s] = b
    return b


def _value(v: object) -> bytes:
    t = type(v)  # exact types: bool is an int subclass, and cbor2 writes it as true/false
    if t is float:
        return _F64(FLOAT64, v)
    if t is int:
        return _int(v)  # type: ignore[arg-type]
    if t is str:
        return _text(v)  # type: ignore[arg-type]
    raise _Unsupported


_TS, _LAT, _LON = _text(schema.TIME), _text(schema.LAT), _text(schema.LON)
_MAP4_TS = _BYTE[MAJOR_MAP | 4] + _TS  # a CAN reading is a map of 4: ts k bus sig
_K_POS = _text(schema.KIND) + _text(schema.POSITION)
_POS_OPTIONAL = [_text(q.wire) for q in schema.POSITION_QUANTITIES]


def _position(p: Position) -> bytes:
    ts = p.ts_ms
    parts = [b"", _TS, _P8(MAJOR_UINT | ARG_8, ts) if U32_MAX < ts <= U64_MAX else _int(ts),
             _K_POS, _LAT, _value(p.lat), _LON, _value(p.lon)]
    for key, v in zip(_POS_OPTIONAL, position_values(p), strict=True):
        if v is not None:
            parts += (key, _F64(FLOAT64, v) if type(v) is float else _value(v))
    parts[0] = _BYTE[MAJOR_MAP | (len(parts) // 2)]  # 4 + optional pairs (_K_POS is one)
    return b"".join(parts)


_CAN_HEAD: dict[str, bytes] = {}  # bus -> `k: "can", bus: <bus>, sig:` (all but the sig map)


def _can_head(bus: str) -> bytes:
    head = (_text(schema.KIND) + _text(schema.SIGNALS) + _text(schema.BUS) + _text(bus)
            + _text(schema.SIGNAL_VALUES))
    if len(_CAN_HEAD) < _CACHE_MAX:
        _CAN_HEAD[bus] = head
    return head


def _signals(s: Signals) -> bytes:
    values = s.values
    if len(values) > DIRECT_MAX:
        raise _Unsupported
    ts = s.ts_ms
    parts = [_MAP4_TS, _P8(MAJOR_UINT | ARG_8, ts) if U32_MAX < ts <= U64_MAX else _int(ts),
             _CAN_HEAD.get(s.bus) or _can_head(s.bus), _BYTE[MAJOR_MAP | len(values)]]
    for name, v in values.items():  # the common value types inline: this loop is the hot spot
        t = type(v)
        parts += (_TEXT.get(name) or _text(name),
                  _F64(FLOAT64, v) if t is float else _int(v) if t is int else _value(v))
    return b"".join(parts)


_ENCODERS = {Position: _position, Signals: _signals}
KIND = {Position: schema.POSITION, Signals: schema.SIGNALS, Event: schema.EVENT,
        Action: schema.ACTION}  # wire "k"


def encode(r: Reading) -> bytes:
    """The reading's CBOR wire map (docs/protocol.md §4, without "q")."""
    enc = _ENCODERS.get(type(r))
    if enc is not None:
        try:
            return enc(r)
        except _Unsupported:
            pass
    return cbor2.dumps(r.to_wire())
