"""The old, never-filled `alerts` table (0002 on sqlite, 0001 on postgres) is migrated: a row
in it becomes a closed alert, and new alerts get ids after it. Real SQLite and PostgreSQL."""

import shutil
from pathlib import Path

import pytest

from backend.alerts.evaluate import Episode
from backend.store import open_store
from backend.store.base import AlertQuery, sql_dir

FIRST_NEW = {"sqlite": "0005_alerts", "postgres": "0005_alerts"}
T = 1_790_000_000_000


def _old_migrations(kind: str, tmp: Path) -> Path:
    old = tmp / "sql"
    (old / kind).mkdir(parents=True)
    for f in sorted((sql_dir() / kind).glob("*.sql")):
        if f.stem < FIRST_NEW[kind]:
            shutil.copy(f, old / kind / f.name)
    return old


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_old_alert_rows_survive_the_migration(kind, tmp_path, monkeypatch, request):
    real = sql_dir()
    if kind == "postgres":
        server = request.getfixturevalue("pg_server")
        url = server.create_database(f"mig{id(tmp_path) % 10**8}")
    else:
        url = f"sqlite://{tmp_path / 'old.db'}"
    monkeypatch.setenv("FLEET_SQL_DIR", str(_old_migrations(kind, tmp_path)))
    store = open_store(url)
    await store.open()
    try:
        if kind == "sqlite":
            await store._run(lambda: store._db.execute(
                "INSERT INTO alerts (id, vehicle_id, time_ms, kind, geofence_id, details, "
                "created_ms) VALUES (41, 'truck-1', ?, 'geofence-enter', 'depot', '{\"x\":1}', ?)",
                (T, T)))
        else:
            await store._pool.execute(
                "INSERT INTO alerts (id, vehicle_id, time, kind, geofence_id, details) VALUES "
                "(41, 'truck-1', to_timestamp($1 / 1000.0), 'geofence-enter', 'depot', "
                "'{\"x\":1}')", T)
        monkeypatch.setenv("FLEET_SQL_DIR", str(real))
        assert FIRST_NEW[kind] in await store.migrate()
        [old] = await store.list_alerts(AlertQuery())
        assert (old.id, old.rule, old.vehicle_id, old.subject, old.start_ms, old.end_ms,
                old.state, old.detail) == (41, "geofence-enter", "truck-1", "depot", T, T,
                                           "closed", {"x": 1})
        [(new, created)] = await store.save_alerts(
            [Episode("overspeed", "truck-1", T + 1, None, "", 99.0, None, None, {}, T + 1)], [],
            T)
        assert created and new.id > 41
    finally:
        await store.close()
        if kind == "postgres":
            server.psql(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
