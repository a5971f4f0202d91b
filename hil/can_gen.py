"""CAN generator: plays a truck drive cycle (J1939, agent/dbc/truck_j1939.dbc) onto a bus.

    python hil/can_gen.py --candump drive.log --duration 120       # write a candump log
    python hil/can_gen.py --bus virtual --channel demo              # python-can bus, real time
    python hil/can_gen.py --bus socketcan --channel vcan0           # where vcan exists
    python hil/can_gen.py --pty                                     # SLCAN on a pty; prints
                                                                    # the slave path, then plays
    python hil/can_gen.py --candump drive.log --driver FIN0000000000001  # a tachograph's DI too

`frames()` is the sans-IO core: (time → frames) with no clock of its own, so tests and the
benchmark use it directly. Values are a smooth drive cycle: idle, accelerate, cruise, brake;
with engine hours (HOURS), battery potential (VEP1, the alternator's while the engine runs),
ambient temperature (AMB) and, with `driver`, the tachograph's Driver's Identification (DI,
longer than a frame: sent by the transport protocol as a BAM, as a tachograph does).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import can

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.can.dbcload import BUILTIN_DIR, load_dbc  # noqa: E402
from agent.can.j1939text import PGN_DI, encode_di  # noqa: E402
from agent.can.logs import to_candump, to_lawicel  # noqa: E402

TRUCK_DBC = BUILTIN_DIR / "truck_j1939.dbc"
CYCLE_S = 180.0
TIRES = (0x00, 0x01, 0x10, 0x11, 0x12, 0x13)
TIRE_NAMES = {0x00: "Steer_L", 0x01: "Steer_R", 0x10: "Drive_LO", 0x11: "Drive_LI",
              0x12: "Drive_RI", 0x13: "Drive_RO"}
# (message, period ms, phase ms)
SCHEDULE = (("EEC1", 20, 0), ("CCVS1", 100, 3), ("LFE1", 100, 7), ("ET1", 1000, 11),
            ("DD1", 1000, 13), ("VDHR", 1000, 17), ("TIRE1", 1000 // len(TIRES), 19),
            ("HOURS", 1000, 23), ("VEP1", 1000, 29), ("AMB", 1000, 31))
# The tachograph (source address 0xEE) repeats the driver identification this often; J1939-21
# BAM packets follow each other 50..200 ms apart.
DI_PERIOD_MS = 10_000
DI_PHASE_MS = 37
TACHO_SA = 0xEE
BAM_GAP_MS = 50
TP_CM_ID = 0x1CECFF00  # priority 7, PGN 60416 (TP.CM) to the global address
TP_DT_ID = 0x1CEBFF00  # priority 7, PGN 60160 (TP.DT)
ALTERNATOR_V = 14.1  # battery potential with the engine running
AMBIENT_C = 12.0


def speed_kmh(t: float) -> float:
    """Drive cycle: 15 s idle, 35 s accelerate to 85 km/h, 90 s cruise, 25 s brake, 15 s idle."""
    c = t % CYCLE_S
    if c < 15:
        return 0.0
    if c < 50:
        x = (c - 15) / 35
        return 85.0 * (1 - math.cos(math.pi * x)) / 2
    if c < 140:
        return 85.0 + 3.0 * math.sin((c - 50) / 9)
    if c < 165:
        return 85.0 * (1 - (c - 140) / 25)
    return 0.0


class DriveState:
    """Integrated quantities (distance, fuel) advance with time passed to `at()`."""

    def __init__(self, odometer_km: float = 123456.0, fuel_pct: float = 82.0,
                 engine_h: float = 8_200.0):
        self.t = 0.0
        self.odometer_km = odometer_km
        self.engine_h = engine_h
        self.trip_km = 0.0
        self.fuel_pct = fuel_pct

    def at(self, t: float) -> dict:
        dt = max(0.0, t - self.t)
        self.t = t
        v = speed_kmh(t)
        accel = (speed_kmh(t + 0.5) - speed_kmh(t - 0.5))  # km/h per s
        gear_ratio = (60, 40, 28, 21, 17, 14)[min(5, int(v // 15))] if v > 0 else 0
        rpm = max(600.0, min(2100.0, 600 + v * gear_ratio * 0.9)) if v > 1 else 600.0
        fuel_lph = 2.5 + 0.28 * v + max(0.0, accel) * 9.0
        self.odometer_km += v * dt / 3600
        self.trip_km += v * dt / 3600
        self.engine_h += dt / 3600  # the engine runs through the whole cycle (idle included)
        self.fuel_pct = max(0.0, self.fuel_pct - fuel_lph * dt / 3600 / 400 * 100)
        return {
            "speed": v, "rpm": rpm, "fuel_lph": fuel_lph,
            "coolant": min(88.0, 20 + t / 8), "accel": accel,
            "battery": ALTERNATOR_V + 0.1 * math.sin(t / 7),
            "ambient": AMBIENT_C + 2.0 * math.sin(t / 600),
        }


def bam(pgn: int, payload: bytes, sa: int, t_ms: int) -> list[tuple[int, int, bytes]]:
    """(time ms, arbitration id, data) of a J1939-21 broadcast (TP.CM BAM, then TP.DT packets
    BAM_GAP_MS apart) carrying `payload` of parameter group `pgn` from `sa`."""
    packets = (len(payload) + 6) // 7
    cm = bytes([32, len(payload) & 0xFF, len(payload) >> 8, packets, 0xFF, pgn & 0xFF,
                (pgn >> 8) & 0xFF, pgn >> 16])
    out = [(t_ms, TP_CM_ID | sa, cm)]
    for i in range(packets):
        chunk = payload[i * 7:(i + 1) * 7]
        out.append((t_ms + (i + 1) * BAM_GAP_MS, TP_DT_ID | sa,
                    bytes([i + 1]) + chunk + b"\xff" * (7 - len(chunk))))
    return out


def frames(duration_s: float, start_s: float = 0.0, driver: str = "") -> Iterator[can.Message]:
    """All frames of `duration_s` seconds of driving, timestamped from `start_s`; with
    `driver`, the tachograph's DI naming that driver card every DI_PERIOD_MS."""
    db = load_dbc(TRUCK_DBC)
    msgs = {name: db.get_message_by_name(name) for name, _, _ in SCHEDULE}
    events: list[tuple[int, str]] = []
    for name, period, phase in SCHEDULE:
        t = phase
        while t < duration_s * 1000:
            events.append((t, name))
            t += period
    raw: list[tuple[int, int, bytes]] = []  # frames no DBC describes: the DI's BAM
    if driver:
        payload = encode_di(driver)
        for t in range(DI_PHASE_MS, int(duration_s * 1000), DI_PERIOD_MS):
            if len(payload) > 8:
                raw += bam(PGN_DI, payload, TACHO_SA, t)
            else:
                raw.append((t, 0x18000000 | (PGN_DI << 8) | TACHO_SA, payload))
    events += [(t, f"raw:{i}") for i, (t, _, _) in enumerate(raw)]
    events.sort()
    state = DriveState()
    tire_index = 0
    for t_ms, name in events:
        t = t_ms / 1000
        s = state.at(t)
        if name.startswith("raw:"):
            _, arb, data = raw[int(name[4:])]
            yield can.Message(timestamp=start_s + t, arbitration_id=arb, is_extended_id=True,
                              data=data, dlc=len(data))
            continue
        if name == "EEC1":
            values = {"EngTorqueMode": 1 if s["speed"] > 0 else 0,
                      "DriverDemandEngPercentTorque": min(125, max(0, 20 + s["accel"] * 8)),
                      "ActualEngPercentTorque": min(125, max(0, 15 + s["accel"] * 8)),
                      "EngSpeed": round(s["rpm"] * 8) / 8, "EngStarterMode": 3}
        elif name == "CCVS1":
            values = {"ParkingBrakeSwitch": 1 if s["speed"] == 0 else 0,
                      "WheelBasedVehicleSpeed": round(s["speed"] * 256) / 256,
                      "CruiseCtrlActive": 1 if 55 < t % CYCLE_S < 135 else 0,
                      "BrakeSwitch": 1 if s["accel"] < -0.5 else 0, "ClutchSwitch": 0,
                      "CruiseCtrlSetSpeed": 85}
        elif name == "LFE1":
            economy = min(125.0, s["speed"] / s["fuel_lph"])
            values = {"EngFuelRate": round(s["fuel_lph"] * 20) / 20,
                      "EngInstantaneousFuelEconomy": round(economy * 512) / 512,
                      "EngAverageFuelEconomy": 3.0,
                      "EngThrottleValve1Pos": round(min(100.0, 10 + max(0.0, s["accel"]) * 20)
                                                    / 0.4) * 0.4}
        elif name == "ET1":
            values = {"EngCoolantTemp": round(s["coolant"]), "EngFuelTemp1": 35,
                      "EngOilTemp1": round((s["coolant"] + 5) * 32) / 32}
        elif name == "DD1":
            values = {"WasherFluidLevel": 60, "FuelLevel1": round(state.fuel_pct / 0.4) * 0.4,
                      "EngFuelFilterDiffPress": 20, "EngOilFilterDiffPress": 10,
                      "CargoAmbientTemp": 4.0}
        elif name == "HOURS":
            values = {"EngTotalHoursOfOperation": round(state.engine_h / 0.05) * 0.05,
                      "EngTotalRevolutions": 0}
        elif name == "VEP1":
            values = {"ChargingSystemPotential": round(s["battery"] / 0.05) * 0.05,
                      "BatteryPotential_PowerInput1": round(s["battery"] / 0.05) * 0.05,
                      "KeyswitchBatteryPotential": round(s["battery"] / 0.05) * 0.05}
        elif name == "AMB":
            values = {"BarometricPress": 101.0, "CabInteriorTemp": 21.0,
                      "AmbientAirTemp": round(s["ambient"] * 32) / 32,
                      "EngAirInletTemp": round(s["ambient"]) + 5,
                      "RoadSurfaceTemp": round(s["ambient"] * 32) / 32}
        elif name == "VDHR":
            values = {"HighResTotalVehicleDistance": round(state.odometer_km / 0.005) * 0.005,
                      "HighResTripDistance": round(state.trip_km / 0.005) * 0.005}
        else:
            loc = TIRES[tire_index % len(TIRES)]
            tire_index += 1
            label = TIRE_NAMES[loc]
            base = 830 if loc < 0x10 else 800
            values = {"TireLocation": loc, f"TirePress_{label}": base + 4 * (tire_index % 3),
                      f"TireTemp_{label}": 25.0 + s["speed"] / 10, "CTIWheelSensorStatus": 1,
                      "TireAirLeakageRate": 0.0}
        message = msgs[name]
        data = message.encode(values, strict=False)
        yield can.Message(timestamp=start_s + t, arbitration_id=message.frame_id,
                          is_extended_id=True, data=data, dlc=len(data))


