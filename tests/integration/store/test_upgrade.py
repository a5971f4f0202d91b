"""A database created by the release before the migrations were renumbered (one number per
concern in both dialects) upgrades cleanly: its recorded names are renamed, only what that
release did not have is applied, its rows (written with that release's columns) survive, and
its schema is the schema a new database gets.

The old files are tests/data/sql_ac29e62/ (that release's sql/, unedited). Real SQLite and a
real PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from backend.store import AuthResult, open_store
from backend.store.base import RENAMED_MIGRATIONS, StoredReading, sql_dir

OLD_SQL = Path(__file__).resolve().parents[2] / "data" / "sql_ac29e62"
T0 = 1_790_000_000_000
# the no-op twins the renumbering added, so that each number exists in both dialects
TWINS = {"sqlite": {"0007_partitions"}, "postgres": {"0002_geofences_alerts"}}

# the schema of a PostgreSQL database: columns, indexes, constraints and the store's own
# functions (partitions and PostGIS's own objects left out: the same in both)
PG_SCHEMA = """
SELECT string_agg(x, E'\n' ORDER BY x) FROM (
    SELECT format('%s.%s %s %s %s', c.table_name, c.column_name, c.data_type, c.is_nullable,
                  c.column_default) AS x
    FROM information_schema.columns c JOIN pg_class k ON k.relname = c.table_name
    WHERE c.table_schema = 'public' AND NOT k.relispartition
      AND c.table_name NOT IN ('spatial_ref_sys', 'geography_columns', 'geometry_columns')
    UNION ALL
    SELECT i.indexdef FROM pg_indexes i JOIN pg_class k ON k.relname = i.tablename
    WHERE i.schemaname = 'public' AND NOT k.relispartition AND i.tablename <> 'spatial_ref_sys'
    UNION ALL
    SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = 'public'::regnamespace
      AND conrelid::regclass::text NOT LIKE 'vehicle_telemetry_%'
      AND conrelid::regclass::text <> 'spatial_ref_sys'
    UNION ALL
    SELECT proname || ' ' || md5(prosrc) FROM pg_proc WHERE proname LIKE 'telemetry_%'
) s"""


def _added_since(dialect: str) -> list[str]:
    """Today's migrations a database of the old release has not applied (by their new names)."""
    renamed = RENAMED_MIGRATIONS[dialect]
    old = {renamed.get(f.stem, f.stem) for f in (OLD_SQL / dialect).glob("*.sql")}
    return sorted({f.stem for f in (sql_dir() / dialect).glob("*.sql")} - old)


def _sqlite_schema(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master "
                          "ORDER BY type, name").fetchall()


AREA = '{"type": "Polygon", "coordinates": [[[9, 49], [11, 49], [11, 51], [9, 51], [9, 49]]]}'
# one row in the tables of each concern, as the old release's schema has them (raw SQL: the
# store's code of today writes today's columns)
SQLITE_ROWS = [
    ("INSERT INTO vehicles VALUES ('truck-1', 'hash', ?, NULL)", (T0,)),
    ("INSERT INTO vehicle_telemetry (vehicle_id, epoch, seq, time_ms, kind, lat, lon, "
     "speed_kmh, course_deg, received_ms) VALUES ('truck-1', 1, 1, ?, 'pos', 50, 10, 40, 91.5, ?)",
     (T0, T0)),
    ("INSERT INTO dead_letter (vehicle_id, epoch, seq, reading, error, received_ms) "
     "VALUES ('truck-1', 1, 2, '{}', 'no kind', ?)", (T0,)),
    ("INSERT INTO geofences (geofence_id, name, area, created_ms) VALUES ('depot', 'Depot', ?, ?)",
     (AREA, T0)),
    ("INSERT INTO commands (id, vehicle_id, name, args, created_ms) "
     "VALUES (?, 'truck-1', 'ping', '{}', ?)", (T0 * 1000, T0)),
    ("INSERT INTO users (name, role, password_hash, created_ms) VALUES ('ada', 'admin', 'h', ?)",
     (T0,)),
    ("INSERT INTO maintenance_services (vehicle_id, interval, done_ms, odometer_km) "
     "VALUES ('truck-1', 'oil', ?, 1000)", (T0,)),
    ("INSERT INTO last_signal VALUES ('truck-1', 'rpm', '1500', ?), "
     "('truck-1', 'gear', '\"D\"', ?)", (T0, T0 - 1000)),
]
_T = "to_timestamp($1::bigint / 1000.0)"
POSTGRES_ROWS = [
    ("SELECT telemetry_ensure_partitions(to_timestamp($1::bigint / 1000.0), "
     "to_timestamp($1::bigint / 1000.0))", (T0,)),
    ("INSERT INTO vehicles (vehicle_id, token_hash) VALUES ('truck-1', 'hash')", ()),
    ("INSERT INTO vehicle_telemetry (time, vehicle_id, epoch, seq, kind, location, speed_kmh, "
     f"course_deg, received_at) VALUES ({_T}, 'truck-1', 1, 1, 'pos', "
     f"ST_SetSRID(ST_MakePoint(10, 50), 4326), 40, 91.5, {_T})", (T0,)),
    ("INSERT INTO dead_letter (vehicle_id, epoch, seq, reading, error, received_at) "
     f"VALUES ('truck-1', 1, 2, '{{}}', 'no kind', {_T})", (T0,)),
    ("INSERT INTO geofences (geofence_id, name, area) VALUES ('depot', 'Depot', "
     "ST_SetSRID(ST_GeomFromGeoJSON($1), 4326))", (AREA,)),
    ("INSERT INTO commands (id, vehicle_id, name, args, created_at) "
     f"VALUES ($2, 'truck-1', 'ping', '{{}}', {_T})", (T0, T0 * 1000)),
    ("INSERT INTO users (name, role, password_hash) VALUES ('ada', 'admin', 'h')", ()),
    ("INSERT INTO maintenance_services (vehicle_id, interval, done_time, odometer_km) "
     f"VALUES ('truck-1', 'oil', {_T}, 1000)", (T0,)),
    ("INSERT INTO last_signal VALUES ('truck-1', 'rpm', '1500', "
     f"{_T}), ('truck-1', 'gear', '\"D\"', to_timestamp($2::bigint / 1000.0))",
     (T0, T0 - 1000)),
]


