"""`python -m backend users …` and `groups …` on both stores."""

from __future__ import annotations

import hashlib
import io
import json
import logging

from argon2 import PasswordHasher

from backend.cli import main
from tests.integration.auth.test_login import db_rows


def run(capsys, url, *args, stdin: str | None = None, monkeypatch=None) -> tuple[int, str]:
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(["--db", url, "--log-level", "DEBUG", *args])
    return code, capsys.readouterr().out


def stored_hash(url: str, name: str) -> str:
    [(h,)] = db_rows(url, f"SELECT password_hash FROM users WHERE name = '{name}'")
    return h


def test_users_cli(db_url, capsys, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    code, out = run(capsys, db_url, "users", "add", "alice", "--role", "dispatcher")
    password = out.strip()
    assert code == 0 and len(out.splitlines()) == 1 and len(password) >= 20
    assert PasswordHasher().verify(stored_hash(db_url, "alice"), password)
    assert run(capsys, db_url, "users", "add", "alice", "--role", "viewer")[0] == 2
    code, out = run(capsys, db_url, "users", "add", "bob", "--role", "viewer",
                    "--password-stdin", stdin="bobs chosen pw\n", monkeypatch=monkeypatch)
    assert code == 0 and out == ""
    assert PasswordHasher().verify(stored_hash(db_url, "bob"), "bobs chosen pw")
    code, out = run(capsys, db_url, "users", "list")
    users = [json.loads(line) for line in out.splitlines()]
    assert [(u["name"], u["role"], u["disabled"]) for u in users] == [
        ("alice", "dispatcher", False), ("bob", "viewer", False)]
    assert "hash" not in out and "argon2" not in out
    code, out = run(capsys, db_url, "users", "passwd", "alice")
    new_password = out.strip()
    assert code == 0 and new_password != password
    assert PasswordHasher().verify(stored_hash(db_url, "alice"), new_password)
    assert run(capsys, db_url, "users", "disable", "bob")[0] == 0
    assert json.loads(run(capsys, db_url, "users", "list")[1].splitlines()[1])["disabled"]
    assert run(capsys, db_url, "users", "enable", "bob")[0] == 0
    assert run(capsys, db_url, "users", "role", "bob", "admin")[0] == 0
    assert run(capsys, db_url, "users", "disable", "nobody")[0] == 1
    code, out = run(capsys, db_url, "users", "token", "alice", "--label", "cron")
    token = out.strip()
    assert code == 0 and len(token) >= 43
    assert db_rows(db_url, "SELECT token_hash FROM api_tokens") == [
        (hashlib.sha256(token.encode()).hexdigest(),)]
    [listed] = [json.loads(line) for line in run(capsys, db_url, "users", "tokens",
                                                 "alice")[1].splitlines()]
    assert listed["label"] == "cron"
    assert run(capsys, db_url, "users", "revoke-token", "alice", str(listed["id"]))[0] == 0
    assert run(capsys, db_url, "users", "revoke-token", "alice", str(listed["id"]))[0] == 1
    assert db_rows(db_url, "SELECT count(*) FROM api_tokens") == [(0,)]
    assert run(capsys, db_url, "groups", "set", "west", "--vehicle", "t1", "--vehicle", "t2",
               "--member", "alice")[0] == 0
    assert run(capsys, db_url, "groups", "set", "east", "--member", "nobody")[0] == 2
    [group] = [json.loads(line) for line in run(capsys, db_url, "groups", "list")[1].splitlines()]
    assert group == {"name": "west", "vehicles": ["t1", "t2"], "members": ["alice"]}
    assert run(capsys, db_url, "groups", "delete", "west")[0] == 0
    assert run(capsys, db_url, "groups", "list")[1] == ""
    assert db_rows(db_url, "SELECT count(*) FROM group_members") == [(0,)]
    actions = [a for (a,) in db_rows(db_url, "SELECT action FROM audit ORDER BY id")]
    assert actions[:3] == ["user.create", "user.create", "user.update"]
    for secret in (password, new_password, token, "bobs chosen pw"):
        assert secret not in caplog.text


def test_vehicle_changes_from_the_cli_are_audited(tmp_path, capsys):
    url = f"sqlite://{tmp_path / 'f.db'}"
    assert main(["--db", url, "vehicles", "add", "truck-9"]) == 0
    assert main(["--db", url, "vehicles", "revoke", "truck-9"]) == 0
    assert main(["--db", url, "vehicles", "revoke", "truck-9"]) == 1  # nothing to revoke
    assert db_rows(url, "SELECT user_name, action, target FROM audit ORDER BY id") == [
        ("cli", "vehicle.create", "truck-9"), ("cli", "vehicle.revoke", "truck-9")]
