"""Sans-IO CAN frame decoder: arbitration id → DBC message → signal values.

No buses, no clocks: callers pass frames (python-can `Message` objects, which are plain data)
and receive times. The hot path for a frame nobody wants is one dict lookup and one counter.

Lookup order for a frame:
1. exact arbitration id (standard and extended ids live in one table; extended keys carry
   `EXT`), which also answers cached results of the steps below;
2. for extended ids on a J1939 bus: the parameter group number (PGN), so that a PGN matches
   whatever its priority and source address (PDU1 PGNs also ignore the destination);
3. J1939 transport protocol frames (TP.CM / TP.DT): BAM and, passively, RTS/CTS sessions are
   reassembled into the multi-packet PGN they carry.

Values are checked before they leave: too few data bytes → `bad_dlc`, never decoded. A value
outside the signal's DBC [min|max] is kept (DBC ranges are often wrong) and counted
`out_of_dbc_range`, or dropped with `range_check="drop"`. J1939 messages use SAE J1939-71
instead: raw "error" / "not available" codes are never values (`j1939_error`,
`j1939_not_available`). NaN/inf floats are dropped (`not_finite`). Choices come out as names.

Longer than ~300 lines on purpose: the id tables, the per-frame checks and the J1939
transport reassembly share the hot path's precomputed entries; split, every frame would pay
for extra calls (see docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from cantools.database.can import Database
from cantools.database.can import Message as DbcMessage
from cantools.database.namedsignalvalue import NamedSignalValue

from .dtc import PGN_DM1, Dm1, parse_dm1
from .j1939text import DI_MESSAGE, PGN_DI, parse_di

EXT = 1 << 29  # key flag for extended ids (ids are 29 bits, so this bit is free)
CAN_ERR_BUSOFF = 0x40  # socketcan error class bit in an error frame's id

_UNKNOWN = 0
_UNSELECTED = 1
_TP_CM = 2
_TP_DT = 3
_DM1 = 4
_DI = 5

PGN_TP_CM = 0xEC00
PGN_TP_DT = 0xEB00
TP_BAM = 32
TP_RTS = 16
TP_ABORT = 255
TP_TIMEOUT_MS = 1250  # longest J1939-21 gap (T1 750 ms for BAM, T1..T3 up to 1250 ms)
TP_MAX_SIZE = 1785
MAX_CACHE = 8192  # extended ids remembered after a PGN lookup (bounds memory under id floods)
# A signal outside its DBC range is logged at most once per this interval (ranges in real DBC
# files are often wrong: one line per frame would flood the log).
RANGE_LOG_INTERVAL_MS = 600_000

log = logging.getLogger("fleet_agent.can")

COUNTERS = (
    "frames", "decoded", "unknown_id", "unselected", "bad_dlc", "decode_errors",
    "out_of_dbc_range", "j1939_error", "j1939_not_available", "not_finite",
    "error_frames", "bus_off", "remote_frames", "tp_packets", "tp_complete", "tp_errors",
    "dbc_warnings", "dm1", "held",
)


def j1939_key(arbitration_id: int) -> int:
    """The PGN part of a 29-bit id, shifted in place: drops priority, SA and PDU1 destination."""
    if (arbitration_id >> 16) & 0xFF >= 240:
        return arbitration_id & 0x3FFFF00
    return arbitration_id & 0x3FF0000


def pgn_of(arbitration_id: int) -> int:
    return j1939_key(arbitration_id) >> 8


def is_j1939(message: DbcMessage) -> bool:
    return bool(message.is_extended_frame and (message.protocol or "").lower() == "j1939")


@dataclass(slots=True)
class Decoded:
    """One decoded frame (or reassembled multi-packet PGN). `entry`: set when `hold()` can
    skip this message's next frames (a single frame, not multiplexed)."""

    frame_id: int
    message: str
    values: dict
    entry: object = field(default=None, compare=False, repr=False)


def j1939_codes(length: int) -> tuple[int, int] | None:
    """SAE J1939-71 (lowest "error", lowest "not available") raw code of an unsigned
    parameter `length` bits long: the top two values of a 2..7-bit field, the top byte 0xFE /
    0xFF of a wider one (0xFE00 / 0xFF00 for 16 bits...). None for a 1-bit field."""
    if length < 2:
        return None
    if length < 8:
        top = (1 << length) - 1
        return top - 1, top
    return 0xFE << (length - 8), 0xFF << (length - 8)


