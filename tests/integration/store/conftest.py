"""Both stores behind one fixture: `any_store` runs a test on SQLite, on PostgreSQL with native
partitions and on PostgreSQL with a TimescaleDB hypertable."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.pgfixture import (  # noqa: E402,F401
    STORE_KINDS_WITH_TIMESCALE,
    opened_store,
    pg_server,
    pg_template,
    ts_server,
    ts_template,
)
from tests.pgfixture import pg_url as _pg_url  # noqa: E402,F401
from tests.pgfixture import ts_url as _ts_url  # noqa: E402,F401


@pytest.fixture(params=STORE_KINDS_WITH_TIMESCALE)
async def any_store(request, tmp_path):
    async for store in opened_store(request, tmp_path):
        yield store
