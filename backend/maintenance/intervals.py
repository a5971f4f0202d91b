"""Service intervals: how far a vehicle is from its next service, and whether it is due.

Pure: the caller measures usage since the last service (intervals by km from the CAN odometer
or GPS odometry, by engine hours from a CAN signal, by days from the clock) and passes `now`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..queries import MAX_PLAUSIBLE_KMH, haversine_m
from .config import Interval

DAY_MS = 86_400_000
# ... and a gap longer than this (the vehicle was off or out of coverage) counts straight-line.
MAX_GAP_MS = 600_000
# What a person reads for each usage source: a distance integrated from GPS positions is an
# estimate (a few % off the odometer), and says so wherever it is shown.
SOURCE_LABELS = {
    "can-odometer": "odometer (CAN)",
    "gps": "GPS-integrated distance (no odometer signal)",
    "can-engine-hours": "engine hours (CAN)",
    "calendar": "calendar days",
    "none": "no measure (no signal, no positions)",
}
# The due list's order: the most urgent state first.
STATE_ORDER = {"overdue": 0, "due": 1, "unknown": 2, "ok": 3}


@dataclass(frozen=True)
class ServiceStatus:
    vehicle: str
    interval: str
    by: str
    every: float
    used: float | None  # units since the last service; None: no measure (no signal, no data)
    remaining: float | None
    state: str  # ok | due | overdue | unknown
    since_ms: int  # the last service (or the vehicle's creation)
    source: str  # can-odometer | gps | can-engine-hours | calendar | none

    def as_json(self) -> dict:
        def r(x):
            return None if x is None else round(x, 2)

        return {"vehicle": self.vehicle, "interval": self.interval, "by": self.by,
                "every": self.every, "used": r(self.used), "remaining": r(self.remaining),
                "state": self.state, "since_ms": self.since_ms, "source": self.source,
                "source_label": SOURCE_LABELS[self.source]}

    def urgency(self) -> tuple:
        """Sort key of the fleet's due list: state, then the share of the interval left."""
        share = 1.0 if self.remaining is None else self.remaining / self.every
        return (STATE_ORDER[self.state], share, self.vehicle, self.interval)


def gps_km(points: list[dict]) -> float:
    """Distance driven along time-ordered positions ({time_ms, lat, lon}), in km. A point
    reached from the last accepted one at an implausible speed is an outlier and skipped."""
    total, prev = 0.0, None
    for b in points:
        if prev is None:
            prev = b
            continue
        d = haversine_m(prev["lat"], prev["lon"], b["lat"], b["lon"])
        dt = b["time_ms"] - prev["time_ms"]
        if dt <= 0 or (dt <= MAX_GAP_MS and d / 1000 / (dt / 3_600_000) > MAX_PLAUSIBLE_KMH):
            continue
        total += d
        prev = b
    return total / 1000


def counter_delta(first: float | None, last: float | None) -> float | None:
    """Growth of a cumulative counter (odometer, engine hours); a reset counts from zero."""
    if first is None or last is None:
        return None
    return last - first if last >= first else last


def status(vehicle: str, interval: Interval, used: float | None, since_ms: int, now_ms: int,
           source: str) -> ServiceStatus:
    """The interval's state given the usage since `since_ms` (days come from the clock)."""
    if interval.by == "days":
        used, source = (now_ms - since_ms) / DAY_MS, "calendar"
    if used is None:
        return ServiceStatus(vehicle, interval.name, interval.by, interval.every, None, None,
                             "unknown", since_ms, "none")
    remaining = interval.every - used
    state = ("overdue" if remaining < 0 else "due" if remaining <= interval.due_within
             else "ok")
    return ServiceStatus(vehicle, interval.name, interval.by, interval.every, used, remaining,
                         state, since_ms, source)