class _Entry:
    """A known message with its checks precomputed for the hot path."""

    __slots__ = ("message", "name", "length", "wanted", "choice_sigs", "bounds", "nan_sigs",
                 "j1939_sigs", "holdable", "held_at", "hold_until")

    def __init__(self, message: DbcMessage, wanted: dict[str, str] | None, j1939: bool):
        self.message = message
        self.name = message.name
        self.length = message.length
        # frames at held_at <= ts < hold_until are skipped (see CanDecoder.hold); a multiplexed
        # message's frames carry different signals, so one frame cannot stand for the next
        self.holdable = not message.is_multiplexed()
        self.held_at = self.hold_until = 0
        # signal name -> key it is emitted under; None: every signal under its own name
        self.wanted = tuple(wanted.items()) if wanted is not None else None
        self.choice_sigs: list[str] = []
        self.bounds: list[tuple[str, float, float]] = []
        self.nan_sigs: list[str] = []
        # (name, scale, offset, lowest error code, lowest not-available code)
        self.j1939_sigs: list[tuple[str, float, float, int, int]] = []
        for sig in message.signals:
            if wanted is not None and sig.name not in wanted:
                continue
            if sig.choices:
                self.choice_sigs.append(sig.name)
            if sig.is_float:
                self.nan_sigs.append(sig.name)
            if j1939:
                codes = None if sig.is_float or sig.is_signed else j1939_codes(sig.length)
                if codes is not None and sig.scale:
                    self.j1939_sigs.append((sig.name, sig.scale, sig.offset) + codes)
                continue
            lo, hi = sig.minimum, sig.maximum
            if lo is None or hi is None or (lo == 0 and hi == 0) or hi < lo:
                continue
            slack = abs(sig.scale) / 2 if sig.scale else 0.0
            self.bounds.append((sig.name, lo - slack, hi + slack))


class _TpSession:
    __slots__ = ("pgn", "entry", "size", "packets", "next_seq", "buf", "last_ms", "frame_id")

    def __init__(self, pgn, entry, size, packets, ts_ms, frame_id):
        self.pgn = pgn
        self.entry = entry
        self.size = size
        self.packets = packets
        self.next_seq = 1
        self.buf = bytearray()
        self.last_ms = ts_ms
        self.frame_id = frame_id


