"""Live ETAs, the async edge (docs/dispatch.md, "Live ETAs"): one `RouteEtaTracker` per vehicle
on a live route, fed by the dispatch service after arrival detection; ETAs go to the hub
(`eta` on `dispatch` and `route:<id>`), late-risk changes through the alert store and the
alerts' hub topic. Vehicles without a live route cost nothing (the dispatch service only
calls for vehicles it tracks).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from geostream.clock import wall_ms

from ..store.base import AlertQuery
from .live_eta import RULE, LiveEta, RouteEtaTracker, late_risk_changes
from .model import Job, JobState, Route, Transition
from .snap import SnapError

log = logging.getLogger(__name__)

# Open late-risk alerts loaded at start (one per stop at most).
OPEN_LIMIT = 100_000


def _straight_line():
    """The travel-time source without roads; imported here, at the first live route, since
    the matrices need numpy, which a backend's start does not (tests/unit/backend/
    test_lazy_imports.py)."""
    from .matrix import StraightLineMatrix

    return StraightLineMatrix()


class EtaService:
    """`travel`: a callable giving the travel-time source (built at the first route: a road
    graph takes a moment to load); `publish(field, payload, vehicle, route_id)`: the hub's
    dispatch publication; `publish_alert(alert_json)`: the alerts' one; `clock`: the wall
    clock in ms (for changes no position brings: a route taken off the road)."""

    def __init__(self, store, travel: Callable | None = None,
                 publish: Callable[..., None] | None = None,
                 publish_alert: Callable[[dict], None] | None = None,
                 clock: Callable[[], int] = wall_ms):
        self.store = store
        self.clock = clock
        self._travel_factory = travel or _straight_line
        self._travel = None
        self._fallback_matrix = None
        self.publish = publish or (lambda field, payload, vehicle, route_id=None: None)
        self.publish_alert = publish_alert or (lambda alert: None)
        self._trackers: dict[str, RouteEtaTracker] = {}  # vehicle → its live route's
        self._open: dict[str, dict[str, object]] = {}  # vehicle → job id → open alert
        self._reload: set[str] = set()  # vehicles whose open alerts are read again (forget)
        self.stats: Counter = Counter()
        # notifications' ETA-change watch (backend/notify/service.py): `await on_eta(message)`
        self.on_eta: Callable | None = None

    @property
    def _fallback(self):
        """The straight line, for a route or vehicle off the roads (made at the first)."""
        if self._fallback_matrix is None:
            self._fallback_matrix = _straight_line()
        return self._fallback_matrix

    @property
    def travel(self):
        if self._travel is None:
            try:
                self._travel = self._travel_factory()
            except Exception as exc:  # a broken extract: ETAs on the straight line, said so
                log.warning("live ETAs on the straight line: %s", exc)
                self._travel = self._fallback
        return self._travel

    async def start(self) -> None:
        """The open late-risk alerts (so a restart closes them when they are over)."""
        for a in await self.store.list_alerts(AlertQuery(rule=RULE, state="open",
                                                         limit=OPEN_LIMIT)):
            self._open.setdefault(a.vehicle_id, {})[a.subject] = a

    def forget(self, vehicle: str) -> None:
        """A vehicle (re)connected: its open late-risk alerts are read again from the store
        at its next computation (another gateway process may have opened or closed some
        meanwhile; docs/scaling.md §4, "Who owns a vehicle")."""
        self._reload.add(vehicle)

    def tracker(self, vehicle: str) -> RouteEtaTracker | None:
        return self._trackers.get(vehicle)

    async def route_changed(self, route: Route, jobs: list[Job],
                            states: dict[str, JobState], live: bool) -> None:
        """A route was saved: track its vehicle (live) or stop (closing its alerts)."""
        old = self._trackers.get(route.vehicle_id)
        if old is not None and old.route_id == route.id:
            del self._trackers[route.vehicle_id]
        if not live:
            await self._settle(route.vehicle_id, None, self.clock())
            return
        by_id = {j.id: j for j in jobs}
        ordered = [by_id[jid] for jid in route.job_ids if jid in by_id]
        legs, basis = self._stop_legs(ordered)
        self._trackers[route.vehicle_id] = RouteEtaTracker(
            route.id, route.vehicle_id, ordered, legs, basis,
            {jid: (s, None) for jid, s in states.items()})

    def _at(self, t_ms: int):
        """The travel times for time `t_ms`: learned speeds of that hour of the week when the
        source has them (speeds.LearnedTravel), else the source itself."""
        travel = self.travel
        return travel.at(t_ms) if hasattr(travel, "at") else travel

    def _stop_legs(self, jobs: list[Job], t_ms: int | None = None):
        travel = self._at(self.clock() if t_ms is None else t_ms)
        if not jobs:
            return [], travel.basis
        points = [(j.place.point.lon, j.place.point.lat) for j in jobs]
        try:
            m = travel.matrix(points)
        except SnapError:  # a stop off the roads: the whole route on the straight line
            m = self._fallback.matrix(points)
        return m.seconds.tolist(), m.basis

    async def on_position(self, vehicle: str, t_ms: int, lat: float, lon: float,
                          now_ms: int) -> LiveEta | None:
        """The vehicle's newest committed position: recompute if due, publish, alert."""
        tr = self._trackers.get(vehicle)
        if tr is None or (tr.last is not None and t_ms <= tr.last.position_ms) \
                or not tr.due(t_ms, lat, lon):
            return None
        if hasattr(self.travel, "at"):  # learned speeds: the legs of this hour of the week
            from .speeds import hour_of_week

            hour = hour_of_week(t_ms)
            if getattr(tr, "hour", None) != hour:
                tr.legs, tr.basis = self._stop_legs(tr.jobs, t_ms)
                tr.hour = hour
        live = tr.compute(t_ms, lat, lon, now_ms,
                          lambda la, lo, job: self._first_leg(la, lo, job, t_ms))
        self.stats["computed"] += 1
        self.publish("eta", live.message(), vehicle, tr.route_id)
        if self.on_eta is not None:
            try:
                await self.on_eta(live.message())
            except Exception as exc:  # notifications must not stop the ETAs
                log.warning("ETA notifications: %s", exc)
        if vehicle in self._reload:
            self._open[vehicle] = {a.subject: a for a in await self.store.list_alerts(
                AlertQuery(vehicle=vehicle, rule=RULE, state="open", limit=OPEN_LIMIT))}
            self._reload.discard(vehicle)
        await self._settle(vehicle, tr, now_ms)
        return live

    async def on_transition(self, t: Transition, vehicle: str | None, now_ms: int) -> None:
        """A job's state changed: the next position recomputes; a stop done closes its
        alert now."""
        tr = self._trackers.get(vehicle) if vehicle is not None else None
        if tr is None or tr.route_id != t.route_id:
            return
        tr.set_state(t.job_id, t.to_state, t.at_ms)
        if t.job_id in self._open.get(vehicle, {}):
            await self._settle(vehicle, tr, now_ms)

    def _first_leg(self, lat: float, lon: float, job: Job, t_ms: int) -> float:
        points = [(lon, lat), (job.place.point.lon, job.place.point.lat)]
        try:
            travel = self._at(t_ms)
            if hasattr(travel, "leg"):  # roads: a tree to the stop, kept until it is reached
                return travel.leg(points[0], points[1])
            return float(travel.matrix(points).seconds[0, 1])
        except SnapError:  # the vehicle off the roads (a yard): the straight line to it
            self.stats["off_road"] += 1
            return float(self._fallback.matrix(points).seconds[0, 1])

    async def _settle(self, vehicle: str, tr: RouteEtaTracker | None, now_ms: int) -> None:
        """Bring the vehicle's late-risk alerts in line with its newest ETAs (none: close)."""
        open_ = self._open.get(vehicle, {})
        if tr is None:
            if not open_:
                return
            tr = RouteEtaTracker("", vehicle, [], [], "")
        changes = late_risk_changes(tr, tr.last, open_, now_ms)
        if not changes:
            return
        try:
            saved = await self.store.save_alerts(changes, [], now_ms)
        except Exception as exc:  # the next computation tries again
            self.stats["failures"] += 1
            log.warning("cannot save late-risk alerts of %s: %s", vehicle, exc)
            return
        for alert, created in saved:
            if alert.state == "open":
                self._open.setdefault(vehicle, {})[alert.subject] = alert
                self.stats["late_risk_opened"] += created
            else:
                self._open.get(vehicle, {}).pop(alert.subject, None)
            try:
                self.publish_alert(alert.as_json())
            except Exception as exc:
                log.warning("cannot publish alert %s: %s", alert.id, exc)
