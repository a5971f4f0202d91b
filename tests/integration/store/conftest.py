"""Both stores behind one fixture: `any_store` runs a test on SQLite, on PostgreSQL with native
partitions and on PostgreSQL with a TimescaleDB hypertable."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.pgfixture import pg_server, pg_template, ts_server, ts_template  # noqa: E402,F401
from tests.pgfixture import pg_url as _pg_url  # noqa: E402,F401
from tests.pgfixture import ts_url as _ts_url  # noqa: E402,F401


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("timescale", marks=pytest.mark.postgres)])
async def any_store(request, tmp_path):
    from backend.store import open_store

    if request.param == "postgres":
        url = request.getfixturevalue("_pg_url")
    elif request.param == "timescale":
        url = request.getfixturevalue("_ts_url")
    else:
        url = f"sqlite://{tmp_path / 'fleet.db'}"
    store = open_store(url)
    await store.open()
    yield store
    await store.close()