def write_candump(path: str | Path, duration_s: float, start_s: float = 0.0, driver: str = "",
                  iface: str = "can0") -> int:
    """`frames()` as a candump -L log file (what the demo's agents replay); the frame count."""
    n = 0
    with open(path, "w", encoding="utf-8") as out:
        for msg in frames(duration_s, start_s, driver):
            out.write(to_candump(msg, iface) + "\n")
            n += 1
    return n


def _play(frames_iter, send, speed: float) -> int:
    """Send frames at their recorded pace (speed × real time; 0 = as fast as possible)."""
    count = 0
    start = time.monotonic()
    first = None
    for msg in frames_iter:
        if first is None:
            first = msg.timestamp
        if speed > 0:
            wait = start + (msg.timestamp - first) / speed - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        send(msg)
        count += 1
    return count


def open_pty() -> tuple[int, str]:
    """A pty whose slave end a python-can `slcan` bus can open; returns (master fd, path)."""
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.set_blocking(master, False)
    # keep the slave fd open so the master does not see EIO before the reader opens it
    return master, path


def write_lawicel(master: int, msg: can.Message, cut: int | None = None) -> None:
    """Write one frame as an slcan adapter would, waiting (bounded) if the pty buffer is full;
    a line once begun is finished, so a slow reader loses whole frames, never gets torn ones.
    `cut`: the line goes in two writes split there, a moment apart (an adapter's USB packets
    end mid-line)."""
    line = to_lawicel(msg)
    pieces = (line,) if cut is None else (line[:cut], line[cut:])
    written = 0
    for piece in pieces:
        if written:
            time.sleep(0.0005)
        rest = memoryview(piece)
        for tries in range(400):
            try:
                n = os.write(master, rest)  # a full pty may take part of a line
                rest, written = rest[n:], written + n
            except BlockingIOError:
                pass
            if not rest:
                break
            if tries >= 200 and not written:
                return  # the reader stayed a second behind: the frame is lost, as on a bus
            time.sleep(0.005)


