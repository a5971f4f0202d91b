"""Live ETAs of one route, and its late-risk alerts (docs/dispatch.md, "Live ETAs"). Pure: the
route's jobs, positions, job states and `now` in; ETAs, hub messages and alert changes out.

Cheap by construction: the stop-to-stop legs are computed once per route (one matrix of its
stops, kept), so a recomputation costs one two-point leg (position → next open stop) and a
walk along the stops. It runs only when it is due (`RouteEtaTracker.due`): at most once per
`ETA_EVERY_MS` of device time while the vehicle keeps moving along, sooner when it moved
`ETA_MOVED_M` or a stop changed state, never more often than `ETA_MIN_GAP_MS`.

A stop is at **late risk** when its ETA leaves its window (service would begin after its last
window closes): `late_risk_changes` opens one alert per such stop (rule `late_risk`, subject
the job id) and closes it when the ETA is back inside the window, or the stop is done or off
the route.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..alerts.evaluate import Episode
from .eta import RouteEta, StopEta, etas_along
from .model import Job, JobState

RULE = "late_risk"
# At most one recomputation per vehicle per 30 s of device time while it drives along its
# route: an ETA a customer sees moves by its spread (≥ a minute) at most in that time.
ETA_EVERY_MS = 30_000
# Sooner when the vehicle moved this far since the last one (a turn off the planned street).
ETA_MOVED_M = 300.0
# Never more often than this, whatever happens (a burst of stop changes, a chatty tracker).
ETA_MIN_GAP_MS = 5_000
# Confidence is 1 / (1 + spread / CONFIDENCE_SCALE_S): a ±1 min ETA is 0.83, ±5 min 0.5.
CONFIDENCE_SCALE_S = 300.0
# A position this old when the ETA is computed widens every spread by its age (the vehicle
# may have moved meanwhile); younger ones count as now.
FRESH_POSITION_MS = 10_000
# States after which a stop needs no ETA (the vehicle is done there).
DONE = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.SKIPPED, JobState.CANCELLED,
                  JobState.UNASSIGNED})


def confidence(spread_s: float) -> float:
    return round(1.0 / (1.0 + spread_s / CONFIDENCE_SCALE_S), 2)


def _distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Equirectangular distance: exact enough for "did it move 300 m"."""
    x = math.radians(lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2))
    y = math.radians(lat2 - lat1)
    return 6_371_000.0 * math.hypot(x, y)


