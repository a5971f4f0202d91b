"""What the agent's sources produce: small immutable readings, and their wire form.

The wire form is the reading map of docs/protocol.md §4 without `q`; the journal assigns `q`.
Field names and wire keys are declared once, in `geostream.schema`: a Position's optional
attributes are `POSITION_QUANTITIES`' names, in that order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from geostream import schema


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
        return schema.position_wire(self.ts_ms, self.lat, self.lon, position_values(self))


@dataclass(frozen=True, slots=True)
class Signals:
    """Decoded CAN signal values observed together on one bus at `ts_ms` (host receive time)."""

    ts_ms: int
    bus: str
    values: dict[str, float | int | str] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {schema.TIME: self.ts_ms, schema.KIND: schema.SIGNALS, schema.BUS: self.bus,
                schema.SIGNAL_VALUES: dict(self.values)}


@dataclass(frozen=True, slots=True)
class Event:
    """Something the backend must know about the agent itself (dropped readings, new journal)."""

    ts_ms: int
    name: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {schema.TIME: self.ts_ms, schema.KIND: schema.EVENT, schema.EVENT_NAME: self.name,
                schema.EVENT_DATA: dict(self.data)}


@dataclass(frozen=True, slots=True)
class Action:
    """A driver's action taken on the vehicle (docs/protocol.md §4 "act"): the action as the
    driver app's API takes it, carried by the journal to the one applier in the backend."""

    ts_ms: int
    action: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        return {schema.TIME: self.ts_ms, schema.KIND: schema.ACTION,
                schema.ACTION_BODY: dict(self.action)}


Reading = Position | Signals | Event | Action
# a Position's optional values, in the schema's order
position_values = attrgetter(*(q.name for q in schema.POSITION_QUANTITIES))
