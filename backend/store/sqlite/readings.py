"""The embedded store's write path: one batch of readings and dead letters in one
`BEGIN IMMEDIATE` transaction; a re-sent reading is a no-op (exactly once), and each
vehicle's newest position and CAN signals never go backwards in device time."""

from __future__ import annotations

import json
import math
from operator import attrgetter, itemgetter

from ..base import DeadLetter, StoredReading
from ..rows import json_text
from .db import SqliteDb, transaction

# The table's key is (vehicle, time, epoch, seq) (sql/sqlite/0029): a re-sent reading is the
# same journal row, time included, so it conflicts and is skipped.
_INSERT = """INSERT INTO vehicle_telemetry
    (vehicle_id, epoch, seq, time_ms, kind, lat, lon, alt_m, speed_kmh, course_deg, fix, sats, hdop,
     data, received_ms)
    VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
    ON CONFLICT DO NOTHING"""
_LAST = """INSERT INTO last_position VALUES (?,?,?,?,?,?,?,?)
    ON CONFLICT (vehicle_id) DO UPDATE SET time_ms=excluded.time_ms, lat=excluded.lat,
        lon=excluded.lon, speed_kmh=excluded.speed_kmh, course_deg=excluded.course_deg,
        epoch=excluded.epoch, seq=excluded.seq
    WHERE excluded.time_ms > last_position.time_ms"""
_SIGNAL = """INSERT INTO last_signal VALUES (?,?,?,?)
    ON CONFLICT (vehicle_id, signal) DO UPDATE SET value=excluded.value, time_ms=excluded.time_ms
    WHERE excluded.time_ms > last_signal.time_ms"""
_DEAD = """INSERT INTO dead_letter (vehicle_id, epoch, seq, reading, error, received_ms)
    VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING"""


def signal_json(value) -> str:
    """`json.dumps(value, default=str)` of a CAN signal's value, numbers without the encoder
    (`repr` is what it writes for a finite float or an int): a CAN reading holds ~8 of them,
    each upserted into `last_signal`, and the encoder's call costs more than the number."""
    t = type(value)
    if t is int or (t is float and math.isfinite(value)):
        return repr(value)
    return json.dumps(value, default=str)


# A reading's columns as one tuple, in C: StoredReading's fields are _INSERT's columns in
# order (backend/store/rows.py checks the field order), `data` still the decoded map.
_COLUMNS = attrgetter(*StoredReading.__dataclass_fields__)
# _LAST's values from such a tuple: vehicle, time, lat, lon, speed, course, epoch, seq
_LAST_COLUMNS = itemgetter(0, 3, 5, 6, 8, 9, 1, 2)
# The JSON of signal names seen, with its colon (a fleet's CAN names are a few dozen); at most
# this many, so names a vehicle makes up cannot grow it without bound.
_NAME_JSON_MAX = 4096
_name_json: dict[str, str] = {}


def write_rows(readings: list[StoredReading]) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """The parameters of `_INSERT`, `_LAST` and `_SIGNAL` for a batch, in one pass over it:
    every reading's row (its data as JSON text), each vehicle's newest position and each
    (vehicle, signal)'s newest CAN value (`bus` is not a signal; a later device time wins,
    the first of equal times stays), as `newest_positions` and `newest_signals` derive them.

    Why not those two and a row per attribute: the store thread holds the GIL for all of it,
    against the gateway's event loop (issue 29 profile at 8,000 vehicles: the row list 5.4 %,
    `newest_signals` 3.9 %, JSON ~3 % of the gateway's samples). Here the columns come from
    one C call per reading, and a CAN snapshot's numbers are written once each
    (`can_json`), for its row's JSON and for `last_signal` alike."""
    rows = list(map(_COLUMNS, readings))
    positions: dict[str, tuple] = {}
    cans: dict[str, list[tuple[int, list[tuple[str, str]]]]] = {}
    for i, row in enumerate(rows):
        kind, data = row[4], row[13]
        if kind == "pos":
            old = positions.get(row[0])
            if old is None or row[3] > old[3]:
                positions[row[0]] = row
        if data is None:
            continue
        if kind == "can" and isinstance(data, dict):
            text, values = can_json(data)
            same = cans.get(row[0])
            if same is None:
                cans[row[0]] = [(row[3], values)]
            else:
                same.append((row[3], values))
        else:
            text = json_text(data)
        rows[i] = (*row[:13], text, row[14])
    signals: list[tuple] = []
    for vehicle, snapshots in cans.items():
        if len(snapshots) == 1:
            t, values = snapshots[0]
            signals += [(vehicle, name, value, t) for name, value in values]
            continue
        newest: dict[str, tuple[str, int]] = {}
        for t, values in snapshots:
            for name, value in values:
                if name not in newest or t > newest[name][1]:
                    newest[name] = (value, t)
        signals += [(vehicle, name, value, t) for name, (value, t) in newest.items()]
    return rows, list(map(_LAST_COLUMNS, positions.values())), signals


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


class SqliteReadings(SqliteDb):
    async def write(self, readings: list[StoredReading], dead: list[DeadLetter]) -> None:
        await self._run(self._write, readings, dead)

    def _write(self, readings: list[StoredReading], dead: list[DeadLetter]) -> None:
        db = self._db
        rows, last, signals = write_rows(readings)
        with transaction(db):
            db.executemany(_INSERT, rows)
            db.executemany(_LAST, last)
            db.executemany(_SIGNAL, signals)
            db.executemany(_DEAD, [
                (d.vehicle_id, d.epoch, d.seq, json.dumps(d.reading, default=str), d.error,
                 d.received_ms) for d in dead
            ])
