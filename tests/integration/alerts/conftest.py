"""`any_store` runs an alert test on SQLite and on PostgreSQL (tests/pgfixture.py)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.pgfixture import STORE_KINDS, opened_store, pg_server, pg_template  # noqa: E402,F401
from tests.pgfixture import pg_url as _pg_url  # noqa: E402,F401

# longer than the days since 1970, and a while after
RETENTION_FROM_1970_DAYS = 40_000


@pytest.fixture(params=STORE_KINDS)
async def any_store(request, tmp_path):
    async for store in opened_store(request, tmp_path):
        if request.param == "postgres":
            # the drives of these tests are hand-timed from 0 s (1970): PostgreSQL stores
            # readings only within its retention (partition window), so it keeps them all here
            await store.set_policy(retention_days=RETENTION_FROM_1970_DAYS)
        yield store
