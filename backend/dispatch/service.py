"""The dispatch service: the async edge around the pure parts (job machine, CSV import,
arrival tracking) — the store, the hub and the gateway's per-batch path. REST, the CLI and
the planner's approval call it; the gateway calls `on_committed` after each commit.

Every change is a recorded transition decided by `JobMachine` on the job's stored history and
written with `record_transitions`, which refuses it if the job moved meanwhile (then it is
decided again on the new history): two backends, a retry or a repeated request never record a
change twice or on top of one they did not see.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable

from . import codec
from .csvimport import parse_jobs_csv
from .jobstate import DETECTOR, JobMachine, Visit, transition_id
from .model import Actor, ActorKind, Job, JobRecord, JobState, Route, RouteStatus, Transition
from .storage import JobQuery, StaleState
from .tracking import VehicleTrack, zone_for

log = logging.getLogger(__name__)

S = JobState
# Routes whose vehicles' positions are watched for arrivals.
LIVE_ROUTES = (RouteStatus.DISPATCHED.value, RouteStatus.ACTIVE.value)
# Jobs whose contents a dispatcher may still edit: not yet started.
EDITABLE = (S.UNASSIGNED, S.ASSIGNED)
# A decision retried this often when the job keeps moving under it (another backend, a
# person at the same moment); then the caller gets StaleState.
DECIDE_ATTEMPTS = 3
# "No upper bound" for the store's position query (device time, ms): the year ~3000, within
# PostgreSQL's timestamptz and interval ranges.
_FOREVER_MS = 32_503_680_000_000


class DispatchError(ValueError):
    """A request that cannot be done as asked (a sentence saying why); `status`: the HTTP
    status that fits (404 unknown, 409 conflicting)."""

    def __init__(self, text: str, status: int = 409):
        super().__init__(text)
        self.status = status


class Dispatcher:
    def __init__(self, store, publish: Callable[..., None] | None = None,
                 dwell_s: float | None = None, complete_on_departure: bool = True,
                 etas=None):
        self.store = store
        # live ETAs and late-risk alerts of the tracked vehicles (eta_service.EtaService)
        self.etas = etas
        self.publish = publish or (lambda field, payload, vehicle, route_id=None: None)
        self.dwell_s = dwell_s
        self.complete_on_departure = complete_on_departure
        self._tracks: dict[str, VehicleTrack] = {}  # vehicle → its live route's track
        self._vehicle_of: dict[str, str] = {}  # live route id → vehicle
        self._locks: dict[str, asyncio.Lock] = {}
        # vehicles that (re)connected: their track starts again from the store (forget)
        self._rewind: set[str] = set()
        self.stats: Counter = Counter()
        # re-planning on events (replanner.Replanner.on_event): ("job_added", job),
        # ("transition", t, on_live_route), ("request", cause, unavailable)
        self.on_event: Callable[..., None] | None = None

    def live_vehicles(self) -> set[str]:
        """The vehicles on a live (dispatched or active) route, as tracked here."""
        return set(self._tracks)

    def request_replan(self, cause: str, unavailable: Iterable[str] = ()) -> None:
        """Ask for a re-plan proposal of the routes under way because of `cause` (a sentence,
        e.g. "job j7 cancelled by the shop integration"): it runs shortly (events close
        together make one), and its proposal waits for a dispatcher's approval. Never
        raises; without a planner nothing happens."""
        self._event("request", cause, tuple(unavailable))

    def _event(self, kind: str, *args) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(kind, *args)
        except Exception as exc:  # a re-plan trigger never breaks the change that fired it
            log.warning("re-plan trigger %s failed: %s", kind, exc)

    # --- jobs -------------------------------------------------------------------------------

    async def add_jobs(self, jobs: list[Job], now_ms: int) -> list[str]:
        """Store new jobs (all or none, see the store's add_jobs); the ids that were new."""
        new = await self.store.add_jobs(jobs, now_ms)
        by_id = {j.id: j for j in jobs}
        for jid in new:
            self.publish("job", {"id": jid, "state": S.UNASSIGNED.value, "route_id": None},
                         None)
            self._event("job_added", by_id[jid])
        return new

    async def import_csv(self, data: bytes | str, now_ms: int) -> dict:
        """A CSV file of jobs (csvimport.py): ImportRefused with every problem, or all
        stored. Pairs may name jobs stored before."""
        first = parse_jobs_csv(data, ())
        pairs = {j.pair for j in first if j.pair} - {j.id for j in first}
        existing = [r.job for r in [await self.store.job(p) for p in sorted(pairs)] if r]
        jobs = parse_jobs_csv(data, existing) if pairs else first
        new = await self.add_jobs(jobs, now_ms)
        return {"imported": len(new), "unchanged": len(jobs) - len(new), "ids": new}

    async def update_job(self, job: Job, now_ms: int) -> JobRecord:
        """Replace a job's contents while it is not started (its state and route stay)."""
        rec = await self.store.replace_job(job, now_ms, EDITABLE)
        if rec is None:
            raise DispatchError(f"unknown job {job.id!r}", 404)
        if rec.job != job:
            raise DispatchError(f"job {job.id} is {rec.state.value}: it can no longer be edited")
        self.publish("job", codec.record_to_dict(rec), await self._vehicle(rec.route_id),
                     rec.route_id)
        return rec

    async def change_state(self, job_id: str, to: JobState, by: Actor, now_ms: int, tid: str,
                           at_ms: int | None = None, lat: float | None = None,
                           lon: float | None = None, reason: str = "") -> Transition | None:
        """A person's (or a rule's) change of a job's state; None if it already was so.
        IllegalTransition for a change the machine refuses."""
        if await self.store.job(job_id) is None:
            raise DispatchError(f"unknown job {job_id!r}", 404)
        for _ in range(DECIDE_ATTEMPTS):
            m = JobMachine(job_id, await self.store.transitions(job_id))
            t = m.request(to, by, now_ms, tid, at_ms=at_ms, lat=lat, lon=lon, reason=reason)
            if t is None:
                return None
            try:
                await self._record([t])
                return t
            except StaleState:
                continue
        raise StaleState(job_id, None)

    # --- routes -----------------------------------------------------------------------------

    async def save_route(self, route: Route, base_version: int | None, by: Actor,
                         now_ms: int) -> Route:
        """Create or change a route (its stops, status, shift …) at `base_version` (None: a
        new route), assigning the jobs added to it and unassigning those taken off, in one
        transaction. Refused (DispatchError) for a job that is on another route, started
        elsewhere, finished or cancelled, or a started job taken off its route: nothing
        planned is lost. StaleVersion if the route changed since `base_version`."""
        old = await self.store.dispatch_route(route.id) if base_version is not None else None
        before = set(old.job_ids) if old else set()
        keep = set(route.job_ids) if route.status is not RouteStatus.CANCELLED else set()
        transitions: list[Transition] = []
        v = base_version or 0
        for jid in route.job_ids:
            rec = await self.store.job(jid)
            if rec is None:
                raise DispatchError(f"unknown job {jid!r}", 404)
            if rec.route_id == route.id or jid not in keep:
                continue
            if rec.state is not S.UNASSIGNED:
                where = f" on route {rec.route_id}" if rec.route_id else ""
                raise DispatchError(f"job {jid} is {rec.state.value}{where}: it cannot be "
                                    f"added to route {route.id}")
            transitions.append(Transition(
                transition_id(jid, S.ASSIGNED, v, by, route.id), jid, S.UNASSIGNED,
                S.ASSIGNED, now_ms, by, now_ms, route.id))
        for jid in sorted(before - keep):
            rec = await self.store.job(jid)
            if rec is None or rec.route_id != route.id:
                continue
            if rec.state.started:
                raise DispatchError(f"job {jid} is {rec.state.value}: it stays on its route")
            if rec.state is S.ASSIGNED:
                transitions.append(Transition(
                    transition_id(jid, S.UNASSIGNED, v, by, route.id), jid, S.ASSIGNED,
                    S.UNASSIGNED, now_ms, by, now_ms, route.id, reason="taken off the route"))
        saved = await self.store.put_dispatch_route(route, base_version, now_ms, transitions)
        self.publish("route", codec.route_to_dict(saved), saved.vehicle_id, saved.id)
        for t in transitions:
            self._publish_transition(t, saved.vehicle_id)
        await self.route_changed(saved)
        return saved

    # --- arrival tracking -------------------------------------------------------------------

    async def start(self) -> None:
        """Watch the vehicles of every dispatched or active route."""
        for r in await self.store.dispatch_routes(LIVE_ROUTES):
            await self.route_changed(r)

    async def route_changed(self, route: Route) -> None:
        """(Re)build the vehicle's track for a live route, or drop it. A new track folds the
        route's positions from its shift's start at the vehicle's next batch."""
        old_vehicle = self._vehicle_of.pop(route.id, None)
        if old_vehicle is not None and self._tracks.get(old_vehicle, None) is not None \
                and self._tracks[old_vehicle].route_id == route.id:
            del self._tracks[old_vehicle]
        if route.status.value not in LIVE_ROUTES:
            if self.etas is not None:
                await self.etas.route_changed(route, [], {}, False)
            return
        records = await self.store.jobs(JobQuery(route_id=route.id,
                                                 limit=len(route.stops) or 1))
        jobs = [r.job for r in records]
        if self.etas is not None:
            await self.etas.route_changed(route, jobs, {r.job.id: r.state for r in records},
                                          True)
        fences = {}
        if any(j.place.geofence_id for j in jobs):  # a stop given as a geofence: its shape
            from ..alerts.fences import fences_from_rows

            fences = {f.id: f.contains for f in fences_from_rows(await self.store.geofences())}
        kw = {} if self.dwell_s is None else {"dwell_s": self.dwell_s}
        zones = [zone_for(j, fences.get(j.place.geofence_id)) for j in jobs]
        track = VehicleTrack(route.id, zones, route.shift.start_ms, **kw)
        track.reported = None  # first evaluation: check every stop (after a restart too)
        self._tracks[route.vehicle_id] = track
        self._vehicle_of[route.id] = route.vehicle_id

    def forget(self, vehicle: str) -> None:
        """A vehicle (re)connected (`Gateway.register`): its track starts again from the
        store at its next batch, which holds what another gateway process folded meanwhile,
        and its live ETAs re-read its open late-risk alerts (docs/scaling.md §4, "Who owns a
        vehicle")."""
        if vehicle in self._tracks:
            self._rewind.add(vehicle)
        if self.etas is not None:  # its open late-risk alerts, likewise
            self.etas.forget(vehicle)

    async def on_committed(self, rows: Iterable, now_ms: int) -> None:
        """After a commit: positions of vehicles on a live route go to their tracks. Costs a
        dict lookup per reading when no vehicle of the batch has one; never raises."""
        if not self._tracks:
            return
        mine: dict[str, list] = {}
        for r in rows:
            if r.vehicle_id in self._tracks and r.kind == "pos" and r.lat is not None:
                mine.setdefault(r.vehicle_id, []).append(r)
        for vehicle, rs in mine.items():
            lock = self._locks.setdefault(vehicle, asyncio.Lock())
            async with lock:
                if vehicle in self._rewind:
                    self._rewind.discard(vehicle)
                    track = self._tracks.get(vehicle)
                    if track is not None:
                        track.rewind(-1)
                        track.reported = None  # every stop checked again, as after a start
                try:
                    await self._evaluate(vehicle, rs, now_ms)
                except Exception as exc:
                    self.stats["failures"] += 1
                    track = self._tracks.get(vehicle)
                    if track is not None:  # start again from the store next time
                        track.rewind(-1)
                    log.warning("arrival detection for %s failed: %s", vehicle, exc)
                if self.etas is not None:
                    newest = max(rs, key=lambda r: r.time_ms)
                    try:
                        await self.etas.on_position(vehicle, newest.time_ms, newest.lat,
                                                    newest.lon, now_ms)
                    except Exception as exc:  # the next position tries again
                        self.stats["eta_failures"] += 1
                        log.warning("live ETAs for %s failed: %s", vehicle, exc)

    async def _evaluate(self, vehicle: str, rows: list, now_ms: int) -> None:
        track = self._tracks.get(vehicle)
        if track is None:
            return
        rows.sort(key=lambda r: (r.time_ms, r.epoch, r.seq))
        if track.is_live(rows[0].time_ms):
            track.fold((r.time_ms, r.lat, r.lon) for r in rows)
        else:
            self.stats["replays"] += 1
            after = track.rewind(rows[0].time_ms)
            points = await self.store.route(vehicle, after + 1, _FOREVER_MS)
            track.fold((p["time_ms"], p["lat"], p["lon"]) for p in points)
        visits = track.visits()
        before = track.reported
        if visits is before:
            return  # no event changed what detection holds: nothing to reconcile
        stops = [z.stop_id for z in track.zones] if before is None else \
            sorted(set(visits) | set(before))
        for job_id in stops:
            visit = visits.get(job_id, Visit())
            if before is None or before.get(job_id, Visit()) != visit:
                await self._apply_visit(job_id, visit, track.route_id, vehicle, now_ms)
        track.reported = visits

    async def _apply_visit(self, job_id: str, visit: Visit, route_id: str, vehicle: str,
                           now_ms: int) -> None:
        for _ in range(DECIDE_ATTEMPTS):
            m = JobMachine(job_id, await self.store.transitions(job_id))
            ts = m.detected(visit, now_ms, DETECTOR, route_id, self.complete_on_departure)
            if not ts:
                return
            try:
                await self._record(ts, vehicle)
                self.stats["detected"] += len(ts)
                return
            except StaleState:
                continue

    async def vehicle_detected(self, vehicle: str, body: dict, now_ms: int) -> str:
        """An arrival or departure the vehicle's own detector decided (an `act` reading's
        body, docs/dispatch.md "Detection on the vehicle"), recorded once: what happened —
        "recorded", "already" (the job arrived/left before: the first detection recorded
        wins) or "refused: …" (not this vehicle's route or job, malformed). Store failures
        propagate (the batch is not acknowledged; the agent sends it again)."""
        from geostream.limits import TS_MAX_AHEAD_MS

        from .onboard import ARRIVAL, DetectionRefused, parse_detection

        try:
            d = parse_detection(body)
        except DetectionRefused as exc:
            return f"refused: {exc}"
        if d.decided_ms > now_ms + TS_MAX_AHEAD_MS:  # the readings' sane window (§4)
            return f"refused: decided_ms {d.decided_ms} is more than a day ahead"
        route = await self.store.dispatch_route(d.route_id)
        if route is None or route.vehicle_id != vehicle:
            return f"refused: route {d.route_id} is not vehicle {vehicle}'s"
        if not any(s.job_id == d.job_id for s in route.stops):
            return f"refused: job {d.job_id} is not on route {d.route_id}"
        by = Actor(ActorKind.VEHICLE, vehicle)
        kind = "arrival" if d.kind == ARRIVAL else "departure"
        for _ in range(DECIDE_ATTEMPTS):
            m = JobMachine(d.job_id, await self.store.transitions(d.job_id))
            ts = m.reported(kind, (d.at_ms, d.lat, d.lon), by, d.key, now_ms, route.id,
                            self.complete_on_departure)
            if not ts:
                self.stats["vehicle_detected_already"] += 1
                return "already"
            try:
                await self._record(ts, vehicle)
            except StaleState:
                continue
            self.stats["vehicle_detected"] += 1
            return "recorded"
        raise StaleState(d.job_id, None)

    # --- helpers ----------------------------------------------------------------------------

    async def _record(self, ts: list[Transition], vehicle: str | None = None) -> None:
        await self.announce(await self.store.record_transitions(ts), vehicle)

    async def announce(self, done: list[Transition], vehicle: str | None = None) -> None:
        """Publish transitions just recorded (here, or by the driver action applier in its
        own transaction) and move the live ETAs on."""
        for t in done:
            v = vehicle or await self._vehicle(t.route_id)
            self._publish_transition(t, v)
            self._event("transition", t, t.route_id in self._vehicle_of)
            if self.etas is not None:
                await self.etas.on_transition(t, v, t.recorded_ms)

    def _publish_transition(self, t: Transition, vehicle: str | None) -> None:
        self.publish("transition", codec.transition_to_dict(t), vehicle, t.route_id)

    async def _vehicle(self, route_id: str | None) -> str | None:
        if route_id is None:
            return None
        if route_id in self._vehicle_of:
            return self._vehicle_of[route_id]
        r = await self.store.dispatch_route(route_id)
        return None if r is None else r.vehicle_id
