"""[can] table → sources; every mistake is a ConfigError naming the file and key."""

from __future__ import annotations

import re
import shutil
import tomllib

import pytest

from agent.can.config import make_sources
from agent.can.source import CanBusSource, ReplaySource
from agent.config import ConfigError
from tests.integration.can.can_helpers import DATA, TYPES

WHERE = "/etc/fleet-agent/agent.toml"


def build(toml: str, base_dir):
    return make_sources(tomllib.loads(toml).get("can", {}), WHERE, base_dir)


def test_empty_section_gives_no_sources(tmp_path):
    assert make_sources({}, WHERE, tmp_path) == []


def test_full_example(tmp_path):
    shutil.copy(TYPES, tmp_path / "types.dbc")
    (tmp_path / "drive.log").write_text("(1.0) can0 104#0301\n")
    sources = build('''
[can]
snapshot_hz = 1

[[can.bus]]
name = "truck"
interface = "socketcan"
channel = "can0"
dbc = ["truck_j1939.dbc"]            # shipped DBC, found by name
min_interval_ms = 100

[[can.bus.signals]]
name = "EngSpeed"
deadband = 25
max_interval_ms = 5000

[[can.bus.signals]]
name = "CCVS1.WheelBasedVehicleSpeed"
min_interval_ms = 500

[[can.bus]]
name = "replayed"
interface = "replay"
replay = "drive.log"
speed = 0
dbc = "types.dbc"
signals = ["GearPos", {name = "Level", deadband = 1}]
snapshot_hz = 0
''', tmp_path)
    live, replay = sources
    assert isinstance(live, CanBusSource) and isinstance(replay, ReplaySource)
    assert live.name == "can:truck" and live.kernel_filters and replay.speed == 0
    rules = live.pipeline.selector.rules
    assert rules["EngSpeed"].deadband == 25 and rules["EngSpeed"].min_interval_ms == 100
    assert rules["CCVS1.WheelBasedVehicleSpeed"].min_interval_ms == 500
    assert live.pipeline.selector.snapshot_period_ms == 1000
    assert replay.pipeline.selector.snapshot_period_ms == 0
    # the two selected PGNs, and (DM1 on by default on a J1939 bus) DM1 and the BAM frames
    pgns = {f["can_id"] >> 8 for f in live.pipeline.decoder.can_filters()}
    assert len(pgns) == 5 and {0xFECA, 0xEC00, 0xEB00} <= pgns
    assert live.status()["state"] == "closed"


def test_bad_dbc_names_file_and_line(tmp_path):
    (tmp_path / "broken.dbc").write_text(
        'VERSION ""\n\nBU_: A\nBO_ 100 M: 8 A\n SG_ S : 0|8@1+ (1,0) [0|255] "" A\n'
        ' SG_ T : 8|8@1+ (1,0 [0|255] "" A\n')
    with pytest.raises(ConfigError) as err:
        build('[[can.bus]]\nname="x"\ninterface="virtual"\ndbc=["broken.dbc"]\n', tmp_path)
    text = str(err.value)
    assert WHERE in text and "broken.dbc line 6" in text and "'x'" in text


