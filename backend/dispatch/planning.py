"""Plan, propose, approve: the async edge between the store, the solver process and the pure
proposal logic (backend/dispatch/proposal.py). REST (backend/api/planning.py) calls it.

- `plan(shift, by)`: reads the dispatch state (vehicles with their types and depots, the jobs
  not yet finished, the routes of that shift), solves it in the solver process (queued, one
  per fleet, 429 when busy) and keeps the result as a `Proposal` on the state's version;
- `approve(id, by)`: re-reads the state; on the same version writes the routes through the
  dispatcher (jobs leaving a route first, then the routes that gain them), else refuses with
  the new diff (`ProposalStale`).

- `replan(cause, …)`: the same for the vehicles on a live route now (an event asked for it:
  an urgent job, a failed stop, a vehicle offline or late, a cancellation), with their started
  stops kept and their routes planned from where the vehicles are.

The state's version is a digest of every route (id, version, status, stops) and every
unfinished job (id, state, route, last change): any stop completed, job added or route edited
changes it. Proposals are kept in the store (`dispatch_proposals`, with the snapshot they were
computed on), so any node shows and approves them and a restart keeps them; the newest
`MAX_OPEN_PROPOSALS` open ones are kept, an approved one is closed (approving it twice answers
that it was approved).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field, replace

from . import codec
from .model import Actor, JobState, Point, Route, RouteStatus, RouteStop, Shift
from .planner import Plan, PlanError, PlannedRoute, PlannedStop, PlanRequest, PlanVehicle
from .proposal import Approved, Proposal, Snapshot, decide, diff
from .storage import MAX_JOBS_PAGE, JobQuery, StoredProposal

ON_DEMAND = "on demand"
# Routes planned from the vehicle's live position once under way (docs/planning.md).
LIVE_ROUTES = (RouteStatus.DISPATCHED.value, RouteStatus.ACTIVE.value)
# A position older than this is not where the vehicle is: such a vehicle is planned from its
# last kept stop or its depot, as before its shift.
LIVE_POSITION_MAX_AGE_MS = 15 * 60_000
# Routes a plan may write or take jobs from.
OPEN_ROUTES = (RouteStatus.DRAFT.value, RouteStatus.DISPATCHED.value, RouteStatus.ACTIVE.value)
OPEN_JOBS = (JobState.UNASSIGNED, JobState.ASSIGNED, JobState.EN_ROUTE, JobState.ARRIVED)
FLEET = "fleet"  # one fleet per backend today; the solver worker queues per fleet


class ProposalStale(Exception):
    def __init__(self, stale):
        super().__init__(stale.message)
        self.stale = stale


class PlanningError(ValueError):
    """A plan that cannot be made as asked; `status` is the HTTP status that fits."""

    def __init__(self, text: str, status: int = 400):
        super().__init__(text)
        self.status = status


@dataclass(frozen=True)
class Kept:
    """A proposal with what approving it needs."""

    proposal: Proposal
    base: Snapshot
    plan: Plan
    shift: Shift
    route_ids: dict  # vehicle → its open route of the shift at planning time
    cause: str = ON_DEMAND
    status: str = "open"
    starts: dict = field(default_factory=dict)  # vehicle → "depot" or "live position at T"


class PlanningService:
    def __init__(self, store, dispatcher, worker, clock):
        self.store, self.dispatcher, self.worker, self.clock = store, dispatcher, worker, clock

    async def state(self, shift: Shift):
        """(Snapshot keyed by vehicle, {vehicle: route}, {job id: JobRecord}) of a shift."""
        routes = [r for r in await self.store.dispatch_routes(OPEN_ROUTES)
                  if r.shift.start_ms < shift.end_ms and shift.start_ms < r.shift.end_ms]
        records = []
        after = None
        while True:
            page = await self.store.jobs(JobQuery(states=OPEN_JOBS, after=after,
                                                  limit=MAX_JOBS_PAGE))
            records += page
            if len(page) < MAX_JOBS_PAGE:
                break
            after = page[-1].job.id
        by_vehicle = {r.vehicle_id: r for r in routes}
        digest = hashlib.sha256()
        for r in sorted(routes, key=lambda r: r.id):
            digest.update(f"r|{r.id}|{r.version}|{r.status.value}|{','.join(r.job_ids)}\n"
                          .encode())
        for rec in sorted(records, key=lambda r: r.job.id):
            digest.update(f"j|{rec.job.id}|{rec.state.value}|{rec.route_id}|{rec.updated_ms}\n"
                          .encode())
        snap = Snapshot(digest.hexdigest()[:32],
                        {v: r.job_ids for v, r in by_vehicle.items()},
                        {rec.job.id: rec.state for rec in records})
        return snap, by_vehicle, {rec.job.id: rec for rec in records}

    async def plan(self, shift: Shift, by: str, vehicles: list[str] | None = None,
                   time_limit_s: float | None = None, cause: str = ON_DEMAND,
                   unavailable: frozenset[str] = frozenset()) -> Kept:
        """Plan `shift` for `vehicles` (None: every dispatch vehicle). `unavailable` vehicles
        (offline) keep only their started stops; their other jobs go to the rest."""
        snap, routes, records = await self.state(shift)
        fleet = await self.store.dispatch_vehicles()
        types = {t.id: t for t in await self.store.catalogue("vehicle_types")}
        depots = {d.id: d for d in await self.store.catalogue("depots")}
        chosen = [v for v in fleet if vehicles is None or v.vehicle_id in vehicles]
        if not chosen:
            raise PlanningError("no dispatch vehicles to plan with (register vehicles with a "
                                "type and a depot first)")
        problems = [f"{v.vehicle_id}: no depot" for v in chosen if v.depot_id not in depots]
        problems += [f"{v.vehicle_id}: unknown type {v.type_id}" for v in chosen
                     if v.type_id not in types]
        if problems:
            raise PlanningError("; ".join(problems))
        now = self.clock()
        route_on = {jid: rec.route_id for jid, rec in records.items()}
        ours = {r.id for v, r in routes.items() if v in {c.vehicle_id for c in chosen}}
        positions = await self._live_positions(routes, now)
        plan_vehicles, starts, off_kept = [], {}, {}
        for v in chosen:
            route = routes.get(v.vehicle_id)
            kept = tuple(j for j in (route.job_ids if route else ())
                         if records.get(j) and records[j].state.started)
            if v.vehicle_id in unavailable:
                off_kept[v.vehicle_id] = kept
                continue
            t = types[v.type_id]
            depot = depots[v.depot_id].place.point
            start, starts[v.vehicle_id] = depot, "depot"
            live = positions.get(v.vehicle_id)
            if live is not None:
                start = Point(live[1], live[2])
                starts[v.vehicle_id] = f"live position at {live[0]}"
            initial = tuple(j for j in (route.job_ids if route else ()) if j not in kept)
            plan_vehicles.append(PlanVehicle(v.vehicle_id, start, depot, shift, t.capacity,
                                             t.skills, kept, initial))
        if not plan_vehicles:
            raise PlanningError("no available vehicle to plan with")
        # Jobs to plan: unassigned ones, and those on the chosen vehicles' routes of this
        # shift (an unavailable vehicle's started stops stay with it, out of the plan).
        held = {j for kept in off_kept.values() for j in kept}
        jobs = tuple(rec.job for jid, rec in sorted(records.items())
                     if jid not in held and (rec.state is JobState.UNASSIGNED
                                             or route_on[jid] in ours))
        kw = {} if time_limit_s is None else {"time_limit_s": time_limit_s}
        request = PlanRequest(tuple(plan_vehicles), jobs, now, **kw)
        result = await self.worker.plan(FLEET, request)
        # other vehicles' routes stay as they are; the chosen ones get the plan (or nothing)
        # after their finished stops, which stay first as they were
        proposed = {v: r.job_ids for v, r in routes.items()}
        for v in chosen:
            route = routes.get(v.vehicle_id)
            done = tuple(j for j in (route.job_ids if route else ()) if j not in records)
            proposed[v.vehicle_id] = done + off_kept.get(v.vehicle_id, ())
        for r in result.routes:
            proposed[r.vehicle_id] = proposed.get(r.vehicle_id, ()) + r.job_ids
        pid = f"prop-{secrets.token_hex(6)}"
        proposal = Proposal.of(pid, snap, proposed, now, basis=result.basis,
                               unassigned=dict(result.unassigned), by=by)
        kept = Kept(proposal, snap, result, shift,
                    {v: r.id for v, r in routes.items()}, cause, "open", starts)
        await self.store.put_proposal(StoredProposal(
            pid, now, str(snap.version), "open", cause, kept_to_dict(kept)))
        return kept

    async def _live_positions(self, routes: dict, now: int) -> dict:
        """{vehicle: (time_ms, lat, lon)} of vehicles whose live route is under way and
        whose newest position is recent: they are planned from there."""
        under_way = {v for v, r in routes.items()
                     if r.status.value in LIVE_ROUTES and r.shift.start_ms <= now}
        if not under_way:
            return {}
        return {p["vehicle_id"]: (p["time_ms"], p["lat"], p["lon"])
                for p in await self.store.last_positions()
                if p["vehicle_id"] in under_way and p.get("lat") is not None
                and now - LIVE_POSITION_MAX_AGE_MS <= p["time_ms"] <= now + 60_000}

    async def replan(self, cause: str, vehicles: list[str] | None = None,
                     unavailable: frozenset[str] = frozenset(),
                     by: str = "re-plan") -> Kept | None:
        """A proposal for the routes under way now, because of `cause` (a sentence: "job j7
        cancelled by the shop integration"). The shift is that of the live routes running
        now; the vehicles, theirs (or `vehicles`). None when no route is under way. Raises
        what `plan` raises (PlannerBusy while another plan runs)."""
        now = self.clock()
        live = [r for r in await self.store.dispatch_routes(LIVE_ROUTES)
                if r.shift.start_ms <= now < r.shift.end_ms]
        if vehicles is not None:
            live = [r for r in live if r.vehicle_id in vehicles]
        if not live:
            return None
        shift = min((r.shift for r in live), key=lambda s: (s.start_ms, s.end_ms))
        chosen = sorted({r.vehicle_id for r in live if r.shift == shift})
        return await self.plan(shift, by, chosen, cause=cause, unavailable=unavailable)

    async def move(self, job_id: str, route_id: str, by: Actor) -> dict:
        """Move a job onto route `route_id` in one action: the solver re-sequences that
        route's open stops with the job among them (its started stops kept, from the
        vehicle's live position when under way); the job's old route keeps its order without
        it. Applied at once (the dispatcher's own decision), or refused changing nothing:
        PlanningError when the job cannot go there (with the solver's reason), StaleVersion
        when either route changed meanwhile."""
        rec = await self.store.job(job_id)
        if rec is None:
            raise PlanningError(f"unknown job {job_id!r}", 404)
        target = await self.store.dispatch_route(route_id)
        if target is None:
            raise PlanningError(f"unknown route {route_id!r}", 404)
        if target.status.value not in OPEN_ROUTES:
            raise PlanningError(f"route {route_id} is {target.status.value}: no job can join it",
                                409)
        if rec.route_id == route_id:
            raise PlanningError(f"job {job_id} is on route {route_id} already", 409)
        if rec.state not in (JobState.UNASSIGNED, JobState.ASSIGNED):
            raise PlanningError(f"job {job_id} is {rec.state.value}: only a job not yet started "
                                "can move", 409)
        source = await self.store.dispatch_route(rec.route_id) if rec.route_id else None
        open_recs = {r.job.id: r for r in await self.store.jobs(JobQuery(
            route_id=route_id, limit=max(len(target.stops), 1)))
            if r.state in OPEN_JOBS}
        kept = tuple(j for j in target.job_ids if j in open_recs and open_recs[j].state.started)
        initial = tuple(j for j in target.job_ids if j in open_recs and j not in kept)
        now = self.clock()
        depots = {d.id: d for d in await self.store.catalogue("depots")}
        if target.start_depot not in depots or target.end_depot not in depots:
            raise PlanningError(f"route {route_id}: its depots are unknown", 422)
        start = depots[target.start_depot].place.point
        live = (await self._live_positions({target.vehicle_id: target}, now)).get(
            target.vehicle_id)
        if live is not None:
            start = Point(live[1], live[2])
        vehicle = PlanVehicle(target.vehicle_id, start, depots[target.end_depot].place.point,
                              target.shift, target.capacity, target.skills, kept, initial)
        jobs = tuple(r.job for r in open_recs.values()) + (rec.job,)
        result = await self.worker.plan(FLEET, PlanRequest((vehicle,), jobs, now))
        if job_id in result.unassigned:
            raise PlanningError(f"job {job_id} cannot go on route {route_id}: "
                                f"{result.unassigned[job_id]}", 409)
        lost = sorted(set(result.unassigned) - {job_id})
        if lost:
            raise PlanningError(f"job {job_id} fits on route {route_id} only by leaving "
                                f"{', '.join(lost)} out: not moved", 409)
        planned = result.routes[0] if result.routes else None
        done = tuple(j for j in target.job_ids if j not in open_recs)
        order = done + (planned.job_ids if planned else ())
        saved = []
        if source is not None:  # off its route first: a job is on one route at a time
            saved.append(await self.dispatcher.save_route(
                replace(source, stops=tuple(s for s in source.stops if s.job_id != job_id)),
                source.version, by, now))
        try:
            saved.append(await self.dispatcher.save_route(
                replace(target, stops=_stops(planned, order, target)), target.version, by,
                now))
        except Exception:
            if source is not None:  # the target moved meanwhile: the job goes back
                await self.dispatcher.save_route(source, saved[0].version, by, now)
            raise
        return {"job_id": job_id, "basis": result.basis,
                "routes": [codec.route_to_dict(r) for r in saved]}

    async def get(self, pid: str) -> Kept | None:
        stored = await self.store.proposal(pid)
        return None if stored is None else kept_from_stored(stored)

    async def list(self, status: str | None = "open") -> list[Kept]:
        return [kept_from_stored(p) for p in await self.store.proposals(status)]

    def cancel(self) -> bool:
        return self.worker.cancel(FLEET)

    async def approve(self, pid: str, by: Actor) -> dict:
        kept = await self.get(pid)
        if kept is None:
            raise PlanningError(f"unknown proposal {pid!r}", 404)
        if kept.status != "open":
            raise PlanningError(f"proposal {pid} is {kept.status}", 409)
        current, routes, _ = await self.state(kept.shift)
        verdict = decide(kept.proposal, current, kept.base)
        if not isinstance(verdict, Approved):
            raise ProposalStale(verdict)
        now = self.clock()
        planned = {r.vehicle_id: r for r in kept.plan.routes}
        changed = verdict.diff.routes_after
        saved: dict[str, Route] = {}
        # 1: routes keep only the jobs that stay on them (jobs leaving become free) ...
        for vehicle, after in changed.items():
            route = routes.get(vehicle)
            if route is None:
                continue
            old = {s.job_id: s for s in route.stops}
            stay = tuple(old[j] for j in after if j in old)
            saved[vehicle] = await self.dispatcher.save_route(
                replace(route, stops=stay), route.version, by, now)
        # 2: ... then every changed route gets its planned order and times
        for vehicle, after in changed.items():
            base = saved.get(vehicle)
            stops = _stops(planned.get(vehicle), after, base)
            if base is None:
                if not after:
                    continue
                types = {t.id: t for t in await self.store.catalogue("vehicle_types")}
                fleet = {v.vehicle_id: v for v in await self.store.dispatch_vehicles()}
                fv = fleet[vehicle]
                t = types[fv.type_id]
                new = Route(f"{vehicle}-{kept.shift.start_ms}", vehicle, kept.shift,
                            fv.depot_id, fv.depot_id, t.capacity, t.skills, stops=stops)
                saved[vehicle] = await self.dispatcher.save_route(new, None, by, now)
            elif stops != base.stops:
                saved[vehicle] = await self.dispatcher.save_route(
                    replace(base, stops=stops), base.version, by, now)
        await self.store.close_proposal(pid, "approved", by.id, now)
        return {"proposal": pid, "diff": verdict.diff.as_json(),
                "routes": [codec.route_to_dict(r) for r in saved.values()]}

    async def close(self) -> None:
        await self.worker.close()


def _stops(planned, order, base: Route | None) -> tuple[RouteStop, ...]:
    """The route's stops in `order`: planned times where planned, else as they were (finished
    stops, an unavailable vehicle's started ones)."""
    times = {s.job_id: s for s in planned.stops} if planned is not None else {}
    old = {s.job_id: s for s in base.stops} if base is not None else {}
    return tuple(RouteStop(j, times[j].arrival_ms, times[j].departure_ms) if j in times
                 else old.get(j, RouteStop(j)) for j in order)


def kept_to_dict(kept: Kept) -> dict:
    """A proposal and what approving it needs, as stored (kept_from_stored reads it)."""
    p, b = kept.proposal, kept.base
    return {
        "proposal": {"id": p.id, "based_on_version": p.based_on_version,
                     "routes": {v: list(js) for v, js in p.routes.items()},
                     "created_ms": p.created_ms, "basis": p.basis,
                     "unassigned": dict(p.unassigned), "by": p.by},
        "base": {"version": b.version, "routes": {v: list(js) for v, js in b.routes.items()},
                 "job_states": {j: s.value for j, s in b.job_states.items()}},
        "plan": {"routes": [{"vehicle_id": r.vehicle_id, "start_ms": r.start_ms,
                             "end_ms": r.end_ms, "travel_s": r.travel_s,
                             "stops": [[s.job_id, s.arrival_ms, s.departure_ms, s.wait_s,
                                        s.kept] for s in r.stops]}
                            for r in kept.plan.routes],
                 "unassigned": dict(kept.plan.unassigned), "basis": kept.plan.basis,
                 "cost_s": kept.plan.cost_s, "solve_s": kept.plan.solve_s},
        "shift": [kept.shift.start_ms, kept.shift.end_ms],
        "route_ids": dict(kept.route_ids),
        "starts": dict(kept.starts),
    }


def kept_from_stored(stored: StoredProposal) -> Kept:
    d = stored.body
    p, b, pl = d["proposal"], d["base"], d["plan"]
    base = Snapshot(b["version"], {v: tuple(js) for v, js in b["routes"].items()},
                    {j: JobState(s) for j, s in b["job_states"].items()})
    routes = {v: tuple(js) for v, js in p["routes"].items()}
    proposal = Proposal(p["id"], p["based_on_version"], routes, diff(base.routes, routes),
                        p["created_ms"], p["basis"], p["unassigned"], p["by"])
    plan = Plan(tuple(PlannedRoute(r["vehicle_id"],
                                   tuple(PlannedStop(*s) for s in r["stops"]),
                                   r["start_ms"], r["end_ms"], r["travel_s"])
                      for r in pl["routes"]),
                pl["unassigned"], pl["basis"], pl["cost_s"], pl["solve_s"])
    return Kept(proposal, base, plan, Shift(*d["shift"]), d["route_ids"], stored.cause,
                stored.status, d.get("starts", {}))


def proposal_vehicles(kept: Kept) -> frozenset[str]:
    """Every vehicle a proposal touches: its plan's routes, the routes its diff changes, and
    the vehicles its stops move from or to. A caller limited to some vehicles sees the
    proposal only if it may see all of them (REST and the live feed alike)."""
    d = kept.proposal.diff
    return frozenset({r.vehicle_id for r in kept.plan.routes} | set(d.routes_before)
                     | set(d.routes_after) | {v for c in d.changes
                                              for v in (c.from_vehicle, c.to_vehicle) if v})


# What the live feed carries of a proposal (docs/protocol.md §9): no plan, no starts.
LIVE_PROPOSAL_KEYS = ("id", "cause", "status", "created_ms", "based_on_version", "diff")


def live_proposal(kept: Kept) -> dict:
    """A proposal as the hub publishes it, with `vehicles`: those it touches (sorted), by
    which the hub shows it only to who may see every one (backend/hub.py)."""
    body = proposal_json(kept)
    return {k: body[k] for k in LIVE_PROPOSAL_KEYS} | {
        "vehicles": sorted(proposal_vehicles(kept))}


def proposal_json(kept: Kept) -> dict:
    p = kept.proposal
    return {
        "id": p.id,
        "status": kept.status,
        "cause": kept.cause,
        "starts": kept.starts,
        "based_on_version": p.based_on_version,
        "created_ms": p.created_ms,
        "basis": p.basis,
        "shift": {"start_ms": kept.shift.start_ms, "end_ms": kept.shift.end_ms},
        "cost_s": kept.plan.cost_s,
        "solve_s": round(kept.plan.solve_s, 3),
        "routes": [{"vehicle_id": r.vehicle_id, "start_ms": r.start_ms, "end_ms": r.end_ms,
                    "travel_s": r.travel_s,
                    "stops": [{"job_id": s.job_id, "arrival_ms": s.arrival_ms,
                               "departure_ms": s.departure_ms, "wait_s": s.wait_s,
                               "kept": s.kept} for s in r.stops]}
                   for r in kept.plan.routes],
        "unassigned": [{"job_id": j, "reason": why} for j, why in sorted(p.unassigned.items())],
        "diff": p.diff.as_json(),
    }


__all__ = ["PlanError", "PlanningError", "PlanningService", "ProposalStale", "kept_to_dict",
           "live_proposal", "proposal_json", "proposal_vehicles"]
