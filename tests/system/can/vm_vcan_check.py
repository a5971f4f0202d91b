"""socketcan check on a real vcan0: kernel filters, interface down/up and delete/re-create,
then OBD-II polling and DM1 against hil/obd_ecu.py's simulated ECU.

Needs root and a kernel with vcan (the Debian VM of docs/can.md, or a Pi). Run directly:
    python tests/system/can/vm_vcan_check.py
It creates vcan0 if missing, prints one line `VCAN-RESULT {json}` and exits 0 when every
check passed. tests/system/can/test_can_vcan.py runs it here when vcan0 can be created, or in
the VM.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import can  # noqa: E402

from agent.can.dbcload import BUILTIN_DIR, load_dbc  # noqa: E402
from agent.can.decoder import CanDecoder  # noqa: E402
from agent.can.obd import ObdConfig, ObdPoller  # noqa: E402
from agent.can.select import Selector  # noqa: E402
from agent.can.source import CanBusSource, CanPipeline  # noqa: E402
from agent.readings import Event, Signals  # noqa: E402

IFACE = "vcan0"


def ip(*args: str) -> None:
    subprocess.run(["ip", "link", *args], check=True, capture_output=True, timeout=10)


def ensure_vcan() -> None:
    subprocess.run(["modprobe", "vcan"], capture_output=True, timeout=10)
    if subprocess.run(["ip", "link", "show", IFACE], capture_output=True).returncode != 0:
        ip("add", IFACE, "type", "vcan")
    ip("set", IFACE, "up")


class Sender:
    """Sends EEC1/CCVS1 (selected) and noise (unselected and unknown ids) every 10 ms."""

    def __init__(self):
        db = load_dbc(BUILTIN_DIR / "truck_j1939.dbc")
        self.frames = [
            can.Message(arbitration_id=0x0CF00400, is_extended_id=True,
                        data=bytes([0, 125, 125, 0x40, 0x1F, 0, 3, 0xFF])),  # EngSpeed 1000
            can.Message(arbitration_id=0x18FEF121, is_extended_id=True,  # other SA
                        data=bytes([0, 0x00, 0x20, 0, 0, 85, 0, 0])),  # 32 km/h
            can.Message(arbitration_id=0x18FEEE00, is_extended_id=True,
                        data=db.get_message_by_name("ET1").encode(
                            {"EngCoolantTemp": 80, "EngFuelTemp1": 30, "EngOilTemp1": 90})),
            can.Message(arbitration_id=0x123, data=b"\x01\x02"),
            can.Message(arbitration_id=0x18FF5500, is_extended_id=True, data=bytes(8)),
        ]
        self.stop = threading.Event()
        self.sent = 0
        self.errors = 0

    def run(self) -> None:
        bus = None
        while not self.stop.is_set():
            try:
                if bus is None:
                    bus = can.Bus(interface="socketcan", channel=IFACE)
                for msg in self.frames:
                    bus.send(msg, timeout=0.1)
                    self.sent += 1
            except (can.CanError, OSError):
                self.errors += 1
                if bus is not None:
                    bus.shutdown()
                bus = None
            time.sleep(0.01)
        if bus is not None:
            bus.shutdown()


async def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return False


async def main() -> dict:
    ensure_vcan()
    db = load_dbc(BUILTIN_DIR / "truck_j1939.dbc")
    selection = {"EEC1": {"EngSpeed": "EngSpeed"},
                 "CCVS1": {"WheelBasedVehicleSpeed": "WheelBasedVehicleSpeed"}}
    pipe = CanPipeline("truck", CanDecoder([db], selection), Selector())
    src = CanBusSource("can:truck", pipe, "socketcan", IFACE)
    out = []
    states: list[str] = []

    class StateLog(logging.Handler):  # the source logs each state change once
        def emit(self, record):
            states.append(record.getMessage().split(": ", 1)[1].split(" ")[0])

    logging.getLogger("agent.can.source").addHandler(StateLog())
    logging.getLogger("agent.can.source").setLevel(logging.INFO)
    sender = Sender()
    thread = threading.Thread(target=sender.run, daemon=True)
    task = asyncio.create_task(src.run(out.append))
    result: dict = {}
    try:
        result["up"] = await wait_for(lambda: src.state == "up", 5)
        thread.start()
        result["receiving"] = await wait_for(lambda: len(out) >= 50, 10)
        st = src.status()
        result["filtered_in_kernel"] = st["unknown_id"] == 0 and st["unselected"] == 0
        result["values"] = sorted({k for r in out for k in r.values})
        result["values_ok"] = all(
            r.values.get("EngSpeed", 1000.0) == 1000.0
            and r.values.get("WheelBasedVehicleSpeed", 32.0) == 32.0 for r in out)
        # interface down and up again
        ip("set", IFACE, "down")
        result["down_seen"] = await wait_for(lambda: "down" in states, 10)
        await asyncio.sleep(1.0)
        ip("set", IFACE, "up")
        n = len(out)
        result["resumed_after_up"] = await wait_for(lambda: len(out) >= n + 50, 20)
        # interface deleted (adapter unplugged) and re-created
        opens = src.counts["opens"]
        ip("delete", IFACE)
        result["open_fails_while_gone"] = await wait_for(
            lambda: src.counts["open_failures"] >= 1, 15)
        ensure_vcan()
        n = len(out)
        result["resumed_after_recreate"] = await wait_for(
            lambda: len(out) >= n + 50 and src.counts["opens"] > opens, 40)
        result["status"] = src.status()
        result["states"] = states
    finally:
        sender.stop.set()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    result.update(await diagnostics())
    result["ok"] = all(result[k] for k in (
        "up", "receiving", "filtered_in_kernel", "values_ok", "down_seen", "resumed_after_up",
        "open_fails_while_gone", "resumed_after_recreate", "obd_values", "obd_dtcs", "dm1"))
    return result


def run_ecu(stop: threading.Event) -> None:
    """hil/obd_ecu.py's simulated ECU on its own vcan0 socket."""
    from hil.obd_ecu import SimulatedEcu

    ecu = SimulatedEcu()
    with can.Bus(interface="socketcan", channel=IFACE) as bus:
        later = []
        while not stop.is_set():
            now = int(time.time() * 1000)
            later += ecu.dm1_due(now)
            for _, msg in sorted((x for x in later if x[0] <= now), key=lambda x: x[0]):
                bus.send(msg)
            later = [x for x in later if x[0] > now]
            msg = bus.recv(0.005)
            if msg is not None:
                for reply in ecu.on_frame(msg, now):
                    bus.send(reply)


