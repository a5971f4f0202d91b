"""Arrivals and departures detected on the vehicle (docs/protocol.md §4 "Detections on the
vehicle"; docs/dispatch.md "Detection on the vehicle"): the body of such an `act` reading,
validated (hostile until here). Pure.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .model import ID_PATTERN

# The action kinds of detections, as the agent writes them (agent/stops.py).
ARRIVAL, DEPARTURE = "arrival-detected", "departure-detected"
KINDS = (ARRIVAL, DEPARTURE)
# The key: as a driver action's (backend/driver/actions.py), so one envelope check fits both.
KEY_RE = re.compile(r"[A-Za-z0-9_.:-]{8,64}")
FIELDS = frozenset({"key", "device_id", "device_seq", "kind", "route_id", "job_id", "at_ms",
                    "lat", "lon", "decided_ms"})
# A device time beyond 2^53 ms (year 287,396) is no GNSS time; JSON keeps integers exact
# up to here.
MAX_MS = 2**53 - 1


class DetectionRefused(ValueError):
    """A detection body that is not one (the message says which field)."""


@dataclass(frozen=True)
class Detection:
    """An arrival or a departure the vehicle's detector decided: `at_ms` is the device time
    of its first fix inside (outside) the stop, `decided_ms` that of the fix that settled it."""

    key: str
    kind: str
    route_id: str
    job_id: str
    at_ms: int
    lat: float
    lon: float
    decided_ms: int


def is_detection(body: object) -> bool:
    """Whether an `act` reading's body is a detection (else: a driver's action)."""
    return isinstance(body, dict) and body.get("kind") in KINDS


def parse_detection(d: dict) -> Detection:
    unknown = set(d) - FIELDS
    if unknown:
        raise DetectionRefused(f"unknown field(s): {', '.join(sorted(map(str, unknown)))[:200]}")
    if not isinstance(d.get("key"), str) or not KEY_RE.fullmatch(d["key"]):
        raise DetectionRefused("key: 8–64 of A-Z a-z 0-9 _ . : -")
    for name in ("route_id", "job_id"):
        v = d.get(name)
        if not isinstance(v, str) or not ID_PATTERN.match(v) or v.endswith("\n"):
            raise DetectionRefused(f"{name}: 1–64 of A-Z a-z 0-9 _ . -")
    for name in ("at_ms", "decided_ms"):
        v = d.get(name)
        if type(v) is not int or not 0 <= v <= MAX_MS:
            raise DetectionRefused(f"{name}: a whole number of ms from 0 to {MAX_MS}")
    if d["decided_ms"] < d["at_ms"]:
        raise DetectionRefused("decided_ms: not before at_ms")
    lat, lon = d.get("lat"), d.get("lon")
    if not all(type(v) in (int, float) and math.isfinite(v) for v in (lat, lon)) \
            or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise DetectionRefused("lat, lon: a position in range")
    return Detection(d["key"], d["kind"], d["route_id"], d["job_id"], d["at_ms"], float(lat),
                     float(lon), d["decided_ms"])
