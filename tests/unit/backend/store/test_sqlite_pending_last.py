"""The SQLite store's pending newest positions and signals (`db.PendingLast`) are kept and
written by part, as the upserts row by row after each commit wrote them."""

import sqlite3

from backend.store.sqlite.db import (
    LAST_POSITION_UPSERT,
    LAST_SIGNAL_UPSERT,
    PARTS,
    PendingLast,
    part_of,
)


def _last_tables() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE last_position (vehicle_id TEXT PRIMARY KEY, time_ms, lat, lon, "
               "speed_kmh, course_deg, epoch, seq)")
    db.execute("CREATE TABLE last_signal (vehicle_id TEXT, signal TEXT, value TEXT, time_ms, "
               "PRIMARY KEY (vehicle_id, signal))")
    return db


def test_pending_rows_are_written_by_part_as_the_upserts_row_by_row_would():
    vehicles = [f"veh-{k:05d}" for k in range(40)]
    parts = {part_of(v) for v in vehicles}
    assert len(parts) > 3
    pending, db, plain = PendingLast(), _last_tables(), _last_tables()
    for t in (5, 3, 9, 9):  # older and equal times do not replace a newer or first row
        positions = [(v, t, float(t), 1.0, 2.0, 3.0, 7, t + len(v)) for v in vehicles]
        signals = [(v, s, f"{t}.5", t) for v in vehicles for s in ("rpm", 'q"uote')]
        pending.add(positions, signals)
        plain.executemany(LAST_POSITION_UPSERT, positions)
        plain.executemany(LAST_SIGNAL_UPSERT, signals)
    one = part_of(vehicles[0])
    pending.forget(pending.write(db, one))
    assert {r[0] for r in db.execute("SELECT vehicle_id FROM last_position")} == {
        v for v in vehicles if part_of(v) == one}
    assert pending and not pending.positions[one] and not pending.signals[one]
    pending.forget(pending.write(db))
    assert not pending and len(pending.positions) == PARTS
    for table in ("last_position", "last_signal"):
        assert (db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                == plain.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall())
