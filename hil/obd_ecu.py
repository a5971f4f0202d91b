"""A simulated vehicle ECU: answers OBD-II requests (mode 01 PIDs, mode 03/07 DTCs, ISO-TP
multi-frame with flow control) and broadcasts J1939 DM1 (single frame, or BAM for several
DTCs). `SimulatedEcu` is sans-IO (frames in, frames out, time an argument); `main` runs it
on a python-can bus or as an SLCAN adapter on a pty:

    python hil/obd_ecu.py --pty                  # prints the pty path for interface="slcan"
    python hil/obd_ecu.py --bus socketcan --channel vcan0
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import can

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from geostream.clock import wall_ms  # noqa: E402
from hil.can_gen import open_pty, wait_for_open, write_lawicel  # noqa: E402

ENGINE_RX, ENGINE_TX = 0x7E0, 0x7E8
FUNCTIONAL = 0x7DF
DM1_PERIOD_MS = 1000  # J1939-73: DM1 once a second
BAM_GAP_MS = 50  # J1939-21: 50-200 ms between BAM packets
PAD = 0xAA
DM11_PGN = 0xFED3  # J1939-73 DM11: clear/reset active DTCs


def encode_obd_dtc(code: str) -> bytes:
    """'P0301' → 2 bytes (SAE J2012)."""
    letter = "PCBU".index(code[0])
    value = int(code[1:], 16)
    return bytes([(letter << 6) | (value >> 8), value & 0xFF])


def dm1_payload(dtcs, mil: int) -> bytes:
    body = b"".join(bytes([spn & 0xFF, (spn >> 8) & 0xFF, ((spn >> 16) << 5) | fmi, oc])
                    for spn, fmi, oc in dtcs) or bytes(4)
    return bytes([(mil & 3) << 6, 0xFF]) + body


class SimulatedEcu:
    """Engine ECU (answers on 0x7E8) and J1939 controller (source address `sa`)."""

    def __init__(self, *, stored=("P0301", "P0420", "C0123"), pending=("P0171",),
                 dm1=((110, 0, 1),), sa: int = 0x00, silent_pids=()):
        self.stored = list(stored)
        self.pending = list(pending)
        self.dm1 = list(dm1)
        self.sa = sa
        self.silent_pids = set(silent_pids)
        self.requests = 0
        self.cleared = 0  # mode 04 and DM11 requests obeyed
        self._tx_queue: list[bytes] = []  # consecutive frames waiting for flow control
        self._next_dm1_ms = 0

    # --- OBD-II -----------------------------------------------------------------------------
    def pid_value(self, pid: int, now_ms: int) -> bytes | None:
        t = now_ms / 1000
        rpm = 800 + 1200 * (1 + math.sin(t / 5))
        table = {
            0x05: bytes([90 + 40]),  # coolant 90 °C
            0x0C: int(rpm * 4).to_bytes(2, "big"),
            0x0D: bytes([int(50 + 30 * math.sin(t / 7))]),
            0x2F: bytes([int(0.62 * 255)]),
        }
        return table.get(pid)

    def on_frame(self, msg: can.Message, now_ms: int) -> list[can.Message]:
        if msg.is_extended_id:
            return self._j1939_request(msg)
        if msg.arbitration_id not in (FUNCTIONAL, ENGINE_RX):
            return []
        data = bytes(msg.data)
        if data[0] == 0x30 and msg.arbitration_id == ENGINE_RX:  # flow control: continue
            out, self._tx_queue = self._tx_queue, []
            return [self._frame(ENGINE_TX, f) for f in out]
        n = data[0] & 0x0F
        if data[0] >> 4 != 0 or not 1 <= n <= 7:
            return []
        self.requests += 1
        service, args = data[1], data[2:1 + n]
        if service == 0x01 and args:
            value = self.pid_value(args[0], now_ms)
            if value is None or args[0] in self.silent_pids:
                return []
            return self._send(bytes([0x41, args[0]]) + value)
        if service == 0x04:  # clear DTCs (stored and pending), answered positively
            self.stored, self.pending = [], []
            self.cleared += 1
            return self._send(bytes([0x44]))
        if service in (0x03, 0x07):
            codes = self.stored if service == 0x03 else self.pending
            body = b"".join(encode_obd_dtc(c) for c in codes)
            return self._send(bytes([service + 0x40, len(codes)]) + body)
        return []

    def _j1939_request(self, msg: can.Message) -> list[can.Message]:
        """A J1939 Request (PGN 59904) to us or to all for DM11 (clear active DTCs): the DM1
        list empties (the next DM1 says so); DM3 (previously active) has nothing to clear."""
        arb, data = msg.arbitration_id, bytes(msg.data)
        pgn_req, dest = (arb >> 8) & 0xFF00, (arb >> 8) & 0xFF
        if pgn_req != 0xEA00 or dest not in (0xFF, self.sa) or len(data) < 3:
            return []
        if int.from_bytes(data[:3], "little") == DM11_PGN:
            self.dm1 = []
            self.cleared += 1
        return []

    def _send(self, payload: bytes) -> list[can.Message]:
        if len(payload) <= 7:
            return [self._frame(ENGINE_TX, bytes([len(payload)]) + payload)]
        first = bytes([0x10 | (len(payload) >> 8), len(payload) & 0xFF]) + payload[:6]
        rest = payload[6:]
        self._tx_queue = [bytes([0x20 | ((i + 1) & 0xF)]) + rest[i * 7:(i + 1) * 7]
                          for i in range((len(rest) + 6) // 7)]
        return [self._frame(ENGINE_TX, first)]

    @staticmethod
    def _frame(arb: int, data: bytes, extended: bool = False) -> can.Message:
        return can.Message(arbitration_id=arb, is_extended_id=extended,
                           data=data.ljust(8, bytes([PAD])))

    # --- J1939 DM1 --------------------------------------------------------------------------
    def dm1_due(self, now_ms: int) -> list[tuple[int, can.Message]]:
        """(send at ms, frame) for the DM1 due at `now_ms`, if any."""
        if now_ms < self._next_dm1_ms:
            return []
        self._next_dm1_ms = now_ms + DM1_PERIOD_MS
        payload = dm1_payload(self.dm1, mil=1 if self.dm1 else 0)
        prio = 6 << 26
        if len(payload) <= 8:
            return [(now_ms, self._frame(prio | 0xFECA00 | self.sa, payload, True))]
        packets = (len(payload) + 6) // 7
        cm = bytes([32, len(payload) & 0xFF, len(payload) >> 8, packets, 0xFF, 0xCA, 0xFE, 0])
        out = [(now_ms, self._frame((7 << 26) | 0xECFF00 | self.sa, cm, True))]
        for seq in range(1, packets + 1):
            chunk = payload[(seq - 1) * 7:seq * 7].ljust(7, b"\xff")
            out.append((now_ms + seq * BAM_GAP_MS,
                        self._frame((7 << 26) | 0xEBFF00 | self.sa, bytes([seq]) + chunk, True)))
        return out


def parse_lawicel(line: bytes) -> can.Message | None:
    """One SLCAN transmit command (`t7DF80201...`, `T18DA10F18...`) → Message."""
    if not line or line[:1] not in (b"t", b"T"):
        return None
    ext = line[:1] == b"T"
    width = 8 if ext else 3
    try:
        arb = int(line[1:1 + width], 16)
        dlc = int(line[1 + width:2 + width], 16)
        data = bytes.fromhex(line[2 + width:2 + width + 2 * dlc].decode())
    except ValueError:
        return None
    return can.Message(arbitration_id=arb, is_extended_id=ext, data=data)


def _run(ecu: SimulatedEcu, recv, send, duration_s: float, on_change_s: float | None) -> None:
    start = time.monotonic()
    later: list[tuple[int, can.Message]] = []
    changed = False
    while time.monotonic() - start < duration_s:
        now = wall_ms()
        if on_change_s is not None and not changed and time.monotonic() - start > on_change_s:
            ecu.dm1 = ecu.dm1 + [(100, 1, 1), (523000, 31, 2)]  # two more: DM1 goes BAM
            changed = True
        later += ecu.dm1_due(now)
        for _at, msg in sorted((x for x in later if x[0] <= now), key=lambda x: x[0]):
            send(msg)
        later = [x for x in later if x[0] > now]
        for msg in recv():
            for reply in ecu.on_frame(msg, now):
                send(reply)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Simulated ECU: OBD-II answers and J1939 DM1")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--bus", metavar="INTERFACE", help="python-can interface")
    where.add_argument("--pty", action="store_true", help="SLCAN adapter on a new pty")
    parser.add_argument("--channel", default="vcan0")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--change-after", type=float, default=None,
                        help="seconds after which two more DM1 DTCs become active")
    parser.add_argument("--open-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    ecu = SimulatedEcu()
    if args.bus:
        with can.Bus(interface=args.bus, channel=args.channel) as bus:
            def recv():
                msg = bus.recv(0.005)
                return [msg] if msg is not None else []
            _run(ecu, recv, bus.send, args.duration, args.change_after)
        return 0
    master, path = open_pty()
    print(path, flush=True)
    if not wait_for_open(master, args.open_timeout):
        print("obd_ecu: nobody opened the channel", file=sys.stderr)
        return 1
    import select
    buf = bytearray()

    def recv():
        ready, _, _ = select.select([master], [], [], 0.005)
        if not ready:
            return []
        try:
            buf.extend(os.read(master, 4096))
        except (BlockingIOError, OSError):
            return []
        out = []
        while b"\r" in buf:
            line, _, rest = bytes(buf).partition(b"\r")
            buf[:] = rest
            msg = parse_lawicel(line.strip(b"\n"))
            if msg is not None:
                out.append(msg)
        return out

    def send(msg: can.Message) -> None:
        write_lawicel(master, msg)

    _run(ecu, recv, send, args.duration, args.change_after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
