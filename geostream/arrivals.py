"""Arrival and departure at stops, detected from positions: one pure fold, shared by the
backend (backend/dispatch/tracking.py) and the vehicle (the driver app's agent side).

`ArrivalDetector(stops, dwell_s, state)` takes one vehicle's positions with `feed(t, lat,
lon)` in device-time order (callers sort by `(time_ms, epoch, seq)`); `events()` returns the
arrivals and departures decided since it was made. A vehicle has **arrived** at a stop once its
positions stay inside the stop's zone for `dwell_s` (the arrival's time: the first of them);
it has **departed** once they stay outside the zone widened by `EXIT_FACTOR` for `dwell_s`
(the departure's time: the first of those). GNSS noise at the edge gives no event. A vehicle
first seen inside a stop arrives there after the dwell like any other.

`state()` is a small JSON-able value: a detector built from it continues exactly as this one
would, so a caller that keeps states at points of device time can re-fold from the one before
a late reading and obtain what in-order delivery gives (backfill invariance, as the alert
evaluator in backend/alerts does; docs/dispatch.md). No clock, no I/O, and nothing from
backend/: the agent imports it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# Default dwell: a vehicle passing by a stop at walking pace through a 50 m radius spends
# under a minute there; parking for a delivery takes longer.
DEFAULT_DWELL_S = 60.0
# Leaving needs the vehicle this much further out than the arrival radius (hysteresis: GNSS
# wander around a vehicle parked at the edge must not make it leave and arrive again).
EXIT_FACTOR = 1.5
# Mean Earth radius (IUGG), for great-circle distances.
EARTH_RADIUS_M = 6_371_008.8
# Metres per degree of latitude on that sphere (the 1 m margin where it is used covers the
# rounding of the two computations).
_M_PER_DEG_LAT = math.pi * EARTH_RADIUS_M / 180


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True)
class Zone:
    """A stop as the detector sees it: a circle, or (for a geofence) an inside test; `exit`
    is the wider test for leaving (defaults: the circle × EXIT_FACTOR, or `inside`)."""

    stop_id: str
    lat: float
    lon: float
    radius_m: float
    inside: Callable[[float, float], bool] | None = None
    outside: Callable[[float, float], bool] | None = None

    def _beyond(self, lat: float, lon: float, r: float) -> bool:
        """Farther than `r`. The north-south distance alone is a lower bound of the
        great-circle one, so most far stops are rejected without the haversine."""
        if abs(lat - self.lat) * _M_PER_DEG_LAT > r + 1.0:
            return True
        return distance_m(self.lat, self.lon, lat, lon) > r

    def entered(self, lat: float, lon: float) -> bool:
        if self.inside is not None:
            return self.inside(lat, lon)
        return not self._beyond(lat, lon, self.radius_m)

    def left(self, lat: float, lon: float) -> bool:
        if self.outside is not None:
            return self.outside(lat, lon)
        if self.inside is not None:
            return not self.inside(lat, lon)
        return self._beyond(lat, lon, self.radius_m * EXIT_FACTOR)


@dataclass(frozen=True)
class StopEvent:
    """An arrival or a departure. `(kind, stop_id, at_ms)` is its identity; `decided_ms` is the
    device time of the reading that settled it (the dwell's end)."""

    kind: str  # "arrival" | "departure"
    stop_id: str
    at_ms: int
    lat: float
    lon: float
    decided_ms: int

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.kind, self.stop_id, self.at_ms)


class ArrivalDetector:
    """One vehicle's positions folded into stop events (see the module docstring)."""

    def __init__(self, zones: Iterable[Zone], dwell_s: float = DEFAULT_DWELL_S,
                 state: dict | None = None, owned: bool = False):
        """`owned`: the caller hands `state` over (changed in place, not copied)."""
        self.zones = list(zones)
        self.dwell_ms = round(dwell_s * 1000)
        s = (state if owned else copy.deepcopy(state)) if state else {}
        # per stop: "in" (confirmed inside), "cand" ([t, lat, lon] of the first reading on the
        # other side, None if none); "t": the newest device time fed
        self._s: dict = {"stops": s.get("stops", {}), "t": s.get("t")}
        self._events: list[StopEvent] = []

    def state(self) -> dict:
        return copy.deepcopy(self._s)

    @property
    def last_ms(self) -> int | None:
        """The device time of the newest position fed (or in the state it started from)."""
        return self._s["t"]

    def feed(self, t_ms: int, lat: float, lon: float) -> None:
        """One position; `t_ms` must not be older than the previous one (device-time order)."""
        if self._s["t"] is not None and t_ms < self._s["t"]:
            raise ValueError("positions must be fed in device-time order")
        self._s["t"] = t_ms
        stops = self._s["stops"]
        for z in self.zones:
            st = stops.setdefault(z.stop_id, {"in": False, "cand": None})
            crossing = z.left(lat, lon) if st["in"] else z.entered(lat, lon)
            if not crossing:  # on the confirmed side (or in the hysteresis band): noise
                st["cand"] = None
                continue
            if st["cand"] is None:
                st["cand"] = [t_ms, lat, lon]
            if t_ms - st["cand"][0] >= self.dwell_ms:
                t0, lat0, lon0 = st["cand"]
                st["in"], st["cand"] = not st["in"], None
                kind = "arrival" if st["in"] else "departure"
                self._events.append(StopEvent(kind, z.stop_id, t0, lat0, lon0, t_ms))

    def events(self) -> list[StopEvent]:
        """The events decided since this detector was made, in device-time order of decision."""
        return list(self._events)

    def take_events(self) -> list[StopEvent]:
        """The events decided since the last call (or since it was made), handed over."""
        out, self._events = self._events, []
        return out

    def inside(self, stop_id: str) -> bool:
        """Whether the vehicle is (confirmed) at this stop now."""
        return bool(self._s["stops"].get(stop_id, {}).get("in"))


def detect(zones: Iterable[Zone], positions: Iterable[tuple[int, float, float]],
           dwell_s: float = DEFAULT_DWELL_S, state: dict | None = None) -> list[StopEvent]:
    """The events of a device-time-ordered sequence of (t_ms, lat, lon), from `state`."""
    d = ArrivalDetector(zones, dwell_s, state)
    for t, lat, lon in positions:
        d.feed(t, lat, lon)
    return d.events()