def wait_for_open(master: int, timeout_s: float) -> bool:
    """Read SLCAN commands from the host until the open command `O` arrives."""
    import select

    seen = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if not ready:
            continue
        try:
            seen = (seen + os.read(master, 4096))[-64:]
        except (BlockingIOError, OSError):
            continue
        if b"O\r" in seen.replace(b"\n", b"\r"):
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Play a truck drive cycle onto a CAN bus")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--candump", metavar="FILE", help="write a candump -L log (- = stdout)")
    where.add_argument("--bus", metavar="INTERFACE", help="python-can interface to send on")
    where.add_argument("--pty", action="store_true", help="SLCAN on a new pty (prints path)")
    parser.add_argument("--channel", default="vcan0")
    parser.add_argument("--duration", type=float, default=CYCLE_S, help="seconds of driving")
    parser.add_argument("--speed", type=float, default=1.0, help="pace; 0 = as fast as possible")
    parser.add_argument("--start", type=float, default=None, help="first timestamp (epoch s)")
    parser.add_argument("--iface-name", default="can0", help="interface name in candump lines")
    parser.add_argument("--driver", default="", help="a driver card number for the tachograph's "
                        "Driver's Identification (DI); empty: no DI")
    parser.add_argument("--open-timeout", type=float, default=60.0,
                        help="--pty: seconds to wait for the host to open the channel")
    args = parser.parse_args(argv)
    start = time.time() if args.start is None else args.start
    gen = frames(args.duration, start, args.driver)
    if args.candump and args.candump != "-":
        write_candump(args.candump, args.duration, start, args.driver, args.iface_name)
        return 0
    if args.candump:
        for msg in gen:
            sys.stdout.write(to_candump(msg, args.iface_name) + "\n")
        return 0
    if args.pty:
        master, path = open_pty()
        print(path, flush=True)
        # like a real adapter, send nothing before the host opens the channel ("O\r")
        if not wait_for_open(master, args.open_timeout):
            print("can_gen: nobody opened the channel", file=sys.stderr)
            return 1

        def send(msg: can.Message) -> None:
            try:
                os.read(master, 4096)  # the adapter commands slcan sends (C, S5, O): ignored
            except (BlockingIOError, OSError):
                pass
            write_lawicel(master, msg)

        n = _play(gen, send, args.speed)
        print(f"can_gen: {n} frames", file=sys.stderr)
        return 0
    with can.Bus(interface=args.bus, channel=args.channel) as bus:
        n = _play(gen, bus.send, args.speed)
    print(f"can_gen: {n} frames", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