def test_dbc_strict_mode_problem_is_a_warning_naming_file_and_line(tmp_path, caplog):
    (tmp_path / "overlap.dbc").write_text(
        'VERSION ""\n\nBU_: A\nBO_ 100 M: 2 A\n SG_ S : 0|8@1+ (1,0) [0|255] "" A\n'
        ' SG_ T : 4|8@1+ (1,0) [0|255] "" A\n')
    (src,) = build('[[can.bus]]\nname="x"\ninterface="virtual"\ndbc=["overlap.dbc"]\n',
                   tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert re.search(r"overlap\.dbc line 6: The signals T and S", warnings[0])
    assert src.pipeline.decoder.counts["dbc_warnings"] == 1


def test_dbc_cantools_cannot_parse_is_refused(tmp_path):
    (tmp_path / "broken.dbc").write_text('VERSION ""\n\nBU_: A\nBO_ 100 M 2 A\n')
    with pytest.raises(ConfigError, match=r"broken\.dbc line 4"):
        build('[[can.bus]]\nname="x"\ninterface="virtual"\ndbc=["broken.dbc"]\n', tmp_path)


@pytest.mark.parametrize("body, message", [
    ('name="x"\ninterface="virtual"\ndbc=["missing.dbc"]', "missing.dbc"),
    ('name="x"\ninterface="virtual"', "'dbc'"),
    ('interface="virtual"\ndbc=["truck_j1939.dbc"]', "'name'"),
    ('name="x"\ninterface="virtual"\ndbc=["truck_j1939.dbc"]\nsignals=["NoSuch"]', "NoSuch"),
    ('name="x"\ninterface="virtual"\ndbc=["truck_j1939.dbc"]\nsignals=["EEC1.FuelLevel1"]',
     "EEC1.FuelLevel1"),
    ('name="x"\ninterface="virtual"\ndbc=["truck_j1939.dbc"]\nsignals=[]', "'signals'"),
    ('name="x"\ninterface="virtual"\ndbc=["truck_j1939.dbc"]\nsignals=[{name="EngSpeed", '
     'deadband="big"}]', "'deadband'"),
    ('name="x"\ninterface="virtual"\ndbc=["truck_j1939.dbc"]\nsignals=[{name="EngSpeed", '
     'min_interval_ms=-1}]', "'min_interval_ms'"),
    ('name="x"\ninterface="socketcan"\ndbc=["truck_j1939.dbc"]', "'channel'"),
    ('name="x"\ninterface="replay"\ndbc=["truck_j1939.dbc"]', "'replay'"),
    ('name="x"\ninterface="replay"\nreplay="nope.log"\ndbc=["truck_j1939.dbc"]', "nope.log"),
    ('name="x"\ninterface="virtual"\ndbc=["truck_j1939.dbc"]\nbogus=1', "bogus"),
    ('name="x"\ninterface="virtual"\ndbc=["truck_j1939.dbc"]\nj1939="maybe"', "'j1939'"),
    ('name="x"\ninterface="replay"\nreplay="x.log"\nloop="yes"\ndbc=["truck_j1939.dbc"]',
     "'loop'"),
])
def test_bad_bus_config(tmp_path, body, message):
    (tmp_path / "x.log").write_text("(1.0) can0 123#00\n")
    with pytest.raises(ConfigError) as err:
        build("[[can.bus]]\n" + body + "\n", tmp_path)
    assert WHERE in str(err.value) and message in str(err.value)


def test_ambiguous_signal_name_must_be_qualified(tmp_path):
    dbc = tmp_path / "dup.dbc"
    dbc.write_text('VERSION ""\n\nBU_: A\nBO_ 100 M1: 1 A\n SG_ Speed : 0|8@1+ (1,0) [0|255] "" A\n'
                   'BO_ 101 M2: 1 A\n SG_ Speed : 0|8@1+ (1,0) [0|255] "" A\n')
    with pytest.raises(ConfigError, match=r"M1\.Speed, M2\.Speed"):
        build('[[can.bus]]\nname="x"\ninterface="virtual"\ndbc="dup.dbc"\nsignals=["Speed"]\n',
              tmp_path)
    (src,) = build('[[can.bus]]\nname="x"\ninterface="virtual"\ndbc="dup.dbc"\n'
                   'signals=["M2.Speed"]\n', tmp_path)
    out = []
    from tests.integration.can.can_helpers import frame
    src.pipeline.feed(frame(100, b"\x05", False), 0, out.append)
    src.pipeline.feed(frame(101, b"\x07", False), 1, out.append)
    assert [r.values for r in out] == [{"M2.Speed": 7}]


def test_duplicate_bus_names_and_bad_tables(tmp_path):
    bus = '[[can.bus]]\nname="x"\ninterface="virtual"\ndbc="truck_j1939.dbc"\n'
    with pytest.raises(ConfigError, match="twice"):
        build(bus + bus, tmp_path)
    with pytest.raises(ConfigError, match="bus"):
        make_sources({"bus": {"name": "x"}}, WHERE, tmp_path)
    with pytest.raises(ConfigError, match="unknown"):
        make_sources({"buses": []}, WHERE, tmp_path)
    assert DATA.exists()


OBD_BUS = '[[can.bus]]\nname="car"\ninterface="virtual"\nchannel="x"\ndbc=["obd2.dbc"]\n'


def test_obd_polling_table(tmp_path):
    (src,) = build(OBD_BUS + '[can.bus.obd]\npids = [0x0C, { pid = 0x0D, interval_ms = 500 }]\n'
                   'interval_ms = 2000\ndtc_interval_s = 30\nrequest_id = 0x7E0\n', tmp_path)
    cfg = src.pipeline.poller.cfg
    assert cfg.pids == ((0x0C, 2000), (0x0D, 500)) and cfg.dtc_interval_ms == 30_000
    assert cfg.request_id == 0x7E0
    assert src.pipeline.decoder.j1939 is False  # obd2.dbc has no J1939: DM1 stays off


@pytest.mark.parametrize("obd, message", [
    ("pids = [0]", "'pid' must be 1..255"),
    ("pids = [0x0C]\nrequest_id = 0x123", "'request_id'"),
    ("pids = [0x0C]\ninterval_ms = 10", "'interval_ms'"),
    ("pids = []\ndtc_interval_s = 0", "nothing to poll"),
    ("pids = [0x0C]\nspeed = 1", "unknown key"),
    ('pids = ["rpm"]', "a PID number"),
])
def test_obd_polling_errors(tmp_path, obd, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        build(OBD_BUS + "[can.bus.obd]\n" + obd + "\n", tmp_path)


def test_obd_polling_needs_a_live_bus_and_bad_dm1_or_range_check_values(tmp_path):
    (tmp_path / "d.log").write_text("(1.0) can0 104#0301\n")
    replay = '[[can.bus]]\nname="r"\ninterface="replay"\nreplay="d.log"\ndbc=["obd2.dbc"]\n'
    with pytest.raises(ConfigError, match="live bus"):
        build(replay + "[can.bus.obd]\npids = [0x0C]\n", tmp_path)
    with pytest.raises(ConfigError, match="'dm1'"):
        build(OBD_BUS + 'dm1 = "yes"\n', tmp_path)
    with pytest.raises(ConfigError, match="'range_check'"):
        build(OBD_BUS + 'range_check = "clip"\n', tmp_path)
    (src,) = build(OBD_BUS + 'range_check = "drop"\ndm1 = true\n', tmp_path)
    assert src.pipeline.decoder.drop_out_of_range and src.pipeline.decoder.j1939
