"""CAN log files as frame iterators: candump (`(ts) iface id#data`) parsed here, ASC/BLF/TRC
through python-can's readers. Bad lines are counted, never fatal."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import can

CAN_ERR_FLAG = 0x20000000
FD_LENGTHS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64)


def parse_candump_line(line: str) -> can.Message | None:
    """One `candump -L` line → Message (timestamp in s, channel = iface); None for blank and
    comment lines; ValueError for anything malformed.

    Frames: `123#11223344` (standard), `12345678#..` (extended), `123#R` / `123#R4` (remote),
    `123##1AABB` (CAN FD, first nibble = flags: 1 BRS, 2 ESI), `20000080#..` (error frame)."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    parts = line.split()
    if len(parts) < 3 or not (parts[0].startswith("(") and parts[0].endswith(")")):
        raise ValueError("not a candump -L line")
    timestamp = float(parts[0][1:-1])
    if not math.isfinite(timestamp):
        raise ValueError("bad timestamp")
    channel = parts[1]
    ident, sep, rest = parts[2].partition("#")
    if not sep or len(ident) not in (3, 8):
        raise ValueError("bad frame field")
    arb = int(ident, 16)
    extended = len(ident) == 8
    kw: dict = {"timestamp": timestamp, "channel": channel, "is_extended_id": extended}
    if extended and arb & CAN_ERR_FLAG:
        kw.update(is_error_frame=True, arbitration_id=arb & 0x1FFFFFFF, data=bytes.fromhex(rest))
        kw["dlc"] = len(kw["data"])
        return can.Message(**kw, check=False)
    if arb > 0x1FFFFFFF or (not extended and arb > 0x7FF):
        raise ValueError("id out of range")
    kw["arbitration_id"] = arb
    if rest.startswith("#"):
        flags = int(rest[1:2], 16)  # ValueError, not IndexError, for a bare "#"
        data = bytes.fromhex(rest[2:])
        if len(data) not in FD_LENGTHS:
            raise ValueError("bad CAN FD length")
        kw.update(is_fd=True, bitrate_switch=bool(flags & 1), error_state_indicator=bool(flags & 2))
        return can.Message(**kw, data=data, dlc=len(data), check=True)
    if rest[:1] in ("R", "r"):
        dlc = int(rest[1:], 16) if len(rest) > 1 else 0
        if dlc > 8:
            raise ValueError("bad remote dlc")
        return can.Message(**kw, is_remote_frame=True, dlc=dlc, check=True)
    data = bytes.fromhex(rest.replace(".", ""))
    if len(data) > 8:
        raise ValueError("classic frame longer than 8 bytes")
    return can.Message(**kw, data=data, dlc=len(data), check=True)


class CandumpReader:
    """Iterate Messages from candump text lines; `bad_lines` counts what could not be parsed."""

    def __init__(self, lines: Iterable[str]):
        self.lines = lines
        self.bad_lines = 0

    def __iter__(self) -> Iterator[can.Message]:
        for line in self.lines:
            try:
                msg = parse_candump_line(line)
            except (ValueError, IndexError, TypeError):
                self.bad_lines += 1
                continue
            if msg is not None:
                yield msg


class LogFile:
    """Frames of a log file chosen by suffix: .asc/.blf/.trc/.mf4 via python-can, otherwise
    candump text. Iterable many times (replay loops)."""

    PYTHON_CAN_SUFFIXES = {".asc", ".blf", ".trc", ".mf4", ".csv"}

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.bad_lines = 0

    def __iter__(self) -> Iterator[can.Message]:
        if self.path.suffix.lower() in self.PYTHON_CAN_SUFFIXES:
            try:
                kwargs = {"relative_timestamp": False} if self.path.suffix.lower() == ".asc" else {}
                yield from can.LogReader(str(self.path), **kwargs)
            except Exception as exc:  # each python-can reader has its own parse errors
                raise OSError(f"{self.path}: {exc}") from exc
            return
        with open(self.path, encoding="utf-8", errors="replace") as f:
            reader = CandumpReader(f)
            try:
                yield from reader
            finally:
                self.bad_lines += reader.bad_lines


def to_lawicel(msg: can.Message) -> bytes:
    """A frame as an SLCAN (LAWICEL) command line, as USB adapters like CANable send them."""
    if msg.is_remote_frame:
        head = f"R{msg.arbitration_id:08X}" if msg.is_extended_id else f"r{msg.arbitration_id:03X}"
        return f"{head}{msg.dlc:X}\r".encode()
    head = f"T{msg.arbitration_id:08X}" if msg.is_extended_id else f"t{msg.arbitration_id:03X}"
    return f"{head}{len(msg.data):X}{bytes(msg.data).hex().upper()}\r".encode()


def to_candump(msg: can.Message, channel: str = "can0") -> str:
    ident = f"{msg.arbitration_id:08X}" if msg.is_extended_id else f"{msg.arbitration_id:03X}"
    if msg.is_remote_frame:
        body = f"R{msg.dlc}" if msg.dlc else "R"
    elif msg.is_fd:
        flags = (1 if msg.bitrate_switch else 0) | (2 if msg.error_state_indicator else 0)
        body = f"#{flags:X}{bytes(msg.data).hex().upper()}"
    else:
        body = bytes(msg.data).hex().upper()
    return f"({msg.timestamp:.6f}) {channel} {ident}#{body}"
