"""candump / ASC parsing, replay sources and the can-decode command."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import can
import pytest
from can_helpers import DATA, OBD2, TRUCK

from agent.can.dbcload import load_dbc
from agent.can.decoder import CanDecoder
from agent.can.logs import LogFile, parse_candump_line, to_candump, to_lawicel
from agent.can.select import Rule, Selector
from agent.can.source import CanPipeline, ReplaySource

DRIVE = DATA / "drive_20s.log"
EDGE = DATA / "edge.log"


def test_candump_line_kinds():
    std = parse_candump_line("(1.500000) can0 123#DEADBEEF")
    assert (std.timestamp, std.channel, std.arbitration_id, std.is_extended_id) == (
        1.5, "can0", 0x123, False)
    assert bytes(std.data) == bytes.fromhex("DEADBEEF") and std.dlc == 4
    ext = parse_candump_line("(2.0) vcan0 18FEF100#0102")
    assert ext.is_extended_id and ext.arbitration_id == 0x18FEF100
    rtr = parse_candump_line("(3.0) can0 7E8#R8")
    assert rtr.is_remote_frame and rtr.dlc == 8
    fd = parse_candump_line("(4.0) can0 123##3" + "AB" * 12)
    assert fd.is_fd and fd.bitrate_switch and fd.error_state_indicator and len(fd.data) == 12
    err = parse_candump_line("(5.0) can0 20000040#0000000000000000")
    assert err.is_error_frame and err.arbitration_id == 0x40
    assert parse_candump_line("") is None and parse_candump_line("# note") is None
    for bad in ("123#DEADBEEF", "(1.0) can0 1234#00", "(1.0) can0 800#00",
                "(1.0) can0 123#001122334455667788", "(1.0) can0 123##1" + "00" * 9,
                "(inf) can0 123#00", "(1.0) can0 123#0"):
        with pytest.raises(ValueError):
            parse_candump_line(bad)


def test_writers_round_trip():
    for line in ("(1.000000) can0 123#DEADBEEF", "(2.500000) can1 18FEF100#0102030405060708",
                 "(3.000000) can0 7E8#R", "(4.000000) can0 123##1" + "AB" * 12):
        assert to_candump(parse_candump_line(line), line.split()[1]) == line
    msg = parse_candump_line("(1.0) can0 18FEF100#0102")
    assert to_lawicel(msg) == b"T18FEF10020102\r"
    assert to_lawicel(parse_candump_line("(1.0) can0 123#")) == b"t1230\r"


def test_edge_log_counts():
    logfile = LogFile(EDGE)
    frames = list(logfile)
    assert logfile.bad_lines == 2 and len(frames) == 12
    dec = CanDecoder([load_dbc(TRUCK), load_dbc(OBD2)])
    decoded = [d for m in frames if (d := dec.feed(m, 0)) is not None]
    c = dec.counts
    assert (c["unknown_id"], c["bad_dlc"], c["remote_frames"], c["error_frames"]) == (1, 1, 2, 1)
    assert [d.message for d in decoded].count("OBD2_ECM") == 3
    assert decoded[-1].message == "ET1" and decoded[-1].values == {}  # all "not available"


@pytest.mark.parametrize("suffix, writer_class", [(".asc", can.ASCWriter), (".blf", can.BLFWriter)])
def test_asc_and_blf_files_via_python_can(tmp_path, suffix, writer_class):
    path = tmp_path / ("drive" + suffix)
    frames = list(LogFile(DRIVE))[:200]
    with writer_class(str(path)) as writer:
        for msg in frames:
            writer.on_message_received(msg)
    back = list(LogFile(path))
    assert len(back) == 200
    assert [(m.arbitration_id, bytes(m.data)) for m in back] == [
        (m.arbitration_id, bytes(m.data)) for m in frames]
    # absolute times, so replayed readings keep the recording's time
    assert back[50].timestamp == pytest.approx(frames[50].timestamp, abs=0.002)


def replay(speed, selection=None, rules=None, snapshot_hz=0.0, **kw):
    db = load_dbc(TRUCK)
    selector = Selector(rules, snapshot_hz=snapshot_hz)
    pipe = CanPipeline("truck", CanDecoder([db], selection), selector)
    return ReplaySource("can:truck", pipe, DRIVE, speed=speed, **kw)


async def run_until(source, out, predicate, timeout=10.0):
    task = asyncio.create_task(source.run(out.append))
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_replay_as_fast_as_possible_keeps_log_time():
    src = replay(0, {"CCVS1": {"WheelBasedVehicleSpeed": "speed"}, "DD1": {"FuelLevel1": "fuel"}},
                 {"speed": Rule(min_interval_ms=1000)})
    out = []
    await run_until(src, out, lambda: src.state == "finished")
    st = src.status()
    assert st["frames"] == 1581 and st["passes"] == 1 and st["bad_lines"] == 0
    speeds = [r for r in out if "speed" in r.values]
    assert len(speeds) == 20  # 20 s of CCVS1 at 10 Hz, at most one per second
    assert all(r.ts_ms >= 1767225600000 and r.bus == "truck" for r in out)
    assert sum("fuel" in r.values for r in out) == 20
    assert st["unselected"] == 1581 - 200 - 20  # everything but CCVS1 and DD1
    # ts_ms is the frame's log time
    first_line = DRIVE.read_text().splitlines()[1]
    assert speeds[0].ts_ms == round(float(first_line.split()[0][1:-1]) * 1000)


async def test_replay_at_recorded_speed_uses_the_clock():
    now = [0.0]
    slept = []

    async def fake_sleep(s):
        slept.append(s)
        now[0] += s
        await asyncio.sleep(0)

    src = replay(2.0, clock=lambda: now[0], sleep=fake_sleep)
    out = []
    await run_until(src, out, lambda: src.state == "finished")
    # 20 s of log at 2x: the fake clock advanced ~10 s, in many small waits
    assert 9.9 <= now[0] <= 10.0 and len(slept) > 100
    assert src.status()["decoded"] == 1581


async def test_replay_loop_and_now_timestamps_and_snapshots():
    src = replay(0, {"EEC1": {"EngSpeed": "rpm"}}, {"rpm": Rule(deadband=1e9)}, snapshot_hz=2,
                 loop=True, timestamps="now")
    out = []
    await run_until(src, out, lambda: src.counts["passes"] >= 2)
    snaps = [r for r in out if r.values.keys() == {"rpm"}]
    assert len(snaps) >= 2 * 2 * 20 - 4  # 2 Hz over 20 s of log, twice
    import time
    assert abs(out[0].ts_ms - time.time() * 1000) < 60_000


async def test_replay_missing_file_is_a_down_state(tmp_path):
    db = load_dbc(TRUCK)
    src = ReplaySource("can:x", CanPipeline("x", CanDecoder([db]), Selector()),
                       tmp_path / "gone.log", speed=0)
    out = []
    await run_until(src, out, lambda: src.state == "down")
    assert out == []


def run_cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "agent", "can-decode", *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_can_decode_command(tmp_path):
    r = run_cli("--dbc", str(TRUCK), "--dbc", str(OBD2), str(EDGE))
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 7
    assert rows[0] == {
        "time": 1767225600.0001, "bus": "can0", "frame_id": 0x0CF00400, "message": "EEC1",
        "signals": {"EngTorqueMode": "low idle governor", "DriverDemandEngPercentTorque": 20,
                    "ActualEngPercentTorque": 15, "EngSpeed": 600.0,
                    "EngStarterMode": "start finished"}}
    assert rows[5]["bus"] == "can1" and rows[5]["signals"]["OBD_EngineRPM"] == 0x1AF8 / 4
    assert "1 unknown id" in r.stderr and "1 bad length" in r.stderr and "2 bad lines" in r.stderr
    # stdin
    r2 = run_cli("--dbc", str(TRUCK), "-", stdin=DRIVE.read_text())
    assert r2.returncode == 0 and len(r2.stdout.splitlines()) == 1581


def test_can_decode_bad_dbc_exits_2(tmp_path):
    bad = tmp_path / "bad.dbc"
    bad.write_text('VERSION ""\n\nBU_: A\nBO_ 100 M: 8 A\n SG_ S : 0|8@1+ (1,0) [0|255 "" A\n')
    r = run_cli("--dbc", str(TRUCK), "--dbc", str(bad), str(EDGE))
    assert r.returncode == 2 and r.stdout == ""
    assert "bad.dbc line 5" in r.stderr
    r = run_cli("--dbc", str(tmp_path / "none.dbc"), str(EDGE))
    assert r.returncode == 2 and "none.dbc" in r.stderr


async def test_replay_source_built_from_config(tmp_path):
    import shutil
    import tomllib

    from agent.can.config import make_sources

    shutil.copy(DRIVE, tmp_path / "drive.log")
    section = tomllib.loads('''
[[can.bus]]
name = "demo"
interface = "replay"
replay = "drive.log"
speed = 0
dbc = ["truck_j1939.dbc"]
signals = ["EngSpeed", {name = "FuelLevel1", deadband = 0}, "TirePress_Steer_L"]
''')["can"]
    (src,) = make_sources(section, str(tmp_path / "agent.toml"), tmp_path)
    out = []
    await run_until(src, out, lambda: src.state == "finished")
    keys = {k for r in out for k in r.values}
    assert keys == {"EngSpeed", "FuelLevel1", "TirePress_Steer_L"}
    assert sum("EngSpeed" in r.values for r in out) == 1000  # 50 Hz for 20 s
    assert sum("FuelLevel1" in r.values for r in out) < 20  # on change only
    assert 19 <= sum("TirePress_Steer_L" in r.values for r in out) <= 21  # 1 Hz
    assert all(r.bus == "demo" for r in out)


async def test_empty_log_in_loop_mode_does_not_spin(tmp_path):
    empty = tmp_path / "empty.log"
    empty.write_text("# nothing recorded\nnot a frame\n")
    db = load_dbc(TRUCK)
    src = ReplaySource("can:x", CanPipeline("x", CanDecoder([db]), Selector()), empty,
                       speed=0, loop=True)
    ticks = []

    async def ticker():  # runs only if the replay task gives the loop back
        while True:
            ticks.append(1)
            await asyncio.sleep(0.01)

    t = asyncio.create_task(ticker())
    await run_until(src, [], lambda: src.state == "down" and len(ticks) > 20, timeout=5)
    t.cancel()
    assert src.counts["passes"] <= 2 and src.counts["bad_lines"] >= 1
