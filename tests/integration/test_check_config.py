"""`fleet-agent check-config FILE`: the daemon's own validation, errors as FILE:LINE."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent.check_config import check
from tests.conftest import REPO, _env

GOOD = """\
[vehicle]
id = "truck-1"
token = "t0k3n"

[server]
host = "gw.example.com"
ca_file = "ca.pem"

[journal]
path = "journal.sqlite"

[gps]
device = "/dev/ttyACM0"
baud = 9600

[[can.bus]]
name = "truck"
channel = "can0"
dbc = ["truck_j1939.dbc"]
signals = ["EngSpeed"]

[log]
level = "info"
"""


def _write(tmp_path, text: str):
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def _line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_a_good_config_is_ok(tmp_path):
    path = _write(tmp_path, GOOD)
    out = subprocess.run([sys.executable, "-m", "agent", "check-config", str(path)],
                         capture_output=True, text=True, env=_env(), cwd=REPO, timeout=60)
    assert (out.returncode, out.stdout.strip()) == (0, f"{path}: OK"), out.stderr


@pytest.mark.parametrize("broken, needle, words", [
    # (replace this, the line the error must point at, words the message must contain)
    (('baud = 9600', 'baud = 9601'), "baud = 9601", ["'baud'"]),
    (('signals = ["EngSpeed"]', 'signals = ["NoSuchSignal"]'), "signals = [", ["NoSuchSignal"]),
    (('level = "info"', 'level = "loud"'), 'level = "loud"', ["'level'"]),
    (('token = "t0k3n"\n', ''), "[vehicle]", ["missing key 'token'"]),
    (('host = "gw.example.com"', 'host = "gw.example.com'), 'host = "gw', ["illegal character"]),
], ids=["bad-baud", "unknown-signal", "bad-level", "missing-token", "toml-syntax"])
def test_errors_name_file_and_line(tmp_path, broken, needle, words):
    text = GOOD.replace(*broken)
    assert text != GOOD
    path = _write(tmp_path, text)
    [problem] = check(str(path))
    where, _, message = problem.partition(": ")
    assert where.split(":")[:2] == [str(path), str(_line_of(text, needle))], problem
    for w in words:
        assert w.lower() in message.lower(), problem


def test_unknown_table_and_exit_status(tmp_path):
    path = _write(tmp_path, GOOD + "\n[gsp]\ndevice = \"x\"\n")
    out = subprocess.run([sys.executable, "-m", "agent", "check-config", str(path)],
                         capture_output=True, text=True, env=_env(), cwd=REPO, timeout=60)
    assert out.returncode == 1
    assert "unknown table [gsp]" in out.stderr


def test_a_file_without_tables_is_a_problem_not_a_crash(tmp_path):
    """The shipped example (debian/agent.toml) is all comments until edited."""
    path = _write(tmp_path, "# [vehicle]\n# id = \"truck-1\"\n")
    [problem] = check(str(path))
    assert problem.startswith(f"{path}: ") and "[vehicle]" in problem, problem
