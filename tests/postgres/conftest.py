"""PostgreSQL fixtures: the run's server per flavour (native partitions, then a TimescaleDB
hypertable), a fresh migrated database per test; a server of its own for a test that stops or
restarts it."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pgfixture import (  # noqa: E402,F401
    FLAVOURS,
    fresh_database,
    pg_template,
    pg_url,
    serve,
    serve_own,
    template_of,
)


@pytest.fixture(scope="session", params=FLAVOURS)
def pg_server(request):
    """Every test here runs on both: same queries, same exactly-once guarantees."""
    yield from serve(request.param)


@pytest.fixture(params=FLAVOURS)
def own_pg_server(request):
    """A server this test alone stops, crashes and restarts."""
    yield from serve_own(request.param)


@pytest.fixture
def own_pg_url(own_pg_server):
    """A fresh migrated database on `own_pg_server`."""
    yield from fresh_database(own_pg_server, template_of(own_pg_server))
