"""PostgreSQL fixtures for the cluster tests (tests/pgfixture.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pgfixture import pg_server, pg_template, pg_url  # noqa: E402,F401
