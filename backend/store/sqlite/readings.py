"""The embedded store's write path: one batch of readings and dead letters in one
`BEGIN IMMEDIATE` transaction; a re-sent reading is a no-op (exactly once), and each
vehicle's newest position and CAN signals never go backwards in device time.

Readings land in `telemetry_arrivals`, in order of arrival within 16 parts by vehicle, and
every `MOVE_EVERY_S` each part's readings move into `telemetry_by_vehicle`, the table
clustered by (vehicle, time, epoch, seq), in one transaction of one statement each (sql/sqlite/
0031; the view `vehicle_telemetry`, which every reader reads, holds both). Why: at 10,000
vehicles a commit of 200 readings rewrote ~200 leaves of the clustered table, one per
vehicle; appended, it writes a few pages, and a move writes each vehicle's leaf once for
~10 s of its readings (docs/benchmarks.md "The SQLite store path, session 12")."""

from __future__ import annotations

import json
import logging
import time
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from operator import attrgetter, itemgetter

from ..base import DeadLetter, StoredReading
from ..rows import json_text
from .db import PART, PARTS, SqliteDb, part_of, transaction  # noqa: F401 (part_of: tests)

log = logging.getLogger(__name__)

# Seconds between two moves of one part: each part moves once in this time, one part every
# MOVE_EVERY_S / PARTS, with the pending `last_position`/`last_signal` rows of its vehicles
# (so every reading whose rows there are not written yet is still among the arrivals, where
# a restart finds them). Longer moves more of a vehicle's readings per leaf of the clustered
# table (its leaf, its siblings and their parent are rewritten per move whatever it
# carries) and writes its newest position and signals once for more readings, but keeps more
# rows in arrival order, which a question about one vehicle's last seconds reads its part of
# (1/16 of the fleet's readings of the last MOVE_EVERY_S), and makes each move longer (at
# 10,000 vehicles × 1 Hz, 20 s is ~12,500 readings, ~0.1 s of the store thread, which the
# acks of the commits behind it wait for). More parts, each moved as often, make each move
# shorter but write more: 64 parts wrote 1.32 WAL pages per reading against 0.72 (the pages of
# `last_position`, `last_signal` and the clustered table's upper levels are shared by the
# vehicles of every part, so a move of 1/64 of them writes nearly as many as one of 1/16).
# Measured: docs/benchmarks.md "The SQLite store path, session 12" and "The SQLite store
# thread's GIL, session 13".
MOVE_EVERY_S = 20.0

_COLUMN_LIST = ("vehicle_id, epoch, seq, time_ms, kind, lat, lon, alt_m, speed_kmh, course_deg, "
                "fix, sats, hdop, data, received_ms")
# A re-sent reading is the same journal row, time included: among the arrivals it conflicts
# with its own row; one moved already is hidden by the view and dropped by its move.
_INSERT = f"""INSERT INTO telemetry_arrivals (part, {_COLUMN_LIST})
    VALUES ({PART.format(v="?1")}, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,
            ?15)
    ON CONFLICT DO NOTHING"""
# One part's readings (all of them without a part) into the clustered table in its key order,
# then out of the arrivals, in one transaction: a crash before its COMMIT leaves them where
# they were. A reading that was re-sent after its first copy moved conflicts, and stays once.
_MOVE = f"""INSERT INTO telemetry_by_vehicle ({_COLUMN_LIST})
    SELECT {_COLUMN_LIST} FROM telemetry_arrivals WHERE {{where}}
    ORDER BY vehicle_id, time_ms, epoch, seq ON CONFLICT DO NOTHING"""
_MOVED = "DELETE FROM telemetry_arrivals WHERE {where}"
_DEAD = """INSERT INTO dead_letter (vehicle_id, epoch, seq, reading, error, received_ms)
    VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING"""


# A reading's columns as one tuple, in C: StoredReading's fields are _INSERT's columns in
# order (backend/store/rows.py checks the field order), `data` still the decoded map.
_COLUMNS = attrgetter(*StoredReading.__dataclass_fields__)
# `rows.json_text` of a reading's data, by the C encoder that `json.JSONEncoder.encode` makes
# anew at each call (with its own map of the containers under way, against cycles). Why: one
# CAN snapshot of 8 signals took 3.4 µs this way against 4.5 through `encode` (this project's
# machine, session 14); the data of a validated reading is a decoded CBOR tree, acyclic and
# bounded in depth (geostream/schema.py), and anything deeper fails its commit as before
# (RecursionError instead of ValueError). The encoder keeps no state between calls.
_data_json = c_make_encoder(None, str, encode_basestring_ascii, None, ":", ",", False, False,
                            True) if c_make_encoder is not None else None


