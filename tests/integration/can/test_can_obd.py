"""OBD-II polling against the simulated ECU in hil/obd_ecu.py: sans-IO with a fake clock,
then through CanBusSource on python-can's virtual bus and on SLCAN over a pty."""

import asyncio
import subprocess
import sys

import can
import pytest

from agent.can.config import make_sources
from agent.can.dbcload import load_dbc
from agent.can.decoder import CanDecoder
from agent.can.obd import ANSWER_TIMEOUT_MS, MIN_GAP_MS, ObdConfig, ObdPoller
from agent.can.select import Selector
from agent.can.source import CanBusSource, CanPipeline
from agent.readings import Event, Signals
from hil.obd_ecu import SimulatedEcu
from tests.integration.can.can_helpers import OBD2

ROOT = OBD2.parent.parent.parent


def simulate(cfg: ObdConfig, ecu: SimulatedEcu, duration_ms: int, step_ms: int = 10):
    pipe = CanPipeline("car", CanDecoder([load_dbc(OBD2)]), Selector(), ObdPoller(cfg, 0))
    out, sent = [], []
    for now in range(0, duration_ms, step_ms):
        pipe.poll(now)
        while pipe.outbox:
            frame = pipe.outbox.pop(0)
            sent.append((now, frame))
            for reply in ecu.on_frame(frame, now):
                pipe.feed(reply, now, out.append)
    return pipe, out, sent


def test_pids_are_decoded_through_obd2_dbc_and_dtcs_journalled_on_change():
    ecu = SimulatedEcu()
    cfg = ObdConfig(pids=((0x0C, 1000), (0x0D, 1000), (0x05, 5000)), dtc_interval_ms=2000)
    pipe, out, sent = simulate(cfg, ecu, 10_000)
    rpm = [r for r in out if isinstance(r, Signals) and "OBD_EngineRPM" in r.values]
    assert 9 <= len(rpm) <= 11
    for r in rpm:  # the ECU's own bytes, decoded by hand: (A*256+B)/4
        raw = ecu.pid_value(0x0C, r.ts_ms)
        assert r.values["OBD_EngineRPM"] == (raw[0] * 256 + raw[1]) / 4
    coolant = [r.values["OBD_CoolantTemp"] for r in out
               if isinstance(r, Signals) and "OBD_CoolantTemp" in r.values]
    assert coolant and set(coolant) == {90}
    events = [r for r in out if isinstance(r, Event)]
    # stored (three codes, an ISO-TP multi-frame answer) and pending, once each: the
    # repeats every 2 s are the same sets
    assert [(e.data["set"], [d["code"] for d in e.data["dtcs"]]) for e in events] == [
        ("stored", ["P0301", "P0420", "C0123"]), ("pending", ["P0171"])]
    assert events[0].data == {"bus": "car", "proto": "obd2", "src": 0x7E8, "set": "stored",
                              "dtcs": [{"code": "P0301"}, {"code": "P0420"}, {"code": "C0123"}]}
    fc = [f for _, f in sent if f.arbitration_id == 0x7E0]
    assert fc and all(f.data[0] == 0x30 for f in fc)  # flow control to the ECU
    ecu.stored.remove("P0420")
    pipe2_events = []
    for now in range(10_000, 14_000, 10):
        pipe.poll(now)
        while pipe.outbox:
            for reply in ecu.on_frame(pipe.outbox.pop(0), now):
                pipe.feed(reply, now, pipe2_events.append)
    changed = [e for e in pipe2_events if isinstance(e, Event)]
    assert [[d["code"] for d in e.data["dtcs"]] for e in changed] == [["P0301", "C0123"]]


def test_polling_never_floods_the_bus():
    cfg = ObdConfig(pids=tuple((pid, 100) for pid in range(1, 40)), dtc_interval_ms=100)
    pipe, _out, sent = simulate(cfg, SimulatedEcu(), 20_000, step_ms=1)
    requests = [t for t, f in sent if f.arbitration_id == 0x7DF]
    assert all(b - a >= MIN_GAP_MS for a, b in zip(requests, requests[1:], strict=False))
    assert len(requests) <= 20_000 // MIN_GAP_MS + 1


