"""Arrivals and departures detected on the vehicle (docs/protocol.md §4 "Detections on the
vehicle"): the agent's own fixes folded through the one detector, `geostream.arrivals`, for
the routes kept in its mailbox (agent/mailbox.py).

`VehicleStops` is pure: built from the routes and the saved state, it takes the positions of
one journal commit and returns the detections as driver-action bodies (`act` readings), and
the state to save. `StopWatch` is its edge in the journal (agent/journal.py): it runs inside
the journal's commit transaction, so the state saved, the positions committed and the
detections journaled are one atomic step — after kill -9 or a power cut the fold continues
from exactly the positions the journal holds: no arrival twice, none lost.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Iterable
from typing import Any

from geostream.arrivals import DEFAULT_DWELL_S, ArrivalDetector, Zone

from .readings import Action, Position, Reading

# The action kinds of detections (docs/protocol.md §4); the backend's driver-action applier
# of revision 2 refuses them ("unknown field"), keeping the reading: nothing is lost.
ARRIVAL, DEPARTURE = "arrival-detected", "departure-detected"
KIND_OF = {"arrival": ARRIVAL, "departure": DEPARTURE}
# The device id of the vehicle's detector in a detection's envelope (the driver apps' device
# ids are theirs; a detection is never applied as a driver's action).
DEVICE_ID = "vehicle-detector"
# The row of agent_state holding the detectors' state (JSON).
STATE_KEY = "stop_watch"
# Bounds of what a route from the downlink may ask of the detector (hostile until here): the
# dwell of docs/dispatch.md's detector, and the job model's radius bounds.
MIN_DWELL_S, MAX_DWELL_S = 1.0, 3600.0
MIN_RADIUS_M, MAX_RADIUS_M = 5.0, 5000.0


def detection_key(route_id: str, stop_id: str, kind: str, at_ms: int) -> str:
    """A detection's idempotency key: its identity (route, stop, kind, device time)."""
    h = hashlib.sha256(f"{route_id}\0{stop_id}\0{kind}\0{at_ms}".encode()).hexdigest()
    return "det:" + h[:40]


def route_zones(route: dict) -> tuple[list[Zone], float, int]:
    """The zones of a route as route.set carried it (stops with `lat`, `lon` and `radius_m`;
    a stop without them — a geofence, or cut for size — is left to the backend's detector),
    its dwell (s) and its shift's start (ms; positions before are not used)."""
    zones = []
    for s in route.get("stops") or ():
        if not isinstance(s, dict):
            continue
        job, lat, lon, r = s.get("job_id"), s.get("lat"), s.get("lon"), s.get("radius_m")
        if not (type(job) is str and job and all(
                type(v) in (int, float) and math.isfinite(v) for v in (lat, lon, r))):
            continue
        if -90 <= lat <= 90 and -180 <= lon <= 180 and MIN_RADIUS_M <= r <= MAX_RADIUS_M:
            zones.append(Zone(job, float(lat), float(lon), float(r)))
    dwell = route.get("dwell_s", DEFAULT_DWELL_S)
    if type(dwell) not in (int, float) or not MIN_DWELL_S <= dwell <= MAX_DWELL_S:
        dwell = DEFAULT_DWELL_S
    shift = route.get("shift")
    start = shift.get("start_ms") if isinstance(shift, dict) else None
    return zones, float(dwell), start if type(start) is int else 0


