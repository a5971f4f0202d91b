"""A database created by the release before the migrations were renumbered (one number per
concern in both dialects) upgrades cleanly: its recorded names are renamed, only the new no-op
twin is applied, its rows survive, and its schema is the schema a new database gets.

The old files are tests/data/sql_ac29e62/ (that release's sql/, unedited). Real SQLite and a
real PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from backend.store import open_store
from backend.store.base import RENAMED_MIGRATIONS, DeadLetter, StoredReading, sql_dir

OLD_SQL = Path(__file__).resolve().parents[1] / "data" / "sql_ac29e62"
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


async def _fill(store) -> None:
    """One row in the tables of each concern, through the store as the old release wrote them
    (its code wrote the same columns: only the file names changed)."""
    await store.add_vehicle("truck-1")
    await store.write([StoredReading("truck-1", 1, 1, T0, "pos", lat=50.0, lon=10.0,
                                     speed_kmh=40.0, course_deg=91.5, received_ms=T0)],
                      [DeadLetter("truck-1", 1, 2, {"k": "bad"}, "no kind", T0)])
    area = {"type": "Polygon", "coordinates": [[[9, 49], [11, 49], [11, 51], [9, 51], [9, 49]]]}
    await store.put_geofence("depot", "Depot", area)
    await store.add_command("truck-1", "ping", {})
    await store.add_user("ada", "admin", "hash")
    await store.add_service("truck-1", "oil", T0, 1000.0, None)


async def _check(store) -> None:
    assert [p["course_deg"] for p in await store.route("truck-1", T0, T0 + 1)] == [91.5]
    assert [d["error"] for d in await store.dead_letters()] == ["no kind"]
    assert [g["geofence_id"] for g in await store.geofences()] == ["depot"]
    assert [c.name for c in await store.pending_commands("truck-1")] == ["ping"]
    assert (await store.user("ada"))["role"] == "admin"
    assert (await store.last_services("truck-1"))["oil"]["done_ms"] == T0
    # and it keeps working: a new reading lands
    await store.write([StoredReading("truck-1", 1, 3, T0 + 1, "pos", lat=50.1, lon=10.0,
                                     received_ms=T0)], [])
    assert await store.count_readings("truck-1") == 2


async def _upgrade(url: str, dialect: str, monkeypatch) -> None:
    monkeypatch.setenv("FLEET_SQL_DIR", str(OLD_SQL))
    old = open_store(url)
    await old.open()
    try:
        await _fill(old)
    finally:
        await old.close()
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
