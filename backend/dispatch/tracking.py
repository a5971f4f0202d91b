"""Arrival detection for one vehicle on its active route, backfill-invariant (docs/dispatch.md).

`VehicleTrack` is pure: it folds the vehicle's positions through `geostream.arrivals`'
detector and keeps the detector's state at points of device time (checkpoints). Positions
newer than everything folded continue from the newest state (the live path); a batch with an
older position rewinds to the newest checkpoint before it, and the caller re-reads the
vehicle's stored positions after that checkpoint and folds them again. Since every committed
position is in the store, the fold equals in-order delivery, as the alert engine's does
(docs/alerts.md). `visits()` then says, per stop, what detection now holds; the job machine
(jobstate.py) turns changes of it into transitions.
"""

from __future__ import annotations

from collections.abc import Iterable

from geostream.arrivals import DEFAULT_DWELL_S, ArrivalDetector, StopEvent, Zone

from .jobstate import Visit
from .model import Job

# A checkpoint per 2 minutes of device time: a late position re-reads at most this much
# before it (plus what came after it); ~240 small states in an 8-hour shift.
CHECKPOINT_EVERY_MS = 120_000


def zone_for(job: Job, inside=None) -> Zone:
    """The detector's zone of a job's place: the geofence's own test (`inside`) when the job
    names one that exists, else the circle of its radius."""
    p = job.place
    return Zone(job.id, p.point.lat, p.point.lon, p.radius_m, inside)


def first_visits(events: Iterable[StopEvent]) -> dict[str, Visit]:
    """Per stop: its first arrival and the first departure after that (events in order)."""
    out: dict[str, Visit] = {}
    for e in events:
        v = out.get(e.stop_id)
        if e.kind == "arrival" and v is None:
            out[e.stop_id] = Visit((e.at_ms, e.lat, e.lon))
        elif e.kind == "departure" and v is not None and v.departed is None:
            out[e.stop_id] = Visit(v.arrived, (e.at_ms, e.lat, e.lon))
    return out


class VehicleTrack:
    """One vehicle's route: its zones, the detector's state and checkpoints, and the events
    so far. Positions before `since_ms` (the shift's start) are not used."""

    def __init__(self, route_id: str, zones: Iterable[Zone], since_ms: int,
                 dwell_s: float = DEFAULT_DWELL_S,
                 checkpoint_every_ms: int = CHECKPOINT_EVERY_MS):
        self.route_id = route_id
        self.zones = list(zones)
        self.since_ms = since_ms
        self.dwell_s = dwell_s
        self.every_ms = checkpoint_every_ms
        self._detector: ArrivalDetector | None = None  # after the newest position folded
        self._checkpoints: list[tuple[int, dict]] = []  # (covers every position ≤ t, state)
        self._events: list[StopEvent] = []
        self._visits: dict[str, Visit] = {}
        self.reported: dict[str, Visit] | None = {}  # what the job machine was last told

    @property
    def last_ms(self) -> int | None:
        return None if self._detector is None else self._detector.last_ms

    def is_live(self, t0: int) -> bool:
        """Whether positions from `t0` on can continue the newest state (all newer)."""
        return self.last_ms is not None and t0 > self.last_ms

    def rewind(self, t0: int) -> int:
        """Go back to the newest checkpoint before `t0`; returns the device time after which
        the caller must re-read and fold the stored positions (`since_ms - 1`: all)."""
        while self._checkpoints and self._checkpoints[-1][0] >= t0:
            self._checkpoints.pop()
        if self._checkpoints:
            t, state = self._checkpoints[-1]
        else:
            t, state = self.since_ms - 1, None
        self._detector = ArrivalDetector(self.zones, self.dwell_s, state)
        kept = [e for e in self._events if e.decided_ms <= t]
        if len(kept) != len(self._events):
            self._events = kept
            self._visits = first_visits(kept)
        return t

    def fold(self, positions: Iterable[tuple[int, float, float]]) -> None:
        """Positions (t_ms, lat, lon) in device-time order, all after what was folded."""
        d = self._detector
        if d is None:
            d = self._detector = ArrivalDetector(self.zones, self.dwell_s)
        last_cp = self._checkpoints[-1][0] if self._checkpoints else self.since_ms
        for t, lat, lon in positions:
            if t < self.since_ms:
                continue
            if d.last_ms is not None and t > d.last_ms and d.last_ms - last_cp >= self.every_ms:
                self._checkpoints.append((d.last_ms, d.state()))
                last_cp = d.last_ms
            d.feed(t, lat, lon)
        new = d.take_events()
        if new:
            self._events.extend(new)
            self._visits = first_visits(self._events)

    def events(self) -> list[StopEvent]:
        return list(self._events)

    def visits(self) -> dict[str, Visit]:
        """Per stop, what detection holds now (the same object until an event changes it)."""
        return self._visits
