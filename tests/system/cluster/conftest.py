"""PostgreSQL fixtures for the cluster tests (tests/pgfixture.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pytest  # noqa: E402

from backend.cluster import tunnel  # noqa: E402
from tests.pgfixture import pg_server, pg_template, pg_url  # noqa: E402,F401


@pytest.fixture
def cluster_key(tmp_path) -> tuple[str, bytes]:
    """A cluster key file (mode 0600, as `gen-cluster-key` writes it) and its key."""
    path = str(tmp_path / "cluster.key")
    tunnel.write_key(path)
    return path, tunnel.load_key(path)
