"""Diagnostics end to end: the simulated ECU (hil/obd_ecu.py, an SLCAN adapter on a pty)
answers the agent's OBD-II polls and broadcasts DM1; the agent journals values and `dtc`
events; the backend stores them."""

from __future__ import annotations

import json
import sqlite3
import subprocess

from tests.conftest import REPO, wait_for

CONFIG = """
[[can.bus]]
name = "car"
interface = "slcan"
channel = "{tty}"
dbc = ["obd2.dbc", "truck_j1939.dbc"]
signals = ["EngSpeed"]
dm1 = true

[can.bus.obd]
pids = [0x0C, {{ pid = 0x0D, interval_ms = 500 }}]
interval_ms = 300
dtc_interval_s = 1
"""


def rows(db_path, kind: str) -> list[dict]:
    with sqlite3.connect(db_path, timeout=10) as db:
        got = db.execute("SELECT data FROM vehicle_telemetry WHERE kind=? ORDER BY seq", (kind,))
        return [json.loads(r[0]) for r in got]


def test_simulated_ecu_to_agent_to_store(procs):
    procs.provision("car-1")
    procs.backend()
    procs.gps_sim("car-1", rate=5, count=40)
    ecu = procs._spawn([str(REPO / "hil" / "obd_ecu.py"), "--pty", "--duration", "60",
                        "--change-after", "4", "--open-timeout", "30"], "car-1.ecu",
                       stdout=subprocess.PIPE)
    tty = ecu.popen.stdout.readline().decode().strip()
    assert tty.startswith("/dev/"), ecu.text()
    agent = procs.agent("car-1", CONFIG.format(tty=tty))

    def dtc_events():
        return [r for r in rows(procs.db_path, "evt") if r.get("name") == "dtc"]

    def done():
        sets = [(e["proto"], e["set"], len(e["dtcs"])) for e in dtc_events()]
        return {("obd2", "stored", 3), ("obd2", "pending", 1), ("j1939", "active", 1),
                ("j1939", "active", 3)} <= set(sets)

    wait_for(done, 40, "dtc events from OBD-II and DM1 (single frame, then BAM)")
    events = dtc_events()
    stored = next(e for e in events if e["set"] == "stored")
    assert [d["code"] for d in stored["dtcs"]] == ["P0301", "P0420", "C0123"]
    assert stored["src"] == 0x7E8 and stored["bus"] == "car"
    dm1 = [e for e in events if e["proto"] == "j1939"]
    assert [len(e["dtcs"]) for e in dm1] == [1, 3], "one event per change, none per repeat"
    assert dm1[1]["dtcs"][-1] == {"spn": 523000, "fmi": 31, "oc": 2}
    assert dm1[0]["lamps"]["mil"] == 1
    obd = [r for r in rows(procs.db_path, "can") if "OBD_EngineRPM" in r]
    assert len(obd) >= 3 and all(800 <= r["OBD_EngineRPM"] <= 3200 for r in obd)

    def dtc_alerts():  # the backend's alert rules turn each new code into an alert
        with sqlite3.connect(procs.db_path, timeout=10) as db:
            return {r[0] for r in db.execute(
                "SELECT subject FROM alerts WHERE rule='dtc' AND vehicle_id='car-1'")}

    codes = {d["code"] for d in stored["dtcs"]} | {f"SPN{d['spn']}-FMI{d['fmi']}"
                                                    for d in dm1[1]["dtcs"]}
    wait_for(lambda: codes <= dtc_alerts(), 20, f"dtc alerts for {sorted(codes)}")
    assert agent.alive() and agent.stop() == 0