@dataclass(frozen=True)
class LiveEta:
    """One computation: the ETAs of the open stops, from the position at `position_ms`."""

    route_id: str
    vehicle: str
    position_ms: int
    lat: float
    lon: float
    eta: RouteEta

    def message(self) -> dict:
        """The hub's `eta` payload (docs/protocol.md §9)."""
        age_s = max(0, (self.eta.computed_ms - self.position_ms) // 1000)
        return {"route_id": self.route_id, "vehicle": self.vehicle,
                "computed_ms": self.eta.computed_ms, "position_ms": self.position_ms,
                "basis": f"{self.eta.basis}; from the position at {self.position_ms} ms"
                         + (f" ({age_s} s old)" if age_s else ""),
                "stops": [_stop_json(s) for s in self.eta.stops]}


def _stop_json(s: StopEta) -> dict:
    return {"job_id": s.job_id, "eta_ms": s.arrival_ms, "begin_ms": s.begin_ms,
            "departure_ms": s.departure_ms, "wait_s": s.wait_s, "spread_s": s.spread_s,
            "confidence": confidence(s.spread_s), "late": s.late}


class RouteEtaTracker:
    """One live route: its jobs in visiting order, the stop-to-stop legs (`legs[i][j]`,
    seconds, from the route's one matrix of stops), each stop's state, and when the ETAs
    were last computed."""

    def __init__(self, route_id: str, vehicle: str, jobs: list[Job], legs, basis: str,
                 states: dict[str, tuple[JobState, int | None]] | None = None):
        self.route_id, self.vehicle, self.jobs = route_id, vehicle, list(jobs)
        self.legs, self.basis = legs, basis
        # job → (state, when it arrived if arrived)
        self.states: dict[str, tuple[JobState, int | None]] = dict(states or {})
        self.last: LiveEta | None = None
        self.dirty = True  # a stop changed since the last computation

    def set_state(self, job_id: str, state: JobState, at_ms: int | None = None) -> None:
        self.states[job_id] = (state, at_ms if state is JobState.ARRIVED else None)
        self.dirty = True

    def open_stops(self) -> list[int]:
        """Indexes of the stops still to serve, in order (an arrived stop is being served)."""
        return [i for i, j in enumerate(self.jobs)
                if self.states.get(j.id, (JobState.ASSIGNED, None))[0] not in DONE]

    def due(self, t_ms: int, lat: float, lon: float) -> bool:
        """Whether a position at device time `t_ms` should recompute the ETAs."""
        last = self.last
        if last is None:
            return True
        gap = t_ms - last.position_ms
        if gap < ETA_MIN_GAP_MS:
            return False
        return (self.dirty or gap >= ETA_EVERY_MS
                or _distance_m(last.lat, last.lon, lat, lon) >= ETA_MOVED_M)

    def compute(self, t_ms: int, lat: float, lon: float, now_ms: int,
                first_leg_s) -> LiveEta:
        """The ETAs from (lat, lon) at `t_ms`; `first_leg_s(lat, lon, job)`: driving seconds
        from the position to a stop (the caller's travel source, one two-point matrix).
        A stop being served (arrived) keeps the vehicle until its service ends."""
        idx = self.open_stops()
        busy_until = None
        legs: list[float] = []
        if idx:
            state, arrived_ms = self.states.get(self.jobs[idx[0]].id, (None, None))
            if state is JobState.ARRIVED:
                job = self.jobs[idx[0]]
                busy_until = (arrived_ms or t_ms) + job.service_s * 1000
                idx = idx[1:]
                legs = ([float(self.legs[self._index(job.id)][idx[0]])] if idx else [])
            else:
                legs = [float(first_leg_s(lat, lon, self.jobs[idx[0]]))]
            legs += [float(self.legs[a][b]) for a, b in zip(idx, idx[1:], strict=False)]
        stops = [self.jobs[i] for i in idx]
        start = max(now_ms, t_ms)
        eta = etas_along(start, stops, legs, self.basis, busy_until)
        age_s = max(0, now_ms - t_ms - FRESH_POSITION_MS) // 1000
        if age_s:
            eta = RouteEta(eta.computed_ms, eta.basis, tuple(
                StopEta(s.job_id, s.arrival_ms, s.begin_ms, s.departure_ms, s.wait_s,
                        s.spread_s + age_s, s.late) for s in eta.stops))
        self.last = LiveEta(self.route_id, self.vehicle, t_ms, lat, lon, eta)
        self.dirty = False
        return self.last

    def _index(self, job_id: str) -> int:
        return next(i for i, j in enumerate(self.jobs) if j.id == job_id)

    def window_end(self, job_id: str) -> int | None:
        job = self.jobs[self._index(job_id)]
        return max((w.end_ms for w in job.windows), default=None)


def late_risk_changes(tracker: RouteEtaTracker, live: LiveEta | None, open_alerts: dict,
                      now_ms: int) -> list[Episode]:
    """Alert changes for one route: open `late_risk` for each stop whose ETA is late and has
    none open; close those whose stop is back in its window, done, or off the route.
    `open_alerts`: job id → the open StoredAlert of this route's vehicle for that job."""
    changes: list[Episode] = []
    on_route = {j.id for j in tracker.jobs}
    served = on_route - {tracker.jobs[i].id for i in tracker.open_stops()}
    # the newest ETAs, less the stops done since (a person may finish one between positions)
    late = {s.job_id: s for s in live.eta.stops
            if s.late and s.job_id not in served} if live is not None else {}
    for job_id, a in sorted(open_alerts.items()):
        if job_id in late:
            continue
        state = tracker.states.get(job_id, (JobState.ASSIGNED, None))[0]
        why = ("off the route" if job_id not in on_route else
               f"stop {state.value}" if state in DONE or state is JobState.ARRIVED else
               "ETA back within the window")
        changes.append(Episode(a.rule, a.vehicle_id, a.start_ms, max(a.start_ms, now_ms),
                               a.subject, a.peak, a.lat, a.lon,
                               {**a.detail, "closed_because": why}, now_ms))
    for job_id, s in sorted(late.items()):
        if job_id in open_alerts:
            continue
        end = tracker.window_end(job_id)
        late_s = (s.arrival_ms - end) // 1000 if end is not None else 0
        changes.append(Episode(RULE, tracker.vehicle, now_ms, None, job_id, float(late_s),
                               live.lat, live.lon,
                               {"route_id": tracker.route_id, "eta_ms": s.arrival_ms,
                                "window_end_ms": end, "late_s": late_s,
                                "spread_s": s.spread_s, "basis": live.eta.basis}, now_ms))
    return changes