class CanDecoder:
    """Decode frames of one bus with its DBC databases.

    `selection`: message name → {signal name → emitted key}; None records every signal of
    every message under its own name. Messages not in the selection are "unselected".
    `j1939`: None = decide per message from the DBC (ProtocolType "J1939" / J1939PG), or force.
    `dm1`: also parse J1939 DM1 (single frame and BAM); `feed` then returns `Dm1` objects too.
    `di`: also decode J1939 Driver's Identification (j1939text.py: text a DBC cannot
    describe) as the message "DI", selectable like a DBC message.
    """

    def __init__(
        self,
        databases: Iterable[Database],
        selection: dict[str, dict[str, str]] | None = None,
        j1939: bool | None = None,
        range_check: str = "keep",
        dm1: bool = False,
        di: bool = False,
    ):
        if range_check not in ("keep", "drop"):
            raise ValueError(f"range_check must be 'keep' or 'drop', not {range_check!r}")
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.drop_out_of_range = range_check == "drop"
        self._range_logged: dict[tuple[str, str], int] = {}
        self._table: dict[int, object] = {}
        self._pgn_table: dict[int, object] = {}
        self._cache_left = MAX_CACHE
        self._tp: dict[tuple[int, int], _TpSession] = {}
        seen_ids: set[int] = set()
        multi_packet = False
        for db in databases:
            for message in db.messages:
                j = is_j1939(message) if j1939 is None else (j1939 and message.is_extended_frame)
                if selection is None:
                    entry: object = _Entry(message, None, j)
                elif message.name in selection:
                    entry = _Entry(message, selection[message.name], j)
                else:
                    entry = _UNSELECTED
                key = message.frame_id | (EXT if message.is_extended_frame else 0)
                if key in seen_ids:
                    continue  # first database wins, as in the config order
                seen_ids.add(key)
                self._table[key] = entry
                if j:
                    pkey = j1939_key(message.frame_id)
                    if self._pgn_table.get(pkey, _UNSELECTED) == _UNSELECTED:
                        self._pgn_table[pkey] = entry  # a selected message of the PGN wins
                    if type(entry) is _Entry and message.length > 8:
                        multi_packet = True
        if dm1:
            self._pgn_table[PGN_DM1 << 8] = _DM1
            multi_packet = True
        # DI's signals as selected (None: all); a selection without DI leaves it unselected
        self._di_wanted = None if selection is None else selection.get(DI_MESSAGE)
        if di and (selection is None or self._di_wanted is not None):
            self._pgn_table[PGN_DI << 8] = _DI
            multi_packet = True
        elif di:
            self._pgn_table.setdefault(PGN_DI << 8, _UNSELECTED)
        if multi_packet:
            self._pgn_table[PGN_TP_CM << 8] = _TP_CM
            self._pgn_table[PGN_TP_DT << 8] = _TP_DT
        self.j1939 = bool(self._pgn_table)

    # --- kernel filters -------------------------------------------------------------------
    def can_filters(self) -> list[dict] | None:
        """python-can `can_filters` passing only frames of selected messages (None: all)."""
        filters = []
        wanted_pgns = {k for k, e in self._pgn_table.items() if e != _UNSELECTED}
        for key, entry in self._table.items():
            if type(entry) is not _Entry:
                continue
            if key & EXT:
                frame_id = key & ~EXT
                if j1939_key(frame_id) in wanted_pgns:
                    continue
                filters.append({"can_id": frame_id, "can_mask": 0x1FFFFFFF, "extended": True})
            else:
                filters.append({"can_id": key, "can_mask": 0x7FF, "extended": False})
        for pkey in sorted(wanted_pgns):
            mask = 0x3FFFF00 if (pkey >> 16) & 0xFF >= 240 else 0x3FF0000
            filters.append({"can_id": pkey, "can_mask": mask, "extended": True})
        return filters or None

    # --- hot path -------------------------------------------------------------------------
    def feed(self, msg, ts_ms: int) -> Decoded | Dm1 | None:
        """Decode one python-can `Message`; None when there is nothing to record."""
        counts = self.counts
        counts["frames"] += 1
        if msg.is_error_frame:
            counts["error_frames"] += 1
            if msg.arbitration_id & CAN_ERR_BUSOFF:
                counts["bus_off"] += 1
            return None
        if msg.is_remote_frame:
            counts["remote_frames"] += 1
            return None
        arb = msg.arbitration_id
        key = (arb | EXT) if msg.is_extended_id else arb
        entry = self._table.get(key)
        if entry is None:
            entry = self._resolve(key, arb, msg.is_extended_id)
        if type(entry) is int:
            if entry == _UNSELECTED:
                counts["unselected"] += 1
            elif entry == _UNKNOWN:
                counts["unknown_id"] += 1
            elif entry == _DM1:
                return self._dm1(arb, bytes(msg.data))
            elif entry == _DI:
                return self._di(arb, bytes(msg.data))
            else:
                return self._transport(entry, arb, msg.data, ts_ms)
            return None
        if entry.held_at <= ts_ms < entry.hold_until:
            counts["held"] += 1
            return None
        return self._decode(entry, arb, msg.data, ts_ms, entry.holdable)

    def hold(self, decoded: Decoded, ts_ms: int, until_ms: int) -> None:
        """Skip the next frames of `decoded`'s message, without decoding them, from `ts_ms`
        until `until_ms` (counted `held`): the caller's selection would drop all their values
        (Selector.quiet_until). No-op for reassembled or multiplexed messages."""
        entry = decoded.entry
        if entry is not None and until_ms > ts_ms:
            entry.held_at = ts_ms
            entry.hold_until = until_ms

    def _resolve(self, key: int, arb: int, extended: bool) -> object:
        entry: object = _UNKNOWN
        if extended and self.j1939 and arb <= 0x1FFFFFFF:
            entry = self._pgn_table.get(j1939_key(arb), _UNKNOWN)
        if self._cache_left > 0:
            self._cache_left -= 1
            self._table[key] = entry
        return entry

    def _decode(self, entry: _Entry, frame_id: int, data, ts_ms: int,
                holdable: bool = False) -> Decoded | None:
        counts = self.counts
        if len(data) < entry.length:
            counts["bad_dlc"] += 1
            return None
        try:
            raw = entry.message.decode(data, decode_choices=True, scaling=True)
        except Exception:  # cantools raises several types for bad mux values / data
            counts["decode_errors"] += 1
            return None
        # `raw` is a fresh dict from cantools: fix it up in place
        for name, scale, offset, error, not_available in entry.j1939_sigs:
            value = raw.get(name)
            if value is None:
                continue  # another multiplexer value
            code = value.value if type(value) is NamedSignalValue else round(
                (value - offset) / scale)
            if code >= error:
                del raw[name]
                counts["j1939_not_available" if code >= not_available else "j1939_error"] += 1
        for name in entry.choice_sigs:
            value = raw.get(name)
            if type(value) is NamedSignalValue:
                raw[name] = value.name
        for name, lo, hi in entry.bounds:
            value = raw.get(name, lo)  # absent: another multiplexer value
            if type(value) is not str and not lo <= value <= hi:
                counts["out_of_dbc_range"] += 1
                self._note_range(entry.name, name, value, lo, hi, ts_ms)
                if self.drop_out_of_range:
                    del raw[name]
        for name in entry.nan_sigs:
            value = raw.get(name)
            if value is not None and not math.isfinite(value):
                del raw[name]
                counts["not_finite"] += 1
        counts["decoded"] += 1
        wanted = entry.wanted
        held = entry if holdable else None
        if wanted is None:
            return Decoded(frame_id, entry.name, raw, held)
        return Decoded(frame_id, entry.name, {key: raw[name] for name, key in wanted
                                              if name in raw}, held)

    def _dm1(self, frame_id: int, data: bytes) -> Dm1 | None:
        report = parse_dm1(frame_id & 0xFF, data)
        self.counts["dm1" if report is not None else "bad_dlc"] += 1
        return report

    def _di(self, frame_id: int, data: bytes) -> Decoded:
        values = parse_di(data)
        if self._di_wanted is not None:
            values = {key: values[name] for name, key in self._di_wanted.items()
                      if name in values}
        self.counts["decoded"] += 1
        return Decoded(frame_id, DI_MESSAGE, values)

    def _note_range(self, message: str, signal: str, value, lo: float, hi: float,
                    ts_ms: int) -> None:
        key = (message, signal)
        last = self._range_logged.get(key)
        if last is not None and 0 <= ts_ms - last < RANGE_LOG_INTERVAL_MS:
            return
        self._range_logged[key] = ts_ms
        log.info("%s.%s = %s outside its DBC range [%g|%g] (%s; logged once per %d s)",
                 message, signal, value, lo, hi,
                 "dropped" if self.drop_out_of_range else "kept",
                 RANGE_LOG_INTERVAL_MS // 1000)

    # --- J1939 transport protocol ---------------------------------------------------------
    def _transport(self, kind: int, arb: int, data, ts_ms: int) -> Decoded | None:
        counts = self.counts
        counts["tp_packets"] += 1
        sa = arb & 0xFF
        da = (arb >> 8) & 0xFF
        if len(data) < 8:
            counts["bad_dlc"] += 1
            self._tp.pop((sa, da), None)
            return None
        if kind == _TP_CM:
            control = data[0]
            if control in (TP_BAM, TP_RTS):
                if control == TP_BAM and da != 0xFF:
                    counts["tp_errors"] += 1
                    return None
                size = data[1] | (data[2] << 8)
                packets = data[3]
                pgn = data[5] | (data[6] << 8) | (data[7] << 16)
                if self._tp.pop((sa, da), None) is not None:
                    counts["tp_errors"] += 1  # a new session aborts the unfinished one
                if not 9 <= size <= TP_MAX_SIZE or packets != (size + 6) // 7 or pgn > 0x3FFFF:
                    counts["tp_errors"] += 1
                    return None
                frame_id = (arb & 0x1C000000) | (pgn << 8) | sa
                entry = self._pgn_table.get(j1939_key(frame_id), _UNKNOWN)
                if type(entry) is int and entry != _DM1 and entry != _DI:
                    counts["unselected" if entry == _UNSELECTED else "unknown_id"] += 1
                    return None
                self._tp[(sa, da)] = _TpSession(pgn, entry, size, packets, ts_ms, frame_id)
            elif control == TP_ABORT:
                # an abort from either side ends the session between the two
                self._tp.pop((sa, da), None)
                self._tp.pop((da, sa), None)
            return None
        session = self._tp.get((sa, da))
        if session is None:
            return None  # data of a session we do not follow (unselected PGN, or joined late)
        seq = data[0]
        if seq != session.next_seq or ts_ms - session.last_ms > TP_TIMEOUT_MS:
            counts["tp_errors"] += 1
            del self._tp[(sa, da)]
            return None
        session.buf += data[1:8]
        session.next_seq += 1
        session.last_ms = ts_ms
        if seq < session.packets:
            return None
        del self._tp[(sa, da)]
        counts["tp_complete"] += 1
        if session.entry == _DM1:
            return self._dm1(session.frame_id, bytes(session.buf[: session.size]))
        if session.entry == _DI:
            return self._di(session.frame_id, bytes(session.buf[: session.size]))
        return self._decode(session.entry, session.frame_id, bytes(session.buf[: session.size]),
                            ts_ms)
