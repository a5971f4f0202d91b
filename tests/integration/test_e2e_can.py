"""CAN signals from a replayed candump log travel with GPS positions to the store."""

from __future__ import annotations

import json
import sqlite3

from tests.conftest import REPO, wait_for

LOG = REPO / "tests" / "data" / "can" / "drive_20s.log"
CAN_CONFIG = f"""
[[can.bus]]
name = "truck"
interface = "replay"
replay = "{LOG}"
speed = 0
dbc = ["truck_j1939.dbc"]
signals = ["EngSpeed", {{ name = "CCVS1.WheelBasedVehicleSpeed", min_interval_ms = 500 }},
           "EngCoolantTemp"]
"""


def can_rows(db_path) -> list[dict]:
    with sqlite3.connect(db_path, timeout=10) as db:
        rows = db.execute("SELECT data FROM vehicle_telemetry WHERE kind='can' ORDER BY seq")
        return [json.loads(r[0]) for r in rows]


def test_replayed_can_signals_are_stored_alongside_positions(procs):
    procs.provision("truck-c")
    procs.backend()
    procs.gps_sim("truck-c", rate=10, count=30)
    agent = procs.agent("truck-c", CAN_CONFIG)
    wait_for(lambda: len(procs.stored("truck-c")) == 30, 40, "30 positions")
    wait_for(lambda: len(can_rows(procs.db_path)) > 10, 20, "CAN readings stored")
    rows = can_rows(procs.db_path)
    names = set().union(*(set(r) for r in rows))
    assert {"bus", "EngSpeed", "CCVS1.WheelBasedVehicleSpeed", "EngCoolantTemp"} <= names
    assert names <= {"bus", "EngSpeed", "CCVS1.WheelBasedVehicleSpeed", "EngCoolantTemp"}, \
        "only the selected signals are recorded"
    assert all(r["bus"] == "truck" for r in rows)
    rpm = [r["EngSpeed"] for r in rows if "EngSpeed" in r]
    assert all(0 <= v <= 8031.875 for v in rpm) and max(rpm) > 500
    assert agent.alive() and agent.stop() == 0
