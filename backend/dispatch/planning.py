"""Plan, propose, approve: the async edge between the store, the solver process and the pure
proposal logic (backend/dispatch/proposal.py). REST (backend/api/planning.py) calls it.

- `plan(shift, by)`: reads the dispatch state (vehicles with their types and depots, the jobs
  not yet finished, the routes of that shift), solves it in the solver process (queued, one
  per fleet, 429 when busy) and keeps the result as a `Proposal` on the state's version;
- `approve(id, by)`: re-reads the state; on the same version writes the routes through the
  dispatcher (jobs leaving a route first, then the routes that gain them), else refuses with
  the new diff (`ProposalStale`).

The state's version is a digest of every route (id, version, status, stops) and every
unfinished job (id, state, route, last change): any stop completed, job added or route edited
changes it. Proposals live in this process's memory (`MAX_PROPOSALS`, newest kept): they are
drafts for a dispatcher looking at the screen, not records.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from . import codec
from .model import Actor, JobState, Route, RouteStatus, RouteStop, Shift
from .planner import Plan, PlanError, PlanRequest, PlanVehicle
from .proposal import Approved, Proposal, Snapshot, decide
from .storage import MAX_JOBS_PAGE, JobQuery

# Proposals kept per process: a dispatcher compares a few, older ones are dropped.
MAX_PROPOSALS = 16
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


class PlanningService:
    def __init__(self, store, dispatcher, worker, clock):
        self.store, self.dispatcher, self.worker, self.clock = store, dispatcher, worker, clock
        self._proposals: OrderedDict[str, Kept] = OrderedDict()

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
                   time_limit_s: float | None = None) -> Kept:
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
        route_on = {jid: rec.route_id for jid, rec in records.items()}
        ours = {r.id for v, r in routes.items() if v in {c.vehicle_id for c in chosen}}
        plan_vehicles = []
        for v in chosen:
            route = routes.get(v.vehicle_id)
            kept = tuple(j for j in (route.job_ids if route else ())
                         if records.get(j) and records[j].state.started)
            t = types[v.type_id]
            depot = depots[v.depot_id].place.point
            initial = tuple(j for j in (route.job_ids if route else ()) if j not in kept)
            plan_vehicles.append(PlanVehicle(v.vehicle_id, depot, depot, shift, t.capacity,
                                             t.skills, kept, initial))
        # Jobs to plan: unassigned ones, and those on the chosen vehicles' routes of this shift.
        jobs = tuple(rec.job for jid, rec in sorted(records.items())
                     if rec.state is JobState.UNASSIGNED or route_on[jid] in ours)
        now = self.clock()
        kw = {} if time_limit_s is None else {"time_limit_s": time_limit_s}
        request = PlanRequest(tuple(plan_vehicles), jobs, now, **kw)
        result = await self.worker.plan(FLEET, request)
        # other vehicles' routes stay as they are; the chosen ones get the plan (or nothing)
        proposed = {v: r.job_ids for v, r in routes.items()}
        for v in chosen:
            proposed[v.vehicle_id] = ()
        proposed.update({r.vehicle_id: r.job_ids for r in result.routes})
        pid = f"prop-{secrets.token_hex(6)}"
        proposal = Proposal.of(pid, snap, proposed, now, basis=result.basis,
                               unassigned=dict(result.unassigned), by=by)
        kept = Kept(proposal, snap, result, shift,
                    {v: r.id for v, r in routes.items()})
        self._proposals[pid] = kept
        while len(self._proposals) > MAX_PROPOSALS:
            self._proposals.popitem(last=False)
        return kept

    def get(self, pid: str) -> Kept | None:
        return self._proposals.get(pid)

    def cancel(self) -> bool:
        return self.worker.cancel(FLEET)

    async def approve(self, pid: str, by: Actor) -> dict:
        kept = self._proposals.get(pid)
        if kept is None:
            raise PlanningError(f"unknown proposal {pid!r}", 404)
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
            stay = tuple(RouteStop(j) for j in after if j in set(route.job_ids))
            saved[vehicle] = await self.dispatcher.save_route(
                _with(route, stops=stay), route.version, by, now)
        # 2: ... then every changed route gets its planned order and times
        for vehicle, after in changed.items():
            stops = _stops(planned.get(vehicle), after)
            base = saved.get(vehicle)
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
            else:
                saved[vehicle] = await self.dispatcher.save_route(
                    _with(base, stops=stops), base.version, by, now)
        self._proposals.pop(pid, None)
        return {"proposal": pid, "diff": verdict.diff.as_json(),
                "routes": [codec.route_to_dict(r) for r in saved.values()]}

    async def close(self) -> None:
        await self.worker.close()


def _with(route: Route, **changes) -> Route:
    from dataclasses import replace

    return replace(route, **changes)


def _stops(planned, order) -> tuple[RouteStop, ...]:
    times = {s.job_id: s for s in planned.stops} if planned is not None else {}
    return tuple(RouteStop(j, times[j].arrival_ms if j in times else None,
                           times[j].departure_ms if j in times else None) for j in order)


def proposal_json(kept: Kept) -> dict:
    p = kept.proposal
    return {
        "id": p.id,
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


__all__ = ["PlanError", "PlanningError", "PlanningService", "ProposalStale", "proposal_json"]
