"""dtc.read, obd.query and dtc.clear (docs/protocol.md §3) against hil/'s simulated ECU (an
SLCAN adapter on a pty: OBD-II modes 01/03/04 and J1939 DM1/DM11), through a real agent and
backend: the codes the vehicle holds are read back, a PID is asked, a clear needs the
dispatcher's confirmation, and after it the controllers report empty sets."""

from __future__ import annotations

import subprocess

from tests.conftest import REPO, wait_for
from tests.integration.net.test_agent_commands import answer, events, http, send

CONFIG = """
[[can.bus]]
name = "car"
interface = "slcan"
channel = "{tty}"
dbc = ["obd2.dbc", "truck_j1939.dbc"]
signals = ["EngSpeed"]
dm1 = true

[can.bus.obd]
pids = [0x0C]
interval_ms = 500
dtc_interval_s = 1
"""


def test_codes_are_read_and_cleared_on_the_simulated_ecu(procs):
    procs.provision("car-d")
    procs.token = procs.api_token("dispatcher")
    procs.backend()
    procs.gps_sim("car-d", rate=5, count=600)
    ecu = procs._spawn([str(REPO / "hil" / "obd_ecu.py"), "--pty", "--duration", "120",
                        "--open-timeout", "30"], "car-d.ecu", stdout=subprocess.PIPE)
    tty = ecu.popen.stdout.readline().decode().strip()
    assert tty.startswith("/dev/"), ecu.text()
    procs.agent("car-d", CONFIG.format(tty=tty))

    def sets():
        return {(e["proto"], e["set"]): len(e["dtcs"]) for e in events(procs, "car-d", "dtc")}

    wait_for(lambda: {("obd2", "stored"), ("j1939", "active")} <= set(sets()), 40,
             "the ECU's codes reported")
    read = answer(procs, send(procs, "car-d", "dtc.read", {"bus": "car"}))
    assert read["ok"], read
    held = {(c["proto"], c["set"]): c for c in read["result"]["buses"]["car"]}
    assert [d["code"] for d in held[("obd2", "stored")]["dtcs"]] == ["P0301", "P0420", "C0123"]
    assert held[("j1939", "active")]["dtcs"] == [{"spn": 110, "fmi": 0, "oc": 1}]

    speed = answer(procs, send(procs, "car-d", "obd.query", {"bus": "car", "pid": 0x0D}))
    assert speed["ok"], speed
    [ecm] = speed["result"]["answers"]
    assert ecm["src"] == 0x7E8 and 20 <= int(ecm["data"], 16) <= 80  # the ECU's 50 ± 30 km/h
    status, body = http(procs, "POST", "/api/vehicles/car-d/commands",
                        {"name": "dtc.clear", "args": {"bus": "car"}})
    assert status == 400 and "confirm" in body["error"]  # nothing stored, nothing sent
    cleared = answer(procs, send(procs, "car-d", "dtc.clear", {"bus": "car", "confirm": True}))
    assert cleared["ok"] and "DM11" in cleared["detail"] and "mode 04" in cleared["detail"]
    wait_for(lambda: sets().get(("obd2", "stored")) == 0 and sets().get(("j1939", "active"))
             == 0, 30, "the controllers report their codes cleared")
    after = answer(procs, send(procs, "car-d", "dtc.read"))
    assert all(not c["dtcs"] for c in after["result"]["buses"]["car"]
               if c["set"] != "pending"), after
