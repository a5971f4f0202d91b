"""The embedded store's write path: one batch of readings and dead letters in one
`BEGIN IMMEDIATE` transaction; a re-sent reading is a no-op (exactly once), and each
vehicle's newest position and CAN signals never go backwards in device time."""

from __future__ import annotations

import json
import math

from ..base import DeadLetter, StoredReading, newest_positions, newest_signals
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


class SqliteReadings(SqliteDb):
    async def write(self, readings: list[StoredReading], dead: list[DeadLetter]) -> None:
        await self._run(self._write, readings, dead)

    def _write(self, readings: list[StoredReading], dead: list[DeadLetter]) -> None:
        db = self._db
        with transaction(db):
            db.executemany(_INSERT, [
                (r.vehicle_id, r.epoch, r.seq, r.time_ms, r.kind, r.lat, r.lon, r.alt_m,
                 r.speed_kmh, r.course_deg, r.fix, r.sats, r.hdop, r.data_json(), r.received_ms)
                for r in readings
            ])
            db.executemany(_LAST, [
                (r.vehicle_id, r.time_ms, r.lat, r.lon, r.speed_kmh, r.course_deg, r.epoch, r.seq)
                for r in newest_positions(readings).values()
            ])
            db.executemany(_SIGNAL, [
                (v, name, signal_json(value), t)
                for (v, name), (value, t) in newest_signals(readings).items()])
            db.executemany(_DEAD, [
                (d.vehicle_id, d.epoch, d.seq, json.dumps(d.reading, default=str), d.error,
                 d.received_ms) for d in dead
            ])