async def diagnostics() -> dict:
    """OBD-II polling and DM1 through kernel filters on vcan0, against the simulated ECU."""
    ensure_vcan()
    db = load_dbc(BUILTIN_DIR / "truck_j1939.dbc")
    poller = ObdPoller(ObdConfig(pids=((0x0C, 200),), dtc_interval_ms=1000), 0)
    pipe = CanPipeline("car", CanDecoder([db], {"EEC1": {"EngSpeed": "EngSpeed"}}, dm1=True),
                       Selector(), poller)
    src = CanBusSource("can:car", pipe, "socketcan", IFACE)
    out = []
    stop = threading.Event()
    ecu = threading.Thread(target=run_ecu, args=(stop,), daemon=True)
    ecu.start()
    task = asyncio.create_task(src.run(out.append))

    def sets():
        return {r.data["set"]: r.data for r in out if isinstance(r, Event)}

    res: dict = {}
    try:
        res["obd_values"] = await wait_for(lambda: len(
            [r for r in out if isinstance(r, Signals) and "OBD_EngineRPM" in r.values]) >= 3, 20)
        res["obd_dtcs"] = await wait_for(lambda: {"stored", "pending"} <= set(sets()), 20) and [
            d["code"] for d in sets()["stored"]["dtcs"]] == ["P0301", "P0420", "C0123"]
        res["dm1"] = await wait_for(lambda: "active" in sets(), 20) and sets()["active"][
            "dtcs"] == [{"spn": 110, "fmi": 0, "oc": 1}]
        res["obd_status"] = {k: v for k, v in src.status().items() if k.startswith("obd")}
    finally:
        stop.set()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    return res


if __name__ == "__main__":
    res = asyncio.run(main())
    print("VCAN-RESULT " + json.dumps(res), flush=True)
    sys.exit(0 if res["ok"] else 1)
