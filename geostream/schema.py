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
from .limits import (
    MAX_ARRAY_ITEMS,
    MAX_CBOR_DEPTH,
    MAX_INT,
    MAX_KEY_CHARS,
    MAX_MAP_ENTRIES,
    MAX_TEXT_CHARS,
    MIN_INT,
    TS_MAX_AHEAD_MS,
    TS_MIN_MS,
)

# CBOR's uint reaches 2^64−1; 2^63−1 keeps every value an SQL BIGINT on both stores.
MAX_UINT = 2**63 - 1

# kinds (the wire's `k`)
POSITION, SIGNALS, EVENT, ACTION = "pos", "can", "evt", "act"
READING_KINDS = (POSITION, SIGNALS, EVENT, ACTION)

# envelope keys
SEQ, TIME, KIND = "q", "ts", "k"
# a position's required keys; a CAN reading's and an event's keys
LAT, LON = "lat", "lon"
BUS, SIGNAL_VALUES = "bus", "sig"
EVENT_NAME, EVENT_DATA = "name", "data"
# a driver action's body (protocol revision 2): the action as the driver app's API takes it
ACTION_BODY = "action"
# An action's longest text: a driver's message (backend/driver/actions.py MAX_MESSAGE_LEN).
MAX_ACTION_TEXT = 2000


@dataclass(frozen=True, slots=True)
class Quantity:
    """One optional quantity of a position."""

    name: str  # the name in code: `agent.readings.Position` attribute, NMEA decoder output
    wire: str  # the short key on the wire
    column: str | None  # the store's column (`StoredReading` attribute); None: not stored
    type: type  # float: any finite number; int: an integer
    low: int | float  # the range accepted (an int quantity's bounds stay ints: a compiled
    high: int | float  # build would store `float` as a double, and 2**63 - 1 is not one)


# A float quantity's magnitude bound: far beyond any altitude (m), speed (km/h), course or
# HDOP, and inside the REAL (float4) columns both stores keep them in.
MAX_QUANTITY = 1e9
# An integer code (fix quality, mode, satellites): a SMALLINT column; NMEA gives two digits.
MAX_CODE = 255


# The optional quantities of a position, in the order the agent writes them. The store's
# columns carry the code names (renamed from alt and course by sql/*/*_quantity_names.sql).
POSITION_QUANTITIES = (
    Quantity("alt_m", "alt", "alt_m", float, -MAX_QUANTITY, MAX_QUANTITY),
    Quantity("speed_kmh", "spd", "speed_kmh", float, -MAX_QUANTITY, MAX_QUANTITY),
    Quantity("course_deg", "crs", "course_deg", float, -MAX_QUANTITY, MAX_QUANTITY),
    Quantity("fix", "fix", "fix", int, 0, MAX_CODE),
    Quantity("mode", "mode", None, int, 0, MAX_CODE),
    Quantity("sats", "sat", "sats", int, 0, MAX_CODE),
    Quantity("hdop", "hdop", "hdop", float, -MAX_QUANTITY, MAX_QUANTITY),
    Quantity("clock_offset_ms", "clk", None, int, MIN_INT, MAX_INT),
)
_FLOAT_KEYS = tuple(q.wire for q in POSITION_QUANTITIES if q.type is float)
_CHECKS = tuple((q.wire, q.type is float, q.low, q.high) for q in POSITION_QUANTITIES)
_STORED = tuple((q.column, q.wire) for q in POSITION_QUANTITIES if q.column is not None)
# The store's columns of a reading besides its envelope, in the order `row_values` gives them.
ROW_COLUMNS: tuple[str, ...] = ("lat", "lon", *(column for column, _ in _STORED), "data")
_ROW_KEYS = ("lat", "lon", *(wire for _, wire in _STORED))


def uint(m: dict, key: str) -> int:
    """m[key] as an unsigned integer; raises MALFORMED."""
    value = m.get(key)
    if type(value) is not int or not 0 <= value <= MAX_UINT:
        raise ProtocolError(ErrorCode.MALFORMED, f"{key!r} must be an unsigned integer")
    return value