def data_json(data) -> str:
    """`json_text(data)`, the text stored as a reading's `data` (the same text)."""
    if _data_json is None:
        return json_text(data)
    return "".join(_data_json(data, 0))


# LAST_POSITION_UPSERT's values from such a tuple: vehicle, time, lat, lon, speed, course,
# epoch, seq
_LAST_COLUMNS = itemgetter(0, 3, 5, 6, 8, 9, 1, 2)


def write_rows(readings: list[StoredReading]) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """For a batch, in one pass: the parameters of `_INSERT` (every reading's columns, its
    data as JSON text, `data_json`), `LAST_POSITION_UPSERT`'s of each vehicle's newest
    position (a later device time wins, the first of equal times stays), and every CAN
    reading with map data as (its row, its map), for `PendingLast.add`.

    Why one pass and no more: the store thread holds the GIL for all of it, against the
    gateway's event loop. The columns come from one C call per reading; a CAN reading's
    signals are SQLite's to read at the move (`PendingLast`), not made into rows here."""
    rows = list(map(_COLUMNS, readings))
    positions: dict[str, tuple] = {}
    cans: list[tuple] = []
    for i, row in enumerate(rows):
        data = row[13]
        if data is None:
            if row[4] == "pos":
                old = positions.get(row[0])
                if old is None or row[3] > old[3]:
                    positions[row[0]] = row
            continue
        rows[i] = new = (*row[:13], data_json(data), row[14])
        if row[4] == "can" and isinstance(data, dict):
            cans.append((new, data))
        elif row[4] == "pos":
            old = positions.get(row[0])
            if old is None or row[3] > old[3]:
                positions[row[0]] = row
    return rows, list(map(_LAST_COLUMNS, positions.values())), cans


class SqliteReadings(SqliteDb):
    # the next part to move, and when (time.monotonic(), on the event loop)
    _next_part = 0
    _move_due = 0.0

    async def write(self, readings: list[StoredReading], dead: list[DeadLetter]) -> None:
        await self._run(self._write, readings, dead)
        now = time.monotonic()
        if now >= self._move_due:  # after this batch's ack, before the next batch's commit
            self._move_due = now + MOVE_EVERY_S / PARTS
            part, self._next_part = self._next_part, (self._next_part + 1) % PARTS
            try:
                self._executor.submit(self._move_quietly, part)
            except RuntimeError:  # closing: the readings are stored, and move at the next open
                pass

    def _write(self, readings: list[StoredReading], dead: list[DeadLetter]) -> None:
        db = self._db
        rows, last, cans = write_rows(readings)
        with transaction(db):
            db.executemany(_INSERT, rows)
            if dead:
                db.executemany(_DEAD, [
                    (d.vehicle_id, d.epoch, d.seq, json.dumps(d.reading, default=str), d.error,
                     d.received_ms) for d in dead
                ])
        self._pending_last.add(last, cans)  # committed: theirs are due

    def _open(self, migrate: bool) -> None:
        super()._open(migrate)
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE name='telemetry_arrivals'"
                            ).fetchone():
            self._recover()

    def _recover(self) -> None:
        """After a stop or a crash: the arrivals' newest positions and signals into their
        tables (those of a crash's last commits were pending), then every part moved, so the
        parts start empty."""
        readings = [StoredReading.from_row(r) for r in self._db.execute(
            f"SELECT {_COLUMN_LIST} FROM telemetry_arrivals")]  # key order: of two positions
        # of one vehicle at one device time, both pending at a crash, the lower (epoch, seq)
        _, last, cans = write_rows(readings)  # stays (not the first stored, as otherwise)
        self._pending_last.add(last, cans)
        self._move(None)

    def _move(self, part: int | None) -> None:
        """Move one part's readings (None: all) into the clustered table, and write the
        pending `last_position`/`last_signal` rows, in one transaction (the signals first:
        SQLite reads them from the arrivals)."""
        where, args = ("true", ()) if part is None else ("part=?", (part,))
        pending = self._pending_last
        with transaction(self._db) as db:  # the moved readings' newest, at least
            written = pending.write(db, part)
            db.execute(_MOVE.format(where=where), args)
            db.execute(_MOVED.format(where=where), args)
        pending.forget(written)

    def _move_quietly(self, part: int) -> None:
        """`_move` for the cadence (nobody awaits it): a failure is logged and the readings
        stay where the readers see them, to move with the part's next turn."""
        try:
            self._move(part)
        except Exception as exc:
            log.warning("moving part %d of the readings failed: %s", part, exc)
