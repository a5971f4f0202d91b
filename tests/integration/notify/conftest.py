"""Both stores for the notification tests (`any_store`: SQLite and PostgreSQL), and
PostgreSQL alone (`pg_store_url`) for the two-node lease test."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.pgfixture import STORE_KINDS, opened_store, pg_server, pg_template  # noqa: E402,F401
from tests.pgfixture import pg_url as _pg_url  # noqa: E402,F401


@pytest.fixture(params=STORE_KINDS)
async def any_store(request, tmp_path):
    async for store in opened_store(request, tmp_path):
        yield store


@pytest.fixture
async def sqlite_store(tmp_path):
    """SQLite alone, for tests of the channels (the store's part runs on both elsewhere)."""
    from backend.store import open_store

    store = open_store(f"sqlite://{tmp_path / 'fleet.db'}")
    await store.open()
    yield store
    await store.close()