async def _fill(url: str, dialect: str) -> None:
    if dialect == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite://")) as db:
            for sql, args in SQLITE_ROWS:
                db.execute(sql, args)
        return
    conn = await asyncpg.connect(url)
    try:
        for sql, args in POSTGRES_ROWS:
            await conn.execute(sql, *args)
    finally:
        await conn.close()


async def _check(store) -> None:
    assert [p["course_deg"] for p in await store.route("truck-1", T0, T0 + 1)] == [91.5]
    assert [d["error"] for d in await store.dead_letters()] == ["no kind"]
    assert [g["geofence_id"] for g in await store.geofences()] == ["depot"]
    assert [c.name for c in await store.pending_commands("truck-1")] == ["ping"]
    assert (await store.user("ada"))["role"] == "admin"
    assert await store.authenticate("truck-1", "wrong") is AuthResult.UNKNOWN
    assert (await store.last_services("truck-1"))["oil"]["done_ms"] == T0
    assert await store.last_signals() == {"truck-1": {  # PostgreSQL: one row per vehicle now
        "gear": {"value": "D", "time_ms": T0 - 1000}, "rpm": {"value": 1500, "time_ms": T0}}}
    # and it keeps working: a new reading lands
    await store.write([StoredReading("truck-1", 1, 3, T0 + 1, "pos", lat=50.1, lon=10.0,
                                     received_ms=T0)], [])
    assert await store.count_readings("truck-1") == 2


async def _upgrade(url: str, dialect: str, monkeypatch) -> None:
    monkeypatch.setenv("FLEET_SQL_DIR", str(OLD_SQL))
    old = open_store(url)
    await old.open()  # the old release's schema, all of it
    await old.close()
    await _fill(url, dialect)
    monkeypatch.delenv("FLEET_SQL_DIR")
    store = open_store(url)
    await store.open(migrate=False)
    try:
        assert await store.migrate() == _added_since(dialect)
        assert await store.migrate() == []
        await _check(store)
    finally:
        await store.close()


def test_each_number_names_one_concern_in_both_dialects():
    """sql/sqlite/ and sql/postgres/ hold the same file names (a no-op where one dialect needs
    nothing), so a concern's migration has one number."""
    sqlite, postgres = ({f.name for f in (sql_dir() / d).glob("*.sql")}
                        for d in ("sqlite", "postgres"))
    assert sqlite == postgres
    assert len({name[:4] for name in sqlite}) == len(sqlite)


def test_old_names_map_onto_todays_files():
    for dialect in ("sqlite", "postgres"):
        old = {f.stem for f in (OLD_SQL / dialect).glob("*.sql")}
        new = {f.stem for f in (sql_dir() / dialect).glob("*.sql")}
        renamed = RENAMED_MIGRATIONS[dialect]
        assert set(renamed) <= old and set(renamed.values()) <= new
        assert {renamed.get(s, s) for s in old} <= new  # every old file has its new name
        added = _added_since(dialect)
        assert TWINS[dialect] <= set(added) and all(s[:4] > "0009" for s in set(added) -
                                                    TWINS[dialect])


async def test_sqlite_database_of_the_old_release_upgrades(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    await _upgrade(f"sqlite://{path}", "sqlite", monkeypatch)
    with sqlite3.connect(path) as db:
        versions = [r[0] for r in db.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == sorted(f.stem for f in (sql_dir() / "sqlite").glob("*.sql"))
    fresh = open_store(f"sqlite://{tmp_path / 'new.db'}")
    await fresh.open()
    await fresh.close()
    assert _sqlite_schema(path) == _sqlite_schema(tmp_path / "new.db")


@pytest.mark.postgres
async def test_postgres_database_of_the_old_release_upgrades(pg_server, monkeypatch):
    old = f"upgrade_old_{os.getpid()}"
    new = f"upgrade_new_{os.getpid()}"
    try:
        await _upgrade(pg_server.create_database(old), "postgres", monkeypatch)
        versions = pg_server.psql("SELECT string_agg(version, ' ' ORDER BY version) "
                                  "FROM schema_migrations", dbname=old).split()
        assert versions == sorted(f.stem for f in (sql_dir() / "postgres").glob("*.sql"))
        fresh = open_store(pg_server.create_database(new))
        await fresh.open()
        await fresh.close()
        schema = pg_server.psql(PG_SCHEMA, dbname=old)
        assert "maintenance_services" in schema and "telemetry_maintain" in schema
        assert schema == pg_server.psql(PG_SCHEMA, dbname=new)
    finally:
        for name in (old, new):
            pg_server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
