"""`[gps]` table -> source, and the errors an operator sees for bad values."""

import tomllib

import pytest

from agent.config import ConfigError
from agent.gps import SerialGpsSource
from agent.gps.config import make_source
from agent.gps.gpsd import GpsdSource
from agent.gps.tcp_source import TcpGpsSource


def gps(text: str) -> dict:
    return tomllib.loads(text).get("gps", {})


def test_absent_or_empty_section_means_no_source():
    assert make_source({}, "agent.toml") is None
    assert make_source(gps("[gps]\n"), "agent.toml") is None


def test_serial_source_with_every_option():
    src = make_source(gps("""
[gps]
device = "/dev/ttyACM0"
baud = 38400
require_checksum = false
min_interval_s_parked = 60
min_interval_s_moving = 0.5
min_distance_m = 25
min_heading_change_deg = 10
parked_speed_kmh = 4.5
max_speed_kmh = 250
"""), "agent.toml")
    assert isinstance(src, SerialGpsSource)
    assert src.device == "/dev/ttyACM0" and src.baud == 38400
    assert src.decoder.require_checksum is False
    d = src.decimator
    assert (d.min_interval_s_parked, d.min_interval_s_moving, d.min_distance_m,
            d.min_heading_change_deg, d.parked_speed_kmh) == (60, 0.5, 25, 10, 4.5)
    assert src.status()["state"] == "closed"


def test_defaults_are_auto_baud_checksums_and_decimation():
    src = make_source({"device": "/dev/ttyUSB0"}, "agent.toml")
    assert src.baud == "auto" and src.decoder.require_checksum is True
    assert src.decimator.min_interval_s_parked == 1.0 and src.decimator.min_interval_s_moving == 0
    assert make_source({"device": "/dev/ttyUSB0", "decimate": False}, "x").decimator is None


def test_gpsd_source():
    src = make_source({"gpsd": "localhost"}, "agent.toml")
    assert isinstance(src, GpsdSource) and (src.host, src.port) == ("localhost", 2947)
    src = make_source({"gpsd": "10.0.0.2:2948"}, "agent.toml")
    assert (src.host, src.port) == ("10.0.0.2", 2948)


def test_tcp_source():
    src = make_source(gps("""
[gps]
tcp = "192.168.1.1:8500"
require_checksum = false
min_interval_s_moving = 5
"""), "agent.toml")
    assert isinstance(src, TcpGpsSource) and (src.host, src.port) == ("192.168.1.1", 8500)
    assert src.decoder.require_checksum is False and src.decimator.min_interval_s_moving == 5
    assert src.status()["state"] == "closed"
    src = make_source({"tcp": "[fe80::1]:10110", "decimate": False}, "agent.toml")
    assert (src.host, src.port) == ("fe80::1", 10110) and src.decimator is None
    assert src.decoder.require_checksum is True


@pytest.mark.parametrize("section, keys", [
    ({"device": "/dev/ttyACM0", "tcp": "127.0.0.1:10110"}, ("device", "tcp")),
    ({"gpsd": "localhost", "tcp": "127.0.0.1:10110"}, ("gpsd", "tcp")),
    ({"device": "/dev/ttyACM0", "gpsd": "localhost", "tcp": "h:1"}, ("device", "gpsd", "tcp")),
])
def test_sources_are_mutually_exclusive(section, keys):
    with pytest.raises(ConfigError) as err:
        make_source(section, "agent.toml")
    assert all(repr(key) in str(err.value) for key in keys)


@pytest.mark.parametrize("section, key", [
    ({"tcp": "127.0.0.1"}, "tcp"),
    ({"tcp": "127.0.0.1:0"}, "tcp"),
    ({"tcp": "127.0.0.1:65536"}, "tcp"),
    ({"tcp": ":10110"}, "tcp"),
    ({"tcp": "::1:10110"}, "tcp"),
    ({"tcp": "[::1]"}, "tcp"),
    ({"tcp": 10110}, "tcp"),
    ({"tcp": ""}, "tcp"),
    ({"tcp": "127.0.0.1:10110", "baud": 9600}, "baud"),
    ({"tcp": "127.0.0.1:10110", "require_checksum": 1}, "require_checksum"),
    ({"device": "/dev/ttyACM0", "baud": 9601}, "baud"),
    ({"device": "/dev/ttyACM0", "baud": "fast"}, "baud"),
    ({"device": "/dev/ttyACM0", "baud": True}, "baud"),
    ({"device": "/dev/ttyACM0", "require_checksum": "yes"}, "require_checksum"),
    ({"device": "/dev/ttyACM0", "min_distance_m": -1}, "min_distance_m"),
    ({"device": "/dev/ttyACM0", "min_interval_s_moving": "1s"}, "min_interval_s_moving"),
    ({"device": "/dev/ttyACM0", "min_heading_change_deg": 270}, "min_heading_change_deg"),
    ({"device": "/dev/ttyACM0", "max_speed_kmh": 0}, "max_speed_kmh"),
    ({"device": "/dev/ttyACM0", "decimate": 1}, "decimate"),
    ({"device": "/dev/ttyACM0", "devcie": "x"}, "devcie"),
    ({"device": ""}, "device"),
    ({"baud": 9600}, "device"),
    ({"device": "/dev/ttyACM0", "gpsd": "localhost"}, "gpsd"),
    ({"gpsd": "host:99999"}, "gpsd"),
    ({"gpsd": 2947}, "gpsd"),
])
def test_bad_values_name_the_key(section, key):
    with pytest.raises(ConfigError) as err:
        make_source(section, "/etc/fleet-agent/agent.toml")
    assert key in str(err.value) and "agent.toml [gps]" in str(err.value)