def check_reading(r: Any) -> dict:
    """Validate the envelope of one reading (q, ts, k); raises MALFORMED (fatal)."""
    if type(r) is dict:  # the common case in one expression (a storm checks every reading)
        q, ts = r.get(SEQ), r.get(TIME)
        if (type(q) is int and 0 < q <= MAX_UINT and type(ts) is int and 0 <= ts <= MAX_UINT
                and r.get(KIND) in READING_KINDS):
            return r
    if not isinstance(r, dict):
        raise ProtocolError(ErrorCode.MALFORMED, "a reading must be a map")
    if uint(r, SEQ) == 0:
        raise ProtocolError(ErrorCode.MALFORMED, "'q' starts at 1")
    uint(r, TIME)
    if r.get(KIND) not in READING_KINDS:
        raise ProtocolError(ErrorCode.MALFORMED, f"unknown reading kind {r.get(KIND)!r}")
    return r


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """The sane range of a reading's `ts` (docs/protocol.md §4): from `min_ms` to
    `max_ahead_ms` past the gateway's clock."""

    min_ms: int = TS_MIN_MS
    max_ahead_ms: int = TS_MAX_AHEAD_MS


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why a well-formed reading's content is unusable: `rule` names the check (a metric's
    label: "time", "position", "quantity", "signals", "event"), `detail` says what failed."""

    rule: str
    detail: str

    def __str__(self) -> str:
        return self.detail


def _number(v: Any) -> bool:
    """A finite CBOR number (bool is not one; ints within the BIGINT range)."""
    t = type(v)
    if t is float:
        return math.isfinite(v)
    return t is int and MIN_INT <= v <= MAX_INT


def _text(v: Any, max_chars: int) -> bool:
    return type(v) is str and len(v) <= max_chars


def value_problem(v: Any, max_text: int = MAX_TEXT_CHARS) -> str | None:
    """Why `v` cannot be part of an event's `data` (JSON-like: maps with text keys, arrays,
    text, finite numbers, bool, null, within the size bounds), or None. `max_text`: the
    longest text (a command's arguments allow more, docs/protocol.md §3 command)."""
    t = type(v)
    if v is None or t is bool or t is str and len(v) <= max_text or _number(v):
        return None
    if t is dict:
        if len(v) > MAX_MAP_ENTRIES:
            return f"a map of more than {MAX_MAP_ENTRIES} entries"
        for key, item in v.items():
            if not _text(key, MAX_KEY_CHARS):
                return f"a key that is not text of at most {MAX_KEY_CHARS}"
            if (p := value_problem(item, max_text)) is not None:
                return p
        return None
    if t is list:
        if len(v) > MAX_ARRAY_ITEMS:
            return f"an array of more than {MAX_ARRAY_ITEMS} items"
        for item in v:
            if (p := value_problem(item, max_text)) is not None:
                return p
        return None
    if t is float:
        return "a number that is not finite"
    if t is int:
        return "an integer outside the 64-bit signed range"
    if t is str:
        return f"text longer than {max_text}"
    return f"a value of type {t.__name__}"


def _position_problem(r: dict) -> Invalid | None:
    lat: Any
    lon: Any
    lat, lon = r.get(LAT), r.get(LON)
    if not (_number(lat) and _number(lon)):
        return Invalid("position", "position without finite lat/lon")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return Invalid("position", f"position out of range: lat={lat} lon={lon}")
    for key, is_float, low, high in _CHECKS:
        v = r.get(key)
        if v is None:
            continue
        if is_float:
            if not (_number(v) and low <= v <= high):
                return Invalid("quantity", f"{key!r} is not a finite number")
        elif type(v) is not int or not low <= v <= high:
            return Invalid("quantity", f"{key!r} is not an integer in [{low}, {high}]")
    return None


def _signals_problem(r: dict) -> Invalid | None:
    bus, sig = r.get(BUS), r.get(SIGNAL_VALUES)
    if bus is not None and not _text(bus, MAX_KEY_CHARS):
        return Invalid("signals", f"'bus' is not text of at most {MAX_KEY_CHARS}")
    if type(sig) is not dict:
        return Invalid("signals", "can reading without 'sig' map")
    if len(sig) > MAX_MAP_ENTRIES:
        return Invalid("signals", f"'sig' holds more than {MAX_MAP_ENTRIES} signals")
    for name, value in sig.items():
        if not _text(name, MAX_KEY_CHARS):
            return Invalid("signals", f"a signal name is not text of at most {MAX_KEY_CHARS}")
        if not (_number(value) or _text(value, MAX_TEXT_CHARS)):
            return Invalid("signals", f"signal {name!r} is not a finite number or short text")
    return None


def _event_problem(r: dict) -> Invalid | None:
    name, data = r.get(EVENT_NAME), r.get(EVENT_DATA, {})
    if not (_text(name, MAX_KEY_CHARS) and name):
        return Invalid("event", f"event 'name' is not text of 1..{MAX_KEY_CHARS}")
    if type(data) is not dict:
        return Invalid("event", "event 'data' is not a map")
    if (p := value_problem(data)) is not None:
        return Invalid("event", f"event 'data' holds {p}")
    return None


def _action_problem(r: dict) -> Invalid | None:
    """The envelope of a driver action; its fields are the applier's to judge."""
    action = r.get(ACTION_BODY)
    if type(action) is not dict:
        return Invalid("action", "act reading without 'action' map")
    if (p := value_problem(action, MAX_ACTION_TEXT)) is not None:
        return Invalid("action", f"'action' holds {p}")
    if not (_text(action.get("key"), 64) and _text(action.get("device_id"), 64)
            and type(action.get("device_seq")) is int):
        return Invalid("action", "'action' needs text key and device_id and an integer "
                       "device_seq")
    return None


_KIND_CHECKS = {POSITION: _position_problem, SIGNALS: _signals_problem, EVENT: _event_problem,
                ACTION: _action_problem}

# --- the same checks as one expression per field, for the kinds a storm is made of -----------
#
# `content_problem` first asks these: True means the reading passes every check of its kind's
# `_…_problem` above (tests/unit/geostream/test_schema_fast.py holds them equal on generated
# readings, valid and not); False means "ask the full check", which finds the problem and says
# it. They exist because they are 2–3× cheaper per reading (no call per field, no `Invalid`
# built): a storm's drain validates every reading of 30,000 in a burst.

_NUMERIC = (float, int)  # `type(v) in _NUMERIC`: bool, a subclass of int, is not one
_FLOAT_RANGE = tuple((key, low, high) for key, is_float, low, high in _CHECKS if is_float)
_INT_RANGE = tuple((key, low, high) for key, is_float, low, high in _CHECKS if not is_float)
# a float quantity's bounds lie within the BIGINT range, so an int inside them is one `_number`
# accepts, and a float inside them is finite (NaN and ±inf fail every comparison with them)
assert all(MIN_INT <= low and high <= MAX_INT for _, low, high in _FLOAT_RANGE)
_INF = math.inf  # a finite float lies strictly between -_INF and _INF (NaN compares False)


def _position_ok(r: dict) -> bool:
    return position_values(r) is not None


# `position_values` names the quantities and their bounds as the table above gives them
assert _ROW_KEYS == (LAT, LON, "alt", "spd", "crs", "fix", "sat", "hdop")
assert _FLOAT_RANGE == tuple((k, -MAX_QUANTITY, MAX_QUANTITY) for k in ("alt", "spd", "crs",
                                                                         "hdop"))
assert _INT_RANGE == (("fix", 0, MAX_CODE), ("mode", 0, MAX_CODE), ("sat", 0, MAX_CODE),
                      ("clk", MIN_INT, MAX_INT))


def position_values(r: dict) -> tuple | None:
    """A position's stored values (`row_values` without its `data`: lat, lon, then the
    stored quantities, absent ones None) if it passes every check of `_position_problem`,
    else None: the gateway's one look at each field of a 1 Hz position (each key read once,
    the checks of `_CHECKS` unrolled)."""
    g = r.get
    lat: Any
    lon: Any
    lat, lon = g(LAT), g(LON)
    if not (type(lat) in _NUMERIC and type(lon) in _NUMERIC
            and -90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    alt, spd, crs, hdop = g("alt"), g("spd"), g("crs"), g("hdop")
    for v in (alt, spd, crs, hdop):
        if v is not None and not (type(v) in _NUMERIC and -MAX_QUANTITY <= v <= MAX_QUANTITY):
            return None
    fix, sat = g("fix"), g("sat")
    for v in (fix, g("mode"), sat):
        if v is not None and not (type(v) is int and 0 <= v <= MAX_CODE):
            return None
    clk = g("clk")
    if clk is not None and not (type(clk) is int and MIN_INT <= clk <= MAX_INT):
        return None
    return (lat, lon, alt, spd, crs, fix, sat, hdop)


def _signals_ok(r: dict) -> bool:
    bus, sig = r.get(BUS), r.get(SIGNAL_VALUES)
    if not (type(sig) is dict and len(sig) <= MAX_MAP_ENTRIES
            and (bus is None or type(bus) is str and len(bus) <= MAX_KEY_CHARS)):
        return False
    for name, v in sig.items():
        t = type(v)
        if not (type(name) is str and len(name) <= MAX_KEY_CHARS and (
                t is float and -_INF < v < _INF or t is int and MIN_INT <= v <= MAX_INT
                or t is str and len(v) <= MAX_TEXT_CHARS)):
            return False
    return True


_KIND_OK = {POSITION: _position_ok, SIGNALS: _signals_ok}


DEFAULT_WINDOW = TimeWindow()


def content_problem(r: dict, now_ms: int | None = None,
                    window: TimeWindow = DEFAULT_WINDOW) -> Invalid | None:
    """Why a well-formed reading (`check_reading` passed) is unusable, or None
    (→ invalid-reading, dead letter). Every field of its kind is type-checked; with `now_ms`
    (the gateway's clock) its `ts` must also lie in `window`."""
    if now_ms is not None:
        ts = r[TIME]
        if ts < window.min_ms or ts > now_ms + window.max_ahead_ms:
            return Invalid("time", f"'ts' {ts} outside the sane window "
                           f"[{window.min_ms}, now + {window.max_ahead_ms} ms]")
    kind = r[KIND]
    ok = _KIND_OK.get(kind)
    if ok is not None and ok(r):
        return None
    return _KIND_CHECKS[kind](r)


def reading_problem(r: dict, now_ms: int | None = None,
                    window: TimeWindow = DEFAULT_WINDOW) -> str | None:
    """`content_problem` as text (or None)."""
    problem = content_problem(r, now_ms, window)
    return None if problem is None else problem.detail


def json_safe(v: Any, depth: int = 0) -> Any:
    """`v` (a decoded reading, maybe invalid) as something every store's JSON accepts: keys as
    text, non-finite numbers, bytes and other CBOR oddities as their text, integers beyond
    64 bits as text. For dead letters, which keep what was refused."""
    t = type(v)
    if v is None or t is bool or t is str:
        return v
    if depth > MAX_CBOR_DEPTH:  # only a structure built elsewhere can be deeper (or cyclic)
        return "…"
    if t is int:
        return v if MIN_INT <= v <= MAX_INT else str(v)
    if t is float:
        return v if math.isfinite(v) else repr(v)
    if t is dict:
        return {k if type(k) is str else repr(k): json_safe(x, depth + 1) for k, x in v.items()}
    if t is list or t is tuple:
        return [json_safe(x, depth + 1) for x in v]
    if t is bytes:
        return v.hex()
    return repr(v)[:MAX_TEXT_CHARS]


def position_wire(ts_ms: int, lat: float, lon: float, values: tuple) -> dict[str, Any]:
    """A position's wire map; `values` in the order of POSITION_QUANTITIES (None: absent)."""
    out: dict[str, Any] = {TIME: ts_ms, KIND: POSITION, LAT: lat, LON: lon}
    for q, value in zip(POSITION_QUANTITIES, values, strict=True):
        if value is not None:
            out[q.wire] = value
    return out


def row_values(r: dict[str, Any]) -> tuple:
    """A valid wire reading flattened into the store's columns (all but the envelope), in the
    order of ROW_COLUMNS: a position's coordinates and quantities (absent ones None), or the
    JSON `data` of a CAN reading (its bus and signals), an event (its name and data) or a
    driver action."""
    kind = r[KIND]
    if kind == POSITION:
        return (*map(r.get, _ROW_KEYS), None)
    if kind == SIGNALS:
        data = dict(r.get(SIGNAL_VALUES) or {})
        if r.get(BUS) is not None:
            data = {BUS: r[BUS], **data}
    elif kind == ACTION:
        data = dict(r.get(ACTION_BODY) or {})
    else:
        data = {EVENT_NAME: r.get(EVENT_NAME), **(r.get(EVENT_DATA) or {})}
    return _NO_POSITION + (data,)


_NO_POSITION = (None,) * len(_ROW_KEYS)


def row_fields(r: dict[str, Any]) -> dict[str, Any]:
    """`row_values` by column: every column for a position, only `data` for the others."""
    values = row_values(r)
    if r[KIND] == POSITION:
        return dict(zip(ROW_COLUMNS, values, strict=True))
    return {"data": values[-1]}
