"""A real backend (gateway, store, HTTP) on loopback, on SQLite and on PostgreSQL, with users
of each role; a fake clock for session expiry and the login limiter."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pgfixture import pg_server, pg_template  # noqa: E402,F401
from pgfixture import pg_url as _pg_url  # noqa: E402,F401

from backend.auth.middleware import AUTH  # noqa: E402
from backend.config import BackendConfig  # noqa: E402
from backend.service import Backend  # noqa: E402
from tests.authhelp import TEST_PASSWORD, add_user_token  # noqa: E402

ROLES = ("viewer", "dispatcher", "admin")



class FakeClock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class Running:
    backend: Backend
    url: str
    db_url: str
    clock: FakeClock
    tokens: dict[str, str] = field(default_factory=dict)  # role → API token of user <role>

    @property
    def store(self):
        return self.backend.store

    @property
    def auth(self):
        return self.backend.app[AUTH]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "postgres":
        return request.getfixturevalue("_pg_url")
    return f"sqlite://{tmp_path / 'fleet.db'}"


@pytest.fixture
async def running(db_url, pki, tmp_path):
    """The whole backend as `python -m backend` runs it, HTTP on an ephemeral port; users
    viewer, dispatcher and admin (password TEST_PASSWORD) each with an API token."""
    config = BackendConfig(db=db_url, quic_host="127.0.0.1", quic_port=0,
                           http_host="127.0.0.1", http_port=0, cert=pki["cert"], key=pki["key"],
                           ticket_file=str(tmp_path / "tickets.sqlite"))
    backend = Backend(config)
    await backend.start()
    clock = FakeClock()
    backend.app[AUTH].clock = clock
    r = Running(backend, f"http://127.0.0.1:{backend.http_port}", db_url, clock)
    for role in ROLES:
        r.tokens[role] = await add_user_token(backend.store, role, role, TEST_PASSWORD)
    try:
        yield r
    finally:
        await backend.stop()