class VehicleStops:
    """The detectors of the vehicle's routes. `routes`: route_id → route body; `state` as
    `state()` returned it (None: nothing detected yet)."""

    def __init__(self, routes: dict[str, dict], state: dict | None = None):
        state = state or {}
        self.seq: int = state.get("seq", 0)  # the detections' device_seq so far
        self._detectors: dict[str, ArrivalDetector] = {}
        self._start: dict[str, int] = {}
        saved = state.get("routes", {})
        for rid, route in routes.items():
            zones, dwell, start = route_zones(route)
            self._detectors[rid] = ArrivalDetector(zones, dwell, saved.get(rid))
            self._start[rid] = start

    def feed(self, positions: Iterable[tuple[int, float, float]]) -> list[Action]:
        """Positions (t_ms, lat, lon), any order: each route's detector takes those newer
        than what it folded (a fix older than that, e.g. a receiver replaying, is skipped).
        Returns the detections as `act` readings, in order of decision."""
        out: list[Action] = []
        ordered = sorted(positions)
        for rid, d in self._detectors.items():
            for t, lat, lon in ordered:
                if t < self._start[rid] or (d.last_ms is not None and t < d.last_ms):
                    continue
                d.feed(t, lat, lon)
            for e in d.take_events():
                self.seq += 1
                kind = KIND_OF[e.kind]
                out.append(Action(e.at_ms, {
                    "key": detection_key(rid, e.stop_id, e.kind, e.at_ms),
                    "device_id": DEVICE_ID, "device_seq": self.seq, "kind": kind,
                    "route_id": rid, "job_id": e.stop_id, "at_ms": e.at_ms, "lat": e.lat,
                    "lon": e.lon, "decided_ms": e.decided_ms}))
        return out

    def state(self) -> dict:
        return {"seq": self.seq, "routes": {rid: d.state() for rid, d in self._detectors.items()}}


class StopWatch:
    """`VehicleStops` inside the journal's commit transaction (`fold`, called by
    `Journal._commit` with its connection in a transaction). Holds nothing between calls but
    parsed routes: the state lives in the journal file, so a rolled-back commit (disk trouble)
    leaves it as it was."""

    def __init__(self) -> None:
        self._routes: dict[str, tuple[int, dict]] = {}  # route_id → (version, body)
        self.detected = 0
        # the detectors after the last fold, with the route versions and the state text they
        # wrote: reused while the file holds that very text (a commit that rolled back left
        # the older one there, so they are rebuilt from it); saves rebuilding them per commit
        self._last: tuple[dict[str, int], str, VehicleStops] | None = None

    @staticmethod
    def prepare(db: sqlite3.Connection) -> None:
        """Create the vehicle's tables in the journal file (its own connection, at open)."""
        from .vehicle_db import SCHEMA

        db.executescript(SCHEMA)

    def _current_routes(self, db: sqlite3.Connection) -> dict[str, dict]:
        have = dict(db.execute("SELECT route_id, version FROM mailbox_routes"))
        for rid in list(self._routes):
            if rid not in have:
                del self._routes[rid]
        for rid, version in have.items():
            if self._routes.get(rid, (None,))[0] != version:
                (body,) = db.execute("SELECT body FROM mailbox_routes WHERE route_id=?",
                                     (rid,)).fetchone()
                self._routes[rid] = (version, json.loads(body))
        return {rid: body for rid, (_, body) in self._routes.items()}

    def fold(self, db: sqlite3.Connection, readings: Iterable[Reading]) -> list[Action]:
        """The commit's positions through the detectors; the state is written with `db`
        (in the caller's transaction). Returns the detections to journal in the same commit."""
        positions = [(r.ts_ms, r.lat, r.lon) for r in readings if type(r) is Position]
        if not positions:
            return []
        routes = self._current_routes(db)
        if not routes:
            return []
        row = db.execute("SELECT value FROM agent_state WHERE key=?", (STATE_KEY,)).fetchone()
        versions = {rid: v for rid, (v, _) in self._routes.items()}
        last = self._last
        if last is not None and row is not None and last[0] == versions and last[1] == row[0]:
            stops = last[2]
        else:
            saved: dict[str, Any] = json.loads(row[0]) if row else {}
            stops = VehicleStops(routes, saved)
        self._last = None  # until this commit's state is written
        found = stops.feed(positions)
        text = json.dumps(stops.state())
        db.execute("INSERT INTO agent_state (key, value) VALUES (?, ?) ON CONFLICT (key) "
                   "DO UPDATE SET value=excluded.value", (STATE_KEY, text))
        self._last = (versions, text, stops)
        self.detected += len(found)
        return found
