"""Without PostgreSQL binaries the fixture fails loudly instead of skipping."""

import pgfixture
import pytest


def test_missing_binaries_raise_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("FLEET_PG_BINDIR", str(tmp_path))
    monkeypatch.setattr(pgfixture.shutil, "which", lambda name: None)
    monkeypatch.setattr(pgfixture.glob, "glob", lambda pattern: [])
    with pytest.raises(pgfixture.PgUnavailable, match="postgresql-15"):
        pgfixture.find_bindir()


def test_bindir_override_wins(monkeypatch, tmp_path):
    for tool in ("initdb", "pg_ctl"):
        (tmp_path / tool).touch()
    monkeypatch.setenv("FLEET_PG_BINDIR", str(tmp_path))
    assert pgfixture.find_bindir() == tmp_path
