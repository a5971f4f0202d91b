"""Every writer of a private key or secret creates it 0600 from the start (geostream/secretfile.py):
under a umask of 0, and with chmod unavailable, so the mode can only come from the creation."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest

from agent.ticket_file import TicketFile
from backend.cluster.tunnel import load_key, write_key
from backend.pki import generate
from geostream.quic import library
from geostream.secretfile import read_private, write_private
from hil.demo import agent_config

SessionTicket = library().SessionTicket


@pytest.fixture
def no_chmod_open_umask(monkeypatch):
    """umask 0 (a creation without a mode would give 0666) and no chmod to fix it up later."""
    old = os.umask(0)

    def refuse(*a, **kw):
        raise AssertionError("chmod after creating a secret file")

    monkeypatch.setattr(os, "chmod", refuse)
    monkeypatch.setattr(Path, "chmod", refuse)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_write_private_replaces_atomically_with_mode_0600(tmp_path, no_chmod_open_umask):
    target = tmp_path / "secret"
    target.write_text("old, world-readable")
    assert _mode(target) == 0o666
    write_private(target, b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o600
    assert os.listdir(tmp_path) == ["secret"], "no temporary file left behind"
    assert read_private(target) == b"new"


def test_read_private_refuses_what_others_may_read(tmp_path):
    path = tmp_path / "s"
    write_private(path, b"x")
    os.chmod(path, 0o640)  # the group may: root:service 0640 is how a package hands it over
    assert read_private(path) == b"x"
    os.chmod(path, 0o604)
    with pytest.raises(ValueError, match="others"):
        read_private(path)


def test_pki_keys_are_0600(tmp_path, no_chmod_open_umask):
    files = generate(str(tmp_path / "pki"), ["localhost"])
    assert _mode(files["ca_key"]) == 0o600 and _mode(files["key"]) == 0o600
    assert _mode(files["cert"]) == 0o666, "certificates are public"


def test_cluster_key_is_0600(tmp_path, no_chmod_open_umask):
    write_key(str(tmp_path / "cluster.key"))
    assert _mode(tmp_path / "cluster.key") == 0o600
    assert len(load_key(str(tmp_path / "cluster.key"))) == 32


def _ticket(now: dt.datetime) -> SessionTicket:
    """A session ticket valid for the next hour."""
    return SessionTicket(
        age_add=1, cipher_suite=0x1301, not_valid_after=now + dt.timedelta(hours=1),
        not_valid_before=now, resumption_secret=b"s" * 32, server_name="localhost",
        ticket=b"t" * 16)


def test_agent_session_ticket_is_0600(tmp_path, no_chmod_open_umask):
    now = dt.datetime.now(dt.UTC)
    ticket = _ticket(now)
    TicketFile(tmp_path / "session-ticket.json").save(ticket)
    assert _mode(tmp_path / "session-ticket.json") == 0o600
    assert TicketFile(tmp_path / "session-ticket.json").load(now).ticket == b"t" * 16


def test_only_the_agents_ticket_is_written_without_fsync(tmp_path, monkeypatch):
    """A secret file is fsynced before its rename; the agent's session ticket, a cache written
    inside every handshake on its event loop, is not (a lost one costs a full handshake)."""
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    write_private(tmp_path / "key", b"k")
    assert len(synced) == 1
    now = dt.datetime.now(dt.UTC)
    ticket = _ticket(now)
    TicketFile(tmp_path / "session-ticket.json").save(ticket)
    assert len(synced) == 1
    assert TicketFile(tmp_path / "session-ticket.json").load(now).ticket == b"t" * 16


def test_gateway_ticket_store_is_0600(tmp_path, monkeypatch):
    from backend.tickets import TicketStore

    old = os.umask(0)
    try:
        TicketStore(str(tmp_path / "tickets.sqlite")).close()
    finally:
        os.umask(old)
    assert _mode(tmp_path / "tickets.sqlite") == 0o600


def test_demo_agent_config_holding_a_token_is_0600(tmp_path, no_chmod_open_umask):
    path = agent_config("demo-1", "secret-token", "ca.pem", 4433, tmp_path)
    assert _mode(path) == 0o600 and 'token = "secret-token"' in path.read_text()


# --- credentials are not taken on the command line ---------------------------------------------


def _backend(*args: str, env: dict | None = None):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, "-m", "backend", *args], capture_output=True,
                          text=True, cwd=repo, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(repo), **(env or {})})


def test_secrets_in_argv_are_deprecated_with_a_warning(tmp_path):
    from backend.cli_secrets import argv_secret_warnings

    assert argv_secret_warnings("postgresql://fleet@db/fleet", "nats://10.0.0.5:4222") == []
    warned = argv_secret_warnings("postgresql://fleet:hunter2@db/fleet",
                                  "nats://fleet:pw@10.0.0.5:4222")
    assert "PGPASSWORD" in warned[0] and "--nats-password-file" in warned[1]
    assert argv_secret_warnings(None, "nats://s3cret-token@10.0.0.5:4222")
    db = f"sqlite://{tmp_path}/fleet.db"  # a flag that still works: warned, not refused
    run = _backend("--db", db, "--nats-url", "nats://u:p@127.0.0.1:1", "migrate")
    assert run.returncode == 0 and "deprecated: --nats-url" in run.stderr, run.stderr


def test_nats_credentials_come_from_private_files(tmp_path):
    from backend.natsconn import NatsSettings

    write_private(tmp_path / "pw", b"from-a-file\n")
    opts = NatsSettings("nats://10.0.0.5:4222", "fleet", str(tmp_path / "pw")).connect_options()
    assert (opts["user"], opts["password"]) == ("fleet", "from-a-file")
    write_private(tmp_path / "tok", b"a-token\n")
    assert NatsSettings("nats://h:1", token_file=str(tmp_path / "tok")).connect_options()[
        "token"] == "a-token"
    os.chmod(tmp_path / "tok", 0o644)
    with pytest.raises(ValueError, match="others"):
        NatsSettings("nats://h:1", token_file=str(tmp_path / "tok")).connect_options()
    with pytest.raises(ValueError):
        NatsSettings("nats://h:1", "fleet")  # a user without its password file
    open_nats = _backend("--nats-url", "nats://127.0.0.1:1", "--nats-token-file",
                         str(tmp_path / "tok"), "--db", f"sqlite://{tmp_path}/f.db", "migrate")
    assert open_nats.returncode == 2 and "others" in open_nats.stderr
