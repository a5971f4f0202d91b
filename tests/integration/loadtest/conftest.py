"""Fixtures for the load tester's tests: the PostgreSQL server of tests/pgfixture.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.pgfixture import pg_server, pg_template, pg_url  # noqa: E402,F401
