"""PostgreSQL fixtures: a real server per session and flavour (native partitions, then a
TimescaleDB hypertable), a fresh migrated database per test."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pgfixture import FLAVOURS, pg_template, pg_url, serve  # noqa: E402,F401


@pytest.fixture(scope="session", params=FLAVOURS)
def pg_server(request):
    """Every test here runs on both: same queries, same exactly-once guarantees."""
    yield from serve(request.param)
