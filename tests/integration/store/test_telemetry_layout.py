"""The embedded store's readings clustered by (vehicle, device time, epoch, seq)
(sql/sqlite/0029), landing first in arrival order (0031): a database of the layout before
0029 upgrades with every reading carried over and gives the answers a store written today
gives, each stored reading updates one B-tree (no index beside the tables), a re-sent reading
is still a no-op, and every per-vehicle question seeks the keys instead of scanning. Real
SQLite."""

from __future__ import annotations

import sqlite3

from backend.store import open_store
from backend.store.base import sql_dir
from backend.store.rows import StoredReading, newest_positions, newest_signals, signal_json
from backend.store.sqlite.db import LAST_POSITION_UPSERT, LAST_SIGNAL_UPSERT
from backend.store.sqlite.readings import write_rows

T0 = 1_790_000_000_000
LAYOUT = "0029_telemetry_by_time"


def readings(vehicle: str, seqs, epoch: int = 3) -> list[StoredReading]:
    out = []
    for q in seqs:
        t = T0 + q * 1000
        if q % 4 == 0:
            out.append(StoredReading(vehicle, epoch, q, t, "can",
                                     data={"bus": "can0", "rpm": q * 10}, received_ms=t))
        else:
            out.append(StoredReading(vehicle, epoch, q, t, "pos", lat=50 + q / 1000,
                                     lon=10.0, speed_kmh=float(q), course_deg=90.0, fix=1,
                                     sats=8, received_ms=t))
    return out


def _before_layout(tmp_path):
    """A copy of the migrations that stops before the layout's."""
    out = tmp_path / "sql"
    (out / "sqlite").mkdir(parents=True)
    for f in sorted((sql_dir() / "sqlite").glob("*.sql")):
        if f.stem >= LAYOUT:
            break
        (out / "sqlite" / f.name).write_text(f.read_text())
    return out


def _indexes(path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name IN "
            "('vehicle_telemetry', 'telemetry_by_vehicle', 'telemetry_arrivals')")]


def _write_before(path, rows: list[StoredReading]) -> None:
    """`rows` as the write path before 0029 stored them: into the table, and the newest
    position and signals upserted."""
    table, _, _ = write_rows(rows)
    last = [(r.vehicle_id, r.time_ms, r.lat, r.lon, r.speed_kmh, r.course_deg, r.epoch, r.seq)
            for r in newest_positions(rows).values()]
    signals = [(v, name, signal_json(value), t)
               for (v, name), (value, t) in newest_signals(rows).items()]
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO vehicle_telemetry (vehicle_id, epoch, seq, time_ms, kind, lat, lon, "
            "alt_m, speed_kmh, course_deg, fix, sats, hdop, data, received_ms) VALUES "
            "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING", table)
        db.executemany(LAST_POSITION_UPSERT, last)
        db.executemany(LAST_SIGNAL_UPSERT, signals)


async def _answers(store) -> tuple:
    return (await store.count_readings(), await store.route("a", T0, T0 + 100_000),
            await store.route("b", T0, T0 + 100_000, step_ms=10_000),
            await store.signal_series("a", "rpm", T0, T0 + 100_000, 100),
            await store.last_positions(), await store.last_fixes(),
            await store.readings_fingerprint("a", T0, T0 + 100_000))


async def test_a_database_of_the_layout_before_upgrades_with_every_reading(tmp_path,
                                                                          monkeypatch):
    path = tmp_path / "fleet.db"
    # out of order and interleaved, as backfill and many vehicles write them
    rows = readings("a", range(40, 0, -1)) + readings("b", range(1, 30))
    fresh = open_store(f"sqlite://{tmp_path / 'fresh.db'}")  # today's, written today
    await fresh.open()
    await fresh.write(rows, [])
    before = await _answers(fresh)
    await fresh.close()
    monkeypatch.setenv("FLEET_SQL_DIR", str(_before_layout(tmp_path)))
    old = open_store(f"sqlite://{path}")
    await old.open()
    await old.close()
    _write_before(path, rows)
    assert _indexes(path) == ["vehicle_telemetry_vehicle_time"]
    monkeypatch.delenv("FLEET_SQL_DIR")

    store = open_store(f"sqlite://{path}")
    await store.open(migrate=False)
    try:
        assert await store.migrate() == [f.stem for f in sorted(
            (sql_dir() / "sqlite").glob("*.sql")) if f.stem >= LAYOUT]
        assert await _answers(store) == before
        assert before[0] == 69 and len(before[1]) == 30  # a's positions
        assert _indexes(path) == []  # one B-tree per stored reading: the table itself
        await store.write(readings("a", range(35, 45)), [])  # 35–40 re-sent, 41–44 new
        assert await store.count_readings("a") == 44
        assert [p["seq"] for p in await store.route("a", T0, T0 + 100_000)][-3:] == [41, 42, 43]
    finally:
        await store.close()


# the plan's lines on the two tables under the view (`a` and `t` are their aliases there)
_TABLES = ("telemetry_by_vehicle", "telemetry_arrivals", "a", "t")


def _plans(db: sqlite3.Connection, statements: list[str]) -> list[tuple[str, list[str]]]:
    """(statement, its plan's lines on the readings' tables) of each traced statement."""
    out = []
    for sql in statements:
        if "telemetry" not in sql or not sql.lstrip().upper().startswith("SELECT"):
            continue
        lines = [r[3] for r in db.execute(f"EXPLAIN QUERY PLAN {sql}")]
        out.append((sql, [x for x in lines
                          if x.startswith(("SEARCH ", "SCAN ")) and x.split()[1] in _TABLES]))
    return out


async def test_each_question_about_one_vehicle_seeks_its_span_of_time(tmp_path):
    """The store's own queries (captured as they run, with their values) each search the
    table's key by vehicle and time: none scans the table or one vehicle's every row."""
    store = open_store(f"sqlite://{tmp_path / 'fleet.db'}")
    await store.open()
    try:
        await store.write(readings("a", range(1, 41)) + readings("b", range(1, 41)), [])
        traced: list[str] = []
        for conn in {store._db, store._rdb}:
            conn.set_trace_callback(traced.append)
        await store.route("a", T0, T0 + 20_000)
        await store.route("a", T0, T0 + 20_000, step_ms=5000, limit=3)
        await store.last_fixes()
        await store.signal_series("a", "rpm", T0, T0 + 20_000, 10)
        await store.events("a", "door", T0, T0 + 20_000, 10)
        await store.signal_frames("a", ["rpm"], T0, T0 + 20_000, 10)
        await store.readings_fingerprint("a", T0, T0 + 20_000)
        await store.alert_readings("a", T0 + 5000)
        await store.vehicle_geofence_entries("a", T0 + 5000, T0 + 20_000)
        for conn in {store._db, store._rdb}:
            conn.set_trace_callback(None)
        with sqlite3.connect(tmp_path / "fleet.db") as db:
            plans = _plans(db, traced)
    finally:
        await store.close()
    assert len(plans) >= 9
    for sql, plan in plans:
        assert plan, sql
        for line in plan:  # the clustered table by vehicle and time, the arrivals by part
            assert line.startswith("SEARCH") and "USING PRIMARY KEY (" in line, (sql, line)
            if " a " not in line:
                assert "(vehicle_id=? AND time_ms" in line, (sql, line)
            elif "last_position" not in sql:  # last_fixes: each last position's own key
                assert "(part=? AND time_ms" in line, (sql, line)
