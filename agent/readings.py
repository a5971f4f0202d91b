"""What the agent's sources produce: small immutable readings, and their wire form.

The wire form is the reading map of docs/protocol.md §4 without `q`; the journal assigns `q`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Position:
    """One GNSS fix epoch. `ts_ms` is GNSS (UTC) time, never the host clock."""

    ts_ms: int
    lat: float
    lon: float
    alt_m: float | None = None
    speed_kmh: float | None = None
    course_deg: float | None = None
    fix: int = 1  # GGA quality: 1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float, 6 dead reckoning
    mode: int | None = None  # GSA/GNS mode: 2 = 2D, 3 = 3D
    sats: int | None = None
    hdop: float | None = None
    clock_offset_ms: int | None = None  # host clock minus GNSS time when the fix arrived

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ts": self.ts_ms, "k": "pos", "lat": self.lat, "lon": self.lon}
        for key, value in (
            ("alt", self.alt_m), ("spd", self.speed_kmh), ("crs", self.course_deg),
            ("fix", self.fix), ("mode", self.mode), ("sat", self.sats), ("hdop", self.hdop),
            ("clk", self.clock_offset_ms),
        ):
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class Signals:
    """Decoded CAN signal values observed together on one bus at `ts_ms` (host receive time)."""

    ts_ms: int
    bus: str
    values: dict[str, float | int | str] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {"ts": self.ts_ms, "k": "can", "bus": self.bus, "sig": dict(self.values)}


@dataclass(frozen=True, slots=True)
class Event:
    """Something the backend must know about the agent itself (dropped readings, new journal)."""

    ts_ms: int
    name: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {"ts": self.ts_ms, "k": "evt", "name": self.name, "data": dict(self.data)}


Reading = Position | Signals | Event
