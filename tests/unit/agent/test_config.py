"""The agent's TOML configuration: defaults, relative paths, and errors that name the key."""

from __future__ import annotations

import pytest

from agent.config import ConfigError, JournalConfig, load_config

MINIMAL = """
[vehicle]
id = "truck-7"
token = "secret"

[server]
host = "gw.example.net"
ca_file = "ca.pem"

[gps]
device = "/dev/ttyACM0"
"""


def write(tmp_path, text: str):
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_minimal_file_gets_documented_defaults(tmp_path):
    cfg = load_config(str(write(tmp_path, MINIMAL)))
    assert (cfg.vehicle_id, cfg.token, cfg.server.port) == ("truck-7", "secret", 4433)
    assert cfg.server.ca_file == str(tmp_path / "ca.pem")  # relative to the config file
    assert cfg.server.send_interval_ms == 1000 and cfg.server.pin_sha256 == ()
    assert cfg.server.quic_library == ""  # the seam's default (geostream/quic/)
    assert cfg.journal == JournalConfig()
    assert cfg.gps == {"device": "/dev/ttyACM0"}


def test_settings_are_read(tmp_path):
    pin = "ab" * 32
    text = MINIMAL.replace('ca_file = "ca.pem"', f'ca_file = "/etc/ca.pem"\nport = 5000\n'
                           f'send_interval_ms = 0\npin_sha256 = "{pin.upper()}"\n'
                           'quic_library = "qh3"')
    text += '\n[journal]\npath = "j.sqlite"\ncommit_interval_ms = 50\n'
    cfg = load_config(str(write(tmp_path, text)))
    assert cfg.server.ca_file == "/etc/ca.pem" and cfg.server.port == 5000
    assert cfg.server.send_interval_ms == 0 and cfg.server.pin_sha256 == (pin,)
    assert cfg.server.quic_library == "qh3"
    assert cfg.journal.path == str(tmp_path / "j.sqlite") and cfg.journal.commit_interval_ms == 50


@pytest.mark.parametrize("change, key", [
    (('token = "secret"', ""), "token"),
    (('host = "gw.example.net"', ""), "host"),
    (('ca_file = "ca.pem"', 'ca_file = "ca.pem"\nsend_interval_ms = -5'), "send_interval_ms"),
    (('ca_file = "ca.pem"', 'ca_file = "ca.pem"\nsend_interval_ms = "1s"'), "send_interval_ms"),
    (('ca_file = "ca.pem"', 'ca_file = "ca.pem"\npin_sha256 = ["abc"]'), "pin_sha256"),
    (('ca_file = "ca.pem"', 'ca_file = "ca.pem"\nquic_library = "quiche"'), "quic_library"),
    (('ca_file = "ca.pem"', 'ca_file = "ca.pem"\nquic_library = 3'), "quic_library"),
])
def test_bad_values_name_the_key(tmp_path, change, key):
    with pytest.raises(ConfigError) as exc:
        load_config(str(write(tmp_path, MINIMAL.replace(*change))))
    assert key in str(exc.value) and "agent.toml" in str(exc.value)


def test_missing_and_unparsable_files(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="agent.toml"):
        load_config(str(write(tmp_path, "[vehicle\nid=")))
