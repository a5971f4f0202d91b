"""config.set's merge, check and config.get's redaction (agent/config_change.py)."""

from __future__ import annotations

import tomllib

import pytest

from agent.config_change import ChangeRefused, checked, merged, shown

BASE = """# the operator's notes
[vehicle]
id = "truck-1"
token = "s3cret"

[server]
host = "gw.example"  # production
port = 4433
ca_file = "ca.pem"

[gps]
device = "/dev/ttyACM0"

[[can.bus]]
name = "a"
interface = "virtual"
channel = "x"
"""


def test_a_fragment_merges_table_by_table_and_keeps_comments():
    out = merged(BASE, '[server]\nport = 5000\n[log]\nlevel = "debug"\n')
    parsed = tomllib.loads(out)
    assert parsed["server"] == {"host": "gw.example", "port": 5000, "ca_file": "ca.pem"}
    assert parsed["log"] == {"level": "debug"} and parsed["vehicle"]["token"] == "s3cret"
    assert "# the operator's notes" in out and "# production" in out


def test_an_array_of_tables_is_replaced_whole():
    out = tomllib.loads(merged(BASE, '[[can.bus]]\nname = "b"\ninterface = "virtual"\n'
                                     'channel = "y"\n'))
    assert [b["name"] for b in out["can"]["bus"]] == ["b"]


def test_not_toml_is_refused():
    with pytest.raises(ChangeRefused, match="not TOML"):
        merged(BASE, "[server\nport = ")


def test_check_config_rules_refuse_a_configuration_that_would_not_run(tmp_path):
    path = tmp_path / "agent.toml"
    with pytest.raises(ChangeRefused, match="agent.toml"):
        checked(path, merged(BASE, '[status]\nreport_interval_s = "soon"\n'))
    assert list(tmp_path.iterdir()) == [], "nothing left behind"


def test_config_get_hides_every_token():
    got = shown(BASE)
    assert got["config"]["vehicle"]["token"] == "***"
    assert "s3cret" not in repr(got) and len(got["file_sha256"]) == 64
    assert shown(BASE, "gps")["config"] == {"gps": {"device": "/dev/ttyACM0"}}
    with pytest.raises(ChangeRefused):
        shown(BASE, "nope")
