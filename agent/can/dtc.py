"""Sans-IO diagnostic trouble codes: J1939 DM1 parsing, OBD-II DTC parsing, and the change
tracker that turns repeated reports into one `dtc` event per change (docs/protocol.md §4).

DM1 (PGN 65226, SAE J1939-73): byte 0 the lamps (2 bits each: MIL, red stop, amber warning,
protect), byte 1 their flash state, then 4 bytes per DTC: SPN (19 bits, conversion method 0),
FMI (5 bits), CM (1 bit), occurrence count (7 bits). More than one DTC needs the transport
protocol (BAM), which the decoder reassembles.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..readings import Event

PGN_DM1 = 0xFECA
# An all-zero DTC slot (SPN 0, FMI 0) means "no active DTC"; 0xFF bytes are padding.
_NO_DTC = (0, 0)
_LAMPS = (("mil", 6), ("rsl", 4), ("awl", 2), ("pl", 0))
OBD_LETTERS = "PCBU"


@dataclass(frozen=True, slots=True)
class Dm1:
    """One DM1 message from source address `src`."""

    src: int
    lamps: dict
    dtcs: tuple  # ({"spn", "fmi", "oc"} maps), ordered by (spn, fmi)


def parse_dm1(src: int, data: bytes) -> Dm1 | None:
    """A DM1 payload (8 bytes single frame, or the reassembled BAM) → Dm1; None if short."""
    if len(data) < 6:
        return None
    lamps = {name: (data[0] >> shift) & 3 for name, shift in _LAMPS}
    found = {}
    for i in range(2, len(data) - 3, 4):
        b0, b1, b2, b3 = data[i:i + 4]
        if b0 == b1 == b2 == b3 == 0xFF:
            continue
        spn = b0 | (b1 << 8) | ((b2 >> 5) << 16)
        fmi = b2 & 0x1F
        if (spn, fmi) == _NO_DTC:
            continue
        found.setdefault((spn, fmi), {"spn": spn, "fmi": fmi, "oc": b3 & 0x7F})
    return Dm1(src, lamps, tuple(found[k] for k in sorted(found)))


def parse_obd_dtcs(payload: bytes) -> tuple:
    """Mode 03/07 answer payload after the service byte (and, on CAN, the count byte) →
    ({"code": "P0301"}, ...) in order, without 0000 padding and duplicates."""
    codes = []
    for i in range(0, len(payload) - 1, 2):
        a, b = payload[i], payload[i + 1]
        if a == b == 0:
            continue
        code = f"{OBD_LETTERS[a >> 6]}{(a >> 4) & 3}{a & 0xF:X}{b:02X}"
        if code not in codes:
            codes.append(code)
    return tuple({"code": c} for c in codes)


class DtcTracker:
    """Remembers each controller's last set; `update` returns an Event only on a change."""

    def __init__(self, bus: str):
        self.bus = bus
        self._last: dict[tuple, frozenset] = {}
        self._sets: dict[tuple, dict] = {}  # each controller's latest set, for dtc.read
        self.counts = {"dtc_reports": 0, "dtc_events": 0}

    def current(self) -> list[dict]:
        """Each controller's latest set (the `dtc` event's data without `bus`, with `ts`)."""
        return [dict(v) for _, v in sorted(self._sets.items())]

    def update(self, ts_ms: int, proto: str, src: int, which: str, dtcs: tuple,
               lamps: dict | None = None) -> Event | None:
        self.counts["dtc_reports"] += 1
        ident = frozenset((d["spn"], d["fmi"]) if "spn" in d else d["code"] for d in dtcs)
        key = (proto, src, which)
        self._sets[key] = {"proto": proto, "src": src, "set": which, "ts": ts_ms,
                           "dtcs": [dict(d) for d in dtcs],
                           **({"lamps": dict(lamps)} if lamps is not None else {})}
        if self._last.get(key) == ident:
            return None
        if key not in self._last and not ident:
            self._last[key] = ident
            return None  # a controller's first report, with nothing active: no news
        self._last[key] = ident
        self.counts["dtc_events"] += 1
        data = {"bus": self.bus, "proto": proto, "src": src, "set": which,
                "dtcs": [dict(d) for d in dtcs]}
        if lamps is not None:
            data["lamps"] = dict(lamps)
        return Event(ts_ms, "dtc", data)
