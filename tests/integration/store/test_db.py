"""A store's life on every dialect: a fresh database gets every migration in order, once."""

import pytest

from backend.store import open_store
from backend.store.base import sql_dir


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh(request, tmp_path):
    """(dialect, URL of an empty database)."""
    if request.param == "sqlite":
        yield "sqlite", f"sqlite://{tmp_path / 'fresh.db'}"
        return
    server = request.getfixturevalue("pg_server")
    name = f"fresh_{id(tmp_path) % 10**8}"
    yield "postgres", server.create_database(name)
    server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_migrate_fresh_database_then_idempotent(fresh):
    dialect, url = fresh
    store = open_store(url)
    await store.open(migrate=False)
    try:
        files = sorted(f.stem for f in (sql_dir() / dialect).glob("*.sql"))
        assert await store.migrate() == files and files[0] == "0001_init"
        assert await store.migrate() == []
    finally:
        await store.close()
