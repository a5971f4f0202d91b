"""The rename to one name per quantity (sql/*/*_quantity_names.sql): a store written under the
old column names (alt, course) keeps its readings and serves them under the code names."""

import sqlite3

import asyncpg
import pytest

from backend.store import open_store
from backend.store.base import sql_dir
from geostream import schema

T0 = 1_763_856_000_000  # 2025-11-23T00:00:00Z
OLD = "_quantity_names"


def before_rename(tmp_path, dialect):
    """A copy of the migrations that stops before the rename (the later ones, which may use
    the new names, left out too)."""
    out = tmp_path / "sql"
    (out / dialect).mkdir(parents=True)
    for f in sorted((sql_dir() / dialect).glob("*.sql")):
        if f.stem.endswith(OLD):
            break
        (out / dialect / f.name).write_text(f.read_text())
    return out


def test_columns_carry_the_code_names():
    stored = {q.column for q in schema.POSITION_QUANTITIES if q.column}
    assert stored == {q.name for q in schema.POSITION_QUANTITIES if q.column}
    assert {"alt_m", "course_deg"} <= stored


async def check_renamed(store):
    assert [(p["time_ms"], p["course_deg"]) for p in await store.route("v1", T0, T0 + 1)] == [
        (T0, 91.5)]
    (last,) = await store.last_positions()
    assert last["course_deg"] == 91.5 and "course" not in last
    (r,) = await store.alert_readings("v1", None)
    assert (r.alt_m, r.course_deg, r.speed_kmh) == (512.25, 91.5, 40.0)


def _write_under_old_names_sqlite(url: str) -> None:
    with sqlite3.connect(url.removeprefix("sqlite://")) as db:
        db.execute("INSERT INTO vehicle_telemetry (vehicle_id, epoch, seq, time_ms, kind, lat, "
                   "lon, alt, speed_kmh, course, received_ms) "
                   "VALUES ('v1', 1, 1, ?, 'pos', 50.0, 10.0, 512.25, 40.0, 91.5, ?)", (T0, T0))
        db.execute("INSERT INTO last_position VALUES ('v1', ?, 50.0, 10.0, 40.0, 91.5, 1, 1)",
                   (T0,))


async def _write_under_old_names_postgres(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        t = "to_timestamp($1::bigint / 1000.0)"
        await conn.execute("SELECT telemetry_ensure_partitions(to_timestamp($1::bigint / 1000.0),"
                           " to_timestamp($1::bigint / 1000.0))", T0)
        await conn.execute(
            "INSERT INTO vehicle_telemetry (time, vehicle_id, epoch, seq, kind, location, "
            f"speed_kmh, course, alt, received_at) VALUES ({t}, 'v1', 1, 1, 'pos', "
            f"ST_SetSRID(ST_MakePoint(10, 50), 4326), 40, 91.5, 512.25, {t})", T0)
        await conn.execute(
            "INSERT INTO last_position (vehicle_id, time, location, speed_kmh, course, epoch, "
            f"seq) VALUES ('v1', {t}, ST_SetSRID(ST_MakePoint(10, 50), 4326), 40, 91.5, 1, 1)",
            T0)
    finally:
        await conn.close()


@pytest.mark.parametrize("flavour", [
    "sqlite", pytest.param("pg_server", marks=pytest.mark.postgres),
    pytest.param("ts_server", marks=pytest.mark.postgres)])
async def test_rename_keeps_rows(tmp_path, monkeypatch, request, flavour):
    dialect = "sqlite" if flavour == "sqlite" else "postgres"
    if flavour == "sqlite":
        url = f"sqlite://{tmp_path / 'fleet.db'}"
    else:
        url = request.getfixturevalue(flavour).create_database(f"rename_{flavour}")
    monkeypatch.setenv("FLEET_SQL_DIR", str(before_rename(tmp_path, dialect)))
    store = open_store(url)
    await store.open()
    await store.close()
    if dialect == "sqlite":
        _write_under_old_names_sqlite(url)
    else:
        await _write_under_old_names_postgres(url)
    monkeypatch.delenv("FLEET_SQL_DIR")
    store = open_store(url)
    await store.open()
    try:
        await check_renamed(store)
    finally:
        await store.close()
