"""The one reading schema (docs/protocol.md §4): kinds, each quantity's code name beside its
short wire key and its store column, validation, and the flattening into store rows.

Used by the agent (`agent.readings` builds wire maps, `agent.wire_encode` writes them), the
codec (`check_reading` while decoding a batch), and the backend (`reading_problem` in the
gateway, `row_fields` in `backend.store.base.StoredReading.from_wire`). Pure: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import ErrorCode, ProtocolError

# CBOR's uint reaches 2^64−1; 2^63−1 keeps every value an SQL BIGINT on both stores.
MAX_UINT = 2**63 - 1

# kinds (the wire's `k`)
POSITION, SIGNALS, EVENT = "pos", "can", "evt"
READING_KINDS = (POSITION, SIGNALS, EVENT)

# envelope keys
SEQ, TIME, KIND = "q", "ts", "k"
# a position's required keys; a CAN reading's and an event's keys
LAT, LON = "lat", "lon"
BUS, SIGNAL_VALUES = "bus", "sig"
EVENT_NAME, EVENT_DATA = "name", "data"


@dataclass(frozen=True, slots=True)
class Quantity:
    """One optional quantity of a position."""

    name: str  # the name in code: `agent.readings.Position` attribute, NMEA decoder output
    wire: str  # the short key on the wire
    column: str | None  # the store's column (`StoredReading` attribute); None: not stored
    type: type  # float: any finite number; int: an integer


# The optional quantities of a position, in the order the agent writes them. The store's
# columns carry the code names (renamed from alt and course by sql/*/*_quantity_names.sql).
POSITION_QUANTITIES = (
    Quantity("alt_m", "alt", "alt_m", float),
    Quantity("speed_kmh", "spd", "speed_kmh", float),
    Quantity("course_deg", "crs", "course_deg", float),
    Quantity("fix", "fix", "fix", int),
    Quantity("mode", "mode", None, int),
    Quantity("sats", "sat", "sats", int),
    Quantity("hdop", "hdop", "hdop", float),
    Quantity("clock_offset_ms", "clk", None, int),
)
_FLOAT_KEYS = tuple(q.wire for q in POSITION_QUANTITIES if q.type is float)
_STORED = tuple((q.column, q.wire) for q in POSITION_QUANTITIES if q.column is not None)


def uint(m: dict, key: str) -> int:
    """m[key] as an unsigned integer; raises MALFORMED."""
    value = m.get(key)
    if type(value) is not int or not 0 <= value <= MAX_UINT:
        raise ProtocolError(ErrorCode.MALFORMED, f"{key!r} must be an unsigned integer")
    return value


def check_reading(r: Any) -> dict:
    """Validate the envelope of one reading (q, ts, k); raises MALFORMED (fatal)."""
    if not isinstance(r, dict):
        raise ProtocolError(ErrorCode.MALFORMED, "a reading must be a map")
    if uint(r, SEQ) == 0:
        raise ProtocolError(ErrorCode.MALFORMED, "'q' starts at 1")
    uint(r, TIME)
    if r.get(KIND) not in READING_KINDS:
        raise ProtocolError(ErrorCode.MALFORMED, f"unknown reading kind {r.get(KIND)!r}")
    return r


def reading_problem(r: dict) -> str | None:
    """Why a well-formed reading's content is unusable, or None (→ invalid-reading)."""
    if r[KIND] == POSITION:
        lat, lon = r.get(LAT), r.get(LON)
        if not all(isinstance(x, int | float) and math.isfinite(x) for x in (lat, lon)):
            return "position without finite lat/lon"
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            return f"position out of range: lat={lat} lon={lon}"
        for key in _FLOAT_KEYS:
            v = r.get(key)
            if v is not None and not (isinstance(v, int | float) and math.isfinite(v)):
                return f"{key!r} is not a finite number"
    elif r[KIND] == SIGNALS:
        if not isinstance(r.get(SIGNAL_VALUES), dict):
            return "can reading without 'sig' map"
    return None


def position_wire(ts_ms: int, lat: float, lon: float, values: tuple) -> dict[str, Any]:
    """A position's wire map; `values` in the order of POSITION_QUANTITIES (None: absent)."""
    out: dict[str, Any] = {TIME: ts_ms, KIND: POSITION, LAT: lat, LON: lon}
    for q, value in zip(POSITION_QUANTITIES, values, strict=True):
        if value is not None:
            out[q.wire] = value
    return out


def row_fields(r: dict[str, Any]) -> dict[str, Any]:
    """A valid wire reading flattened into the store's columns (all but the envelope):
    a position's quantities, or the JSON `data` of a CAN reading (its bus and signals) or an
    event (its name and data)."""
    kind = r[KIND]
    if kind == POSITION:
        row = {column: r.get(wire) for column, wire in _STORED}
        return {"lat": r.get(LAT), "lon": r.get(LON), **row, "data": None}
    if kind == SIGNALS:
        data = dict(r.get(SIGNAL_VALUES) or {})
        if r.get(BUS) is not None:
            data = {BUS: r[BUS], **data}
        return {"data": data}
    return {"data": {EVENT_NAME: r.get(EVENT_NAME), **(r.get(EVENT_DATA) or {})}}