def test_unanswered_requests_back_off_and_are_counted():
    cfg = ObdConfig(pids=((0x42, 1000),), dtc_interval_ms=0)  # a PID the ECU does not know
    pipe, _out, sent = simulate(cfg, SimulatedEcu(), 60_000)
    times = [t for t, f in sent if f.arbitration_id == 0x7DF]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    waits = [g - ANSWER_TIMEOUT_MS for g in gaps]  # from giving up to the next try
    assert waits[:4] == [2000, 4000, 8000, 16000]  # the 1 s interval, doubled each time
    assert pipe.status()["obd_unanswered"] == len(times) - (1 if pipe.poller._outstanding else 0)


def run_ecu_on_virtual(channel: str, stop):
    ecu = SimulatedEcu()
    with can.Bus(interface="virtual", channel=channel) as bus:
        later = []
        while not stop.is_set():
            import time
            now = int(time.time() * 1000)
            later += ecu.dm1_due(now)
            for _, msg in [x for x in later if x[0] <= now]:
                bus.send(msg)
            later = [x for x in later if x[0] > now]
            msg = bus.recv(0.005)
            if msg is not None:
                for reply in ecu.on_frame(msg, now):
                    bus.send(reply)


OBD_BUS = """
[[can.bus]]
name = "car"
interface = "{interface}"
channel = "{channel}"
dbc = ["obd2.dbc", "truck_j1939.dbc"]
dm1 = true
[can.bus.obd]
pids = [0x0C, 0x0D]
interval_ms = 200
dtc_interval_s = 1
"""


async def collect(source, seconds: float):
    out = []
    task = asyncio.create_task(source.run(out.append))
    try:
        for _ in range(int(seconds * 20)):
            await asyncio.sleep(0.05)
            kinds = {r.data["set"] for r in out if isinstance(r, Event)}
            rpm = [r for r in out if isinstance(r, Signals) and "OBD_EngineRPM" in r.values]
            if {"stored", "pending", "active"} <= kinds and len(rpm) >= 3:
                break
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return out


def check(out):
    sets = {r.data["set"]: r.data for r in out if isinstance(r, Event)}
    assert [d["code"] for d in sets["stored"]["dtcs"]] == ["P0301", "P0420", "C0123"]
    assert sets["active"]["dtcs"] == [{"spn": 110, "fmi": 0, "oc": 1}]
    assert len([r for r in out if isinstance(r, Signals) and "OBD_EngineRPM" in r.values]) >= 3


async def test_on_python_can_virtual_bus(tmp_path):
    import threading
    stop = threading.Event()
    ecu = threading.Thread(target=run_ecu_on_virtual, args=("obd-virtual", stop), daemon=True)
    ecu.start()
    try:
        (source,) = make_sources(
            __import__("tomllib").loads(OBD_BUS.format(interface="virtual",
                                                       channel="obd-virtual"))["can"],
            "agent.toml", tmp_path)
        assert isinstance(source, CanBusSource)
        check(await collect(source, 10))
        assert source.status()["obd_requests"] >= 3 and source.status()["sent"] >= 3
    finally:
        stop.set()
        ecu.join(2)


@pytest.mark.timeout(60)
async def test_on_slcan_over_a_pty(tmp_path):
    proc = subprocess.Popen([sys.executable, str(ROOT / "hil" / "obd_ecu.py"), "--pty",
                             "--duration", "30", "--open-timeout", "20"],
                            stdout=subprocess.PIPE, text=True)
    try:
        path = proc.stdout.readline().strip()
        (source,) = make_sources(
            __import__("tomllib").loads(OBD_BUS.format(interface="slcan", channel=path))["can"],
            "agent.toml", tmp_path)
        check(await collect(source, 15))
    finally:
        proc.kill()
        proc.wait(5)
