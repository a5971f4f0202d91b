"""The values a store keeps and returns: a reading flattened into columns, a dead letter, a
command, an alert, the filters of an alert query; and the newest position and signals of a
batch, which every store derives the same way. Pure: no I/O."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from geostream import schema

# the scalar columns of a stored reading, in the order the stores select them
ROW_FIELDS = ("vehicle_id", "epoch", "seq", "time_ms", "kind", "lat", "lon", "alt_m",
              "speed_kmh", "course_deg", "fix", "sats", "hdop")


@dataclass(frozen=True, slots=True)
class StoredReading:
    """One reading as persisted: the wire reading flattened into columns."""

    vehicle_id: str
    epoch: int
    seq: int
    time_ms: int
    kind: str
    lat: float | None = None
    lon: float | None = None
    alt_m: float | None = None
    speed_kmh: float | None = None
    course_deg: float | None = None
    fix: int | None = None
    sats: int | None = None
    hdop: float | None = None
    data: dict | None = None
    received_ms: int = 0

    @classmethod
    def from_wire(cls, vehicle_id: str, epoch: int, r: dict[str, Any],
                  received_ms: int) -> StoredReading:
        """A valid wire reading as its row (`geostream.schema.row_values`: the columns from
        `lat` to `data`, this class's own order, checked below)."""
        return made(vehicle_id, epoch, r[schema.SEQ], r[schema.TIME], r[schema.KIND],
                    *schema.row_values(r), received_ms)  # type: ignore[call-arg]

    @classmethod
    def from_row(cls, r) -> StoredReading:
        """From a row of ROW_FIELDS, then the data JSON and received_ms (positional: ROW_FIELDS
        is the fields' own order, checked below; a storm's alert replays read back
        thousands)."""
        data = r[13]
        return made(*r[:13], None if data is None else json.loads(data),  # type: ignore[call-arg]
                    r[14])

    def data_json(self) -> str | None:
        return None if self.data is None else json_text(self.data)


# from_row passes the columns positionally, from_wire the schema's row values
assert tuple(StoredReading.__dataclass_fields__) == (*ROW_FIELDS, "data", "received_ms")
assert tuple(StoredReading.__dataclass_fields__)[5:14] == schema.ROW_COLUMNS


class _Unfrozen:
    """StoredReading's slots without the frozen check, for `made`."""

    __slots__ = tuple(StoredReading.__dataclass_fields__)

    def __init__(self, vehicle_id, epoch, seq, time_ms, kind, lat, lon, alt_m, speed_kmh,
                 course_deg, fix, sats, hdop, data, received_ms):
        self.vehicle_id, self.epoch, self.seq, self.time_ms, self.kind = (
            vehicle_id, epoch, seq, time_ms, kind)
        self.lat, self.lon, self.alt_m, self.speed_kmh, self.course_deg = (
            lat, lon, alt_m, speed_kmh, course_deg)
        self.fix, self.sats, self.hdop, self.data, self.received_ms = (
            fix, sats, hdop, data, received_ms)


# `json.dumps(value, separators=(",", ":"), default=str)` without a new JSONEncoder per call
# (json.dumps makes one whenever an argument is not its default: ~40 % of a CAN snapshot's
# encoding, measured); the encoder keeps no state between calls, so threads may share it.
json_text = json.JSONEncoder(separators=(",", ":"), default=str).encode


def signal_json(value) -> str:
    """`json.dumps(value, default=str)` of a CAN signal's value, numbers without the encoder
    (`repr` is what it writes for a finite float or an int): a CAN reading holds ~8 of them,
    and the encoder's call costs more than the number."""
    t = type(value)
    if t is int or (t is float and math.isfinite(value)):
        return repr(value)
    return json.dumps(value, default=str)


# The JSON of signal names seen, with its colon (a fleet's CAN names are a few dozen); at most
# this many, so names a vehicle makes up cannot grow it without bound.
_NAME_JSON_MAX = 4096
_name_json: dict[str, str] = {}


def can_json(data: dict) -> tuple[str, list[tuple[str, str]]]:
    """(`json_text(data)`, [(signal, `signal_json(value)`)]) of a CAN snapshot (`bus` is not
    a signal). A snapshot of names and numbers or text (what CAN decoding makes) is encoded
    value by value, each number's text (`repr`, the encoders' own, and most of their time)
    used in both; anything else goes to the encoders."""
    parts: list[str] = []
    values: list[tuple[str, str]] = []
    for name, value in data.items():
        t = type(value)
        if t is float:
            text = repr(value) if math.isfinite(value) else json_text(value)
        elif t is int:
            text = repr(value)
        elif t is str:
            text = json_text(value)
        else:
            break
        key = _name_json.get(name)
        if key is None:
            if type(name) is not str:
                break
            key = json_text(name) + ":"
            if len(_name_json) < _NAME_JSON_MAX:
                _name_json[name] = key
        parts.append(key + text)
        if name != "bus":
            values.append((name, text))
    else:
        return "{" + ",".join(parts) + "}", values
    return json_text(data), [(name, signal_json(value)) for name, value in data.items()
                             if name != "bus"]


def _made_by_class(vehicle_id: str, epoch: int, seq: int, time_ms: int, kind: str,
                   lat: float | None, lon: float | None, alt_m: float | None,
                   speed_kmh: float | None, course_deg: float | None, fix: int | None,
                   sats: int | None, hdop: float | None, data: dict | None,
                   received_ms: int) -> StoredReading:
    """`StoredReading(...)` of all fields, positionally, built for the rows a gateway makes in
    bulk (every reading it accepts, every row an alert replay reads back).

    Why not the dataclass's own `__init__`: a frozen dataclass sets each of its 15 fields
    through `object.__setattr__`, measured at 1.2–2.0 µs per row on this project's machine,
    against 0.16–0.28 µs for plain slot assignments on a class of the same slots whose object
    then becomes a StoredReading (`__class__` assignment between classes of one layout, which
    Python allows; the object is the same as the dataclass builds: equal, same hash, frozen).
    """
    r = _Unfrozen(vehicle_id, epoch, seq, time_ms, kind, lat, lon, alt_m, speed_kmh,
                  course_deg, fix, sats, hdop, data, received_ms)
    r.__class__ = StoredReading  # type: ignore[assignment]
    return r  # type: ignore[return-value]


_new_unfrozen = object.__new__


def _made_position_by_class(vehicle_id: str, epoch: int, seq: int, time_ms: int,
                            values: tuple, received_ms: int) -> StoredReading:
    """`made(vehicle_id, epoch, seq, time_ms, "pos", *values, None, received_ms)` for the
    gateway's every position (`values`: `geostream.schema.position_values`' eight), in one
    call instead of two and without unpacking `values` into arguments."""
    r = _new_unfrozen(_Unfrozen)
    r.vehicle_id, r.epoch, r.seq, r.time_ms, r.kind = vehicle_id, epoch, seq, time_ms, "pos"
    (r.lat, r.lon, r.alt_m, r.speed_kmh, r.course_deg, r.fix, r.sats, r.hdop) = values
    r.data, r.received_ms = None, received_ms
    r.__class__ = StoredReading  # type: ignore[assignment]
    return r  # type: ignore[return-value]


def _made_by_init(vehicle_id: str, epoch: int, seq: int, time_ms: int, kind: str,
                  lat: float | None, lon: float | None, alt_m: float | None,
                  speed_kmh: float | None, course_deg: float | None, fix: int | None,
                  sats: int | None, hdop: float | None, data: dict | None,
                  received_ms: int) -> StoredReading:
    """`made` by the class's own constructor, where `__class__` assignment is refused: a
    compiled (mypyc) build, whose classes have their own layouts: docs/benchmarks.md,
    "Compiled modules (mypyc), session 15"."""
    return StoredReading(vehicle_id, epoch, seq, time_ms, kind, lat, lon, alt_m, speed_kmh,
                         course_deg, fix, sats, hdop, data, received_ms)


def _made_position_by_init(vehicle_id: str, epoch: int, seq: int, time_ms: int,
                           values: tuple, received_ms: int) -> StoredReading:
    """`made_position` by the class's own constructor (a compiled build, as `_made_by_init`)."""
    lat, lon, alt_m, speed_kmh, course_deg, fix, sats, hdop = values
    return StoredReading(vehicle_id, epoch, seq, time_ms, "pos", lat, lon, alt_m, speed_kmh,
                         course_deg, fix, sats, hdop, None, received_ms)


try:  # `made` and `made_position`: the first of the two this build allows (one trial)
    _made_by_class("", 0, 0, 0, "", None, None, None, None, None, None, None, None, None, 0)
    made, made_position = _made_by_class, _made_position_by_class
except TypeError:
    made, made_position = _made_by_init, _made_position_by_init


@dataclass(frozen=True, slots=True)
class DeadLetter:
    vehicle_id: str
    epoch: int
    seq: int
    reading: dict
    error: str
    received_ms: int


@dataclass(frozen=True, slots=True)
class StoredCommand:
    """A downlink command (docs/protocol.md §3) and what became of it."""

    id: int
    vehicle_id: str
    name: str
    args: dict
    created_ms: int
    sent_count: int = 0
    last_sent_ms: int | None = None
    answered_ms: int | None = None
    ok: bool | None = None
    detail: str | None = None
    result: dict | None = None  # the answer's structured result (protocol revision 2)

    @classmethod
    def from_row(cls, r) -> StoredCommand:
        """From a row of (id, vehicle_id, name, args JSON, created_ms, sent_count,
        last_sent_ms, answered_ms, ok, detail, result JSON); `ok` may come as 0/1 (SQLite)."""
        return cls(id=r[0], vehicle_id=r[1], name=r[2], args=json.loads(r[3]), created_ms=r[4],
                   sent_count=r[5], last_sent_ms=r[6], answered_ms=r[7],
                   ok=None if r[8] is None else bool(r[8]), detail=r[9],
                   result=None if r[10] is None else json.loads(r[10]))

    def as_json(self) -> dict:
        """The REST answer of GET /api/commands/{id}."""
        return {"state": "pending" if self.answered_ms is None else "answered",
                "id": self.id, "vehicle": self.vehicle_id, "name": self.name, "args": self.args,
                "created_ms": self.created_ms, "sent_count": self.sent_count,
                "last_sent_ms": self.last_sent_ms, "answered_ms": self.answered_ms,
                "ok": self.ok, "detail": self.detail, "result": self.result}


def entry_indexes(inside: list[bool], first: int) -> list[int]:
    """Indexes i >= `first` where a time-ordered track goes from outside to inside."""
    return [i for i in range(max(first, 1), len(inside)) if inside[i] and not inside[i - 1]]


def newest_positions(readings: list[StoredReading]) -> dict[str, StoredReading]:
    """{vehicle: its newest position in a batch} (a later device time wins)."""
    out: dict[str, StoredReading] = {}
    for r in readings:
        if r.kind == "pos" and (r.vehicle_id not in out or r.time_ms > out[r.vehicle_id].time_ms):
            out[r.vehicle_id] = r
    return out


def newest_signals(readings: list[StoredReading]) -> dict[tuple[str, str], tuple[Any, int]]:
    """{(vehicle, signal): (value, time_ms)}: each CAN signal's newest value in a batch."""
    out: dict[tuple[str, str], tuple[Any, int]] = {}
    for r in readings:
        if r.kind != "can" or not isinstance(r.data, dict):
            continue
        for name, value in r.data.items():
            key = (r.vehicle_id, name)
            if name != "bus" and (key not in out or r.time_ms > out[key][1]):
                out[key] = (value, r.time_ms)
    return out


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """An alert as stored (docs/alerts.md); `(rule, vehicle_id, subject, start_ms)` is unique."""

    id: int
    rule: str
    vehicle_id: str
    subject: str
    start_ms: int
    end_ms: int | None
    peak: float | None
    state: str  # open | closed | retracted (a backfill showed it did not happen)
    lat: float | None
    lon: float | None
    detail: dict
    decided_ms: int
    acknowledged_by: str | None = None
    acknowledged_ms: int | None = None

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.rule, self.vehicle_id, self.subject, self.start_ms)

    def as_json(self) -> dict:
        """The REST and hub shape (docs/alerts.md, GET /api/alerts)."""
        return {"id": self.id, "rule": self.rule, "vehicle": self.vehicle_id,
                "subject": self.subject or None, "start_ms": self.start_ms,
                "end_ms": self.end_ms, "peak": self.peak, "state": self.state,
                "acknowledged_by": self.acknowledged_by,
                "acknowledged_ms": self.acknowledged_ms, "lat": self.lat, "lon": self.lon,
                "detail": self.detail}


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """Filters of GET /api/alerts; None means "any". Newest start first, at most `limit`."""

    vehicle: str | None = None
    vehicles: frozenset[str] | None = None  # only these (a principal's groups); None: all
    rule: str | None = None
    state: str | None = None  # None: open and closed (never retracted unless asked)
    acknowledged: bool | None = None
    from_ms: int | None = None  # alerts that overlap [from_ms, to_ms)
    to_ms: int | None = None
    limit: int = 100


# Rules driven by the clock (or, late_risk, by live ETAs: backend/dispatch/live_eta.py) rather
# than by re-evaluated readings: kept out of re-evaluation windows.
TIME_RULES = ("stale", "offline", "service", "signal_health", "late_risk")
