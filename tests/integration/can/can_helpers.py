"""Helpers for the CAN tests: DBC paths and value generators built from the DBC itself."""

from __future__ import annotations

import math
import random
from pathlib import Path

import can
import pytest

from agent.can.dbcload import BUILTIN_DIR

DATA = Path(__file__).resolve().parents[2] / "data" / "can"
TRUCK = BUILTIN_DIR / "truck_j1939.dbc"
OBD2 = BUILTIN_DIR / "obd2.dbc"
TYPES = DATA / "types.dbc"
BAM = DATA / "j1939_bam.dbc"
ALL_DBCS = (TRUCK, OBD2, TYPES, BAM)


def mux_variants(message) -> list[int | None]:
    """Every multiplexer value a message defines (None for a plain message)."""
    ids = sorted({i for s in message.signals for i in (s.multiplexer_ids or [])})
    return ids or [None]


def j1939_reserved_from(sig) -> int | None:
    """SAE J1939-71: the lowest raw code that is "error" or "not available" (never a value):
    the top two codes of a short field, 0xFE.. of a field of 8 bits or more."""
    if sig.is_signed or sig.is_float or sig.length < 2:
        return None
    return (1 << sig.length) - 2 if sig.length < 8 else 0xFE << (sig.length - 8)


def is_j1939_message(message) -> bool:
    return bool(message.is_extended_frame and (message.protocol or "").lower() == "j1939")


def signal_value(sig, rng: random.Random, j1939: bool = False):
    """A value the signal can carry exactly: (value to encode, value expected back). On a
    J1939 message, never one of the reserved error / not-available codes."""
    top = j1939_reserved_from(sig) if j1939 else None
    if sig.choices:
        raw = rng.choice([r for r in sorted(sig.choices) if top is None or r < top])
        return raw, str(sig.choices[raw])
    if sig.is_float:
        lo = -1000 if sig.minimum is None else max(sig.minimum, -1000)
        hi = 1000 if sig.maximum is None else min(sig.maximum, 1000)
        v = rng.randint(math.ceil(lo * 2), math.floor(hi * 2)) / 2
        return v, v
    n = sig.length
    raw_lo, raw_hi = (-(1 << (n - 1)), (1 << (n - 1)) - 1) if sig.is_signed else (0, (1 << n) - 1)
    if sig.minimum is not None and sig.maximum is not None and sig.scale > 0:
        raw_lo = max(raw_lo, math.ceil((sig.minimum - sig.offset) / sig.scale - 1e-9))
        raw_hi = min(raw_hi, math.floor((sig.maximum - sig.offset) / sig.scale + 1e-9))
    if top is not None:
        raw_hi = min(raw_hi, top - 1)
    raw = rng.randint(raw_lo, raw_hi)
    value = raw * sig.scale + sig.offset
    if isinstance(sig.scale, int) and isinstance(sig.offset, int):
        value = int(value)
    return value, value


def message_values(message, mux: int | None, rng: random.Random):
    """(values to encode, values expected) for one message and multiplexer value."""
    encode, expect = {}, {}
    j1939 = is_j1939_message(message)
    for sig in message.signals:
        if sig.is_multiplexer:
            encode[sig.name] = expect[sig.name] = mux
            if sig.choices and mux in sig.choices:
                expect[sig.name] = str(sig.choices[mux])
            continue
        if sig.multiplexer_ids is not None and mux not in sig.multiplexer_ids:
            continue
        encode[sig.name], expect[sig.name] = signal_value(sig, rng, j1939)
    return encode, expect


def frame(arb: int, data: bytes, extended: bool | None = None, ts: float = 0.0) -> can.Message:
    ext = arb > 0x7FF if extended is None else extended
    return can.Message(timestamp=ts, arbitration_id=arb, is_extended_id=ext, data=data,
                       dlc=len(data), check=False)


def bam_frames(pgn: int, payload: bytes, sa: int = 0x21, priority: int = 7) -> list[can.Message]:
    """J1939 BAM: one TP.CM (control 32) then TP.DT packets of 7 bytes, 0xFF padded."""
    packets = (len(payload) + 6) // 7
    cm = bytes([32, len(payload) & 0xFF, len(payload) >> 8, packets, 0xFF,
                pgn & 0xFF, (pgn >> 8) & 0xFF, pgn >> 16])
    out = [frame((priority << 26) | 0xECFF00 | sa, cm, True)]
    for seq in range(1, packets + 1):
        chunk = payload[(seq - 1) * 7: seq * 7].ljust(7, b"\xff")
        out.append(frame((priority << 26) | 0xEBFF00 | sa, bytes([seq]) + chunk, True))
    return out


def assert_values_equal(got: dict, expect: dict):
    assert set(got) == set(expect), (got, expect)
    for key, value in expect.items():
        if isinstance(value, str):
            assert got[key] == value, key
        else:
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key
