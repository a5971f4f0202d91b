"""A real backend with stored readings of yesterday, for the MCP tests (SQLite and PostgreSQL)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pgfixture import pg_server, pg_template  # noqa: E402,F401
from pgfixture import pg_url as _pg_url  # noqa: E402,F401


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "postgres":
        return request.getfixturevalue("_pg_url")
    return f"sqlite://{tmp_path / 'fleet.db'}"

