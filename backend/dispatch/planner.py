"""The planner: jobs and vehicles in, routes out, solved by VROOM (pyvroom).

Pure apart from the solver call: `plan(request, travel)` takes every input (the jobs, the
vehicles with their shifts, positions and started stops, `now`) and a travel-time source
(`RoadMatrix` or `StraightLineMatrix`), and returns a `Plan` that says which basis its times
came from. It runs in the solver worker process (backend/dispatch/solver_worker.py), never in
the gateway's.

VROOM was chosen over OR-Tools by measurement (docs/benchmarks.md, "Dispatch"): it models
capacities, time windows (several per job), skills, shifts, pickup-and-delivery and priorities
natively, and on the same instances reached lower costs in less time.

Re-planning keeps started stops: each vehicle's `kept` jobs (en route or arrived) stay at the
head of its route in their order; the solver plans the rest from the last kept stop onwards,
with what those stops already took off the vehicle's capacity.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from backend.dispatch.model import Amounts, Job, JobKind, Point, Shift, check_pairs

if TYPE_CHECKING:
    from backend.dispatch.matrix import Matrix

# VROOM's search effort (0–5). Measured on 1,000 jobs / 50 vehicles (docs/benchmarks.md):
# 0 meets the time goal, higher levels gain a few % of cost for several times the time.
DEFAULT_EXPLORATION = 0
# Small plans (a re-plan of one route, a what-if) search hardest: it costs milliseconds there,
# and the tests hold them within 1 % of the brute-force optimum.
SMALL_PLAN_JOBS = 30
SMALL_PLAN_EXPLORATION = 5
# ... and from several job orders: VROOM's construction depends on the input order, and on
# 400 random instances of ≤ 8 stops one start left a servable job out in 1 %, eight in none
# (docs/benchmarks.md).
SMALL_PLAN_STARTS = 8
# The solver stops at this limit and returns its best plan so far (the 15 s goal).
DEFAULT_TIME_LIMIT_S = 14.0
# One thread: the solver process must leave the second core to ingestion.
SOLVER_THREADS = 1
# Jobs and vehicles per plan: beyond these a plan takes minutes (split by region or depot).
MAX_PLAN_JOBS = 2_000
MAX_PLAN_VEHICLES = 200


class TravelTimes(Protocol):
    basis: str

    def matrix(self, points: list[tuple[float, float]]) -> Matrix: ...


class PlanError(ValueError):
    """The request cannot be planned as given (a sentence saying why)."""


@dataclass(frozen=True)
class PlanVehicle:
    """A vehicle as the planner sees it for one plan.

    `start` is where it is now (the depot before its shift, its position on the road);
    `kept` its started jobs, in order, which stay first on its route; `capacity` what it can
    carry in total on this route (kept jobs' demand is taken off it).
    """

    vehicle_id: str
    start: Point
    end: Point
    shift: Shift
    capacity: Amounts = Amounts()
    skills: frozenset[str] = frozenset()
    kept: tuple[str, ...] = ()
    # Its current planned order (not started): the solver starts from it, so a re-plan after
    # a few changes converges in a fraction of a plan from scratch (docs/benchmarks.md).
    initial: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlanRequest:
    vehicles: tuple[PlanVehicle, ...]
    jobs: tuple[Job, ...]  # every job to plan, the kept ones included
    now_ms: int
    exploration: int | None = None  # None: by size (SMALL_PLAN_JOBS)
    time_limit_s: float = DEFAULT_TIME_LIMIT_S


@dataclass(frozen=True)
class PlannedStop:
    job_id: str
    arrival_ms: int
    departure_ms: int  # after any wait for the window and the service
    wait_s: int = 0
    kept: bool = False


@dataclass(frozen=True)
class PlannedRoute:
    vehicle_id: str
    stops: tuple[PlannedStop, ...]
    start_ms: int
    end_ms: int  # back at the end depot
    travel_s: int

    @property
    def job_ids(self) -> tuple[str, ...]:
        return tuple(s.job_id for s in self.stops)


@dataclass(frozen=True)
class Plan:
    routes: tuple[PlannedRoute, ...]
    unassigned: dict[str, str]  # job id → why it was left out
    basis: str
    cost_s: int  # total travel time of all routes (the objective after jobs served)
    solve_s: float = 0.0
    details: dict = field(default_factory=dict)

    def assignment(self) -> dict[str, tuple[str, ...]]:
        return {r.vehicle_id: r.job_ids for r in self.routes}


def plan(request: PlanRequest, travel: TravelTimes) -> Plan:
    """Solve one plan. Raises `PlanError` for an inconsistent request, `SnapError` (from the
    matrix) for a place that is not on the road network."""
    import numpy as np  # here, not at the top: a backend's start needs no numpy

    started = time.perf_counter()
    problem = _Problem(request)
    m = travel.matrix(problem.points)
    if not np.isfinite(m.seconds).all():
        raise PlanError("the road network leaves some places unreachable from others")
    durations = np.rint(m.seconds).astype(np.int64)
    result = problem.solve(durations)
    return Plan(routes=result[0], unassigned=result[1], basis=m.basis,
                cost_s=sum(r.travel_s for r in result[0]),
                solve_s=time.perf_counter() - started)


class _Problem:
    """A request turned into VROOM's terms: locations as matrix indices, times in seconds
    from an epoch, skills and capacity dimensions as small integers."""

    def __init__(self, req: PlanRequest):
        if not req.vehicles:
            raise PlanError("no vehicles to plan with")
        if len(req.jobs) > MAX_PLAN_JOBS or len(req.vehicles) > MAX_PLAN_VEHICLES:
            raise PlanError(f"at most {MAX_PLAN_JOBS} jobs and {MAX_PLAN_VEHICLES} vehicles "
                            "per plan")
        problems = check_pairs(req.jobs)
        if problems:
            raise PlanError("; ".join(problems))
        self.req = req
        self.jobs = {j.id: j for j in req.jobs}
        if len(self.jobs) != len(req.jobs):
            raise PlanError("a job id appears twice")
        ids = [v.vehicle_id for v in req.vehicles]
        if len(set(ids)) != len(ids):
            raise PlanError("a vehicle id appears twice")
        kept_where: dict[str, str] = {}
        for v in req.vehicles:
            for jid in v.kept:
                if jid not in self.jobs:
                    raise PlanError(f"{v.vehicle_id}: kept job {jid} is not in the request")
                if jid in kept_where:
                    raise PlanError(f"{jid}: kept on two vehicles")
                kept_where[jid] = v.vehicle_id
        self.kept_where = kept_where
        self.epoch_ms = min([req.now_ms] + [v.shift.start_ms for v in req.vehicles])
        self.dimensions = sorted({d for j in req.jobs for d in j.demand.dimensions}
                                 | {d for v in req.vehicles for d in v.capacity.dimensions})
        skills = sorted({s for j in req.jobs for s in j.skills}
                        | {s for v in req.vehicles for s in v.skills})
        self.skill_no = {s: i + 1 for i, s in enumerate(skills)}
        # Points: vehicle starts, vehicle ends, then each job.
        self.points: list[tuple[float, float]] = []
        self.start_loc, self.end_loc, self.job_loc = [], [], {}
        for v in req.vehicles:
            self.start_loc.append(self._add(v.start))
        for v in req.vehicles:
            self.end_loc.append(self._add(v.end))
        for j in req.jobs:
            self.job_loc[j.id] = self._add(j.place.point)

    def _add(self, p: Point) -> int:
        self.points.append((p.lon, p.lat))
        return len(self.points) - 1

    def _s(self, t_ms: int) -> int:
        return max(0, (t_ms - self.epoch_ms) // 1000)

    def _ms(self, t_s: int) -> int:
        return self.epoch_ms + int(t_s) * 1000

    def _windows(self, job: Job):
        import vroom

        return [vroom.TimeWindow(self._s(w.start_ms), self._s(w.end_ms)) for w in job.windows
                if w.end_ms >= self.req.now_ms]

    def _kept_prefix(self, vi: int, v: PlanVehicle, durations):
        """Drive the kept stops in order; (stops, location, time s, travel s, load used)."""
        loc = self.start_loc[vi]
        t = max(self._s(v.shift.start_ms), self._s(self.req.now_ms))
        travel, used, stops = 0, Amounts(), []
        for jid in v.kept:
            job = self.jobs[jid]
            nxt = self.job_loc[jid]
            t += int(durations[loc, nxt])
            travel += int(durations[loc, nxt])
            arrival = t
            future = [w for w in job.windows if self._s(w.end_ms) >= t]
            if future and self._s(future[0].start_ms) > t:
                t = self._s(future[0].start_ms)
            t += job.service_s
            wait = t - arrival - job.service_s
            stops.append(PlannedStop(jid, self._ms(arrival), self._ms(t), wait, kept=True))
            if job.kind is not JobKind.PICKUP:
                used = used + job.demand
            loc = nxt
        return stops, loc, t, travel, used

    def solve(self, durations):
        """VROOM once; small plans several times from shuffled job orders (deterministic
        seeds), keeping the best by (priority served, jobs served, driving time)."""
        req = self.req
        level = req.exploration
        if level is None:
            level = (SMALL_PLAN_EXPLORATION if len(req.jobs) <= SMALL_PLAN_JOBS
                     else DEFAULT_EXPLORATION)
        starts = SMALL_PLAN_STARTS if len(req.jobs) <= SMALL_PLAN_JOBS else 1
        deadline = time.monotonic() + req.time_limit_s
        best, best_key = None, None
        for attempt in range(starts):
            left = deadline - time.monotonic()
            if attempt and left <= 0:
                break
            seeded = attempt == 0 and any(v.initial for v in req.vehicles)
            try:
                routes, unassigned = self._solve_once(durations, level, max(left, 0.001),
                                                      attempt, initial=seeded)
            except Exception as exc:  # pyvroom's VroomInputException derives from Exception
                if not seeded or type(exc).__name__ != "VroomInputException":
                    raise
                # an initial route VROOM refuses (now infeasible): plan from scratch
                routes, unassigned = self._solve_once(durations, level, max(left, 0.001),
                                                      attempt)
            key = self._key(routes)
            if best_key is None or key > best_key:
                best, best_key = (routes, unassigned), key
        exact = self._exact(durations)
        if exact is not None and self._key(exact[0]) > best_key:
            best = exact
        return best

    def _initial_steps(self, v: PlanVehicle, rank: dict[str, int]) -> list:
        """VROOM steps of the vehicle's current order, for the jobs this plan still has."""
        import vroom

        steps = [vroom.VehicleStep("start")]
        for jid in v.initial:
            job = self.jobs.get(jid)
            if job is None or jid in self.kept_where or self._expired(job):
                continue
            if job.kind is JobKind.VISIT or (job.kind is JobKind.DELIVERY
                                             and job.pair in self.kept_where):
                steps.append(vroom.VehicleStep("single", rank[jid]))
            elif job.kind is JobKind.PICKUP and job.pair not in self.kept_where:
                steps.append(vroom.VehicleStep("pickup", rank[jid]))
            elif job.kind is JobKind.DELIVERY:
                steps.append(vroom.VehicleStep("delivery", rank[jid]))
        steps.append(vroom.VehicleStep("end"))
        return steps if len(steps) > 2 else []

    def _key(self, routes) -> tuple[int, int, int]:
        served = [s.job_id for r in routes for s in r.stops]
        return (sum(self.jobs[j].priority for j in served), len(served),
                -sum(r.travel_s for r in routes))

    def _exact(self, durations):
        """The exhaustive search's plan for a tiny request of plain visits, else None."""
        from backend.dispatch.exact import EXACT_MAX_JOBS, ExactJob, ExactVehicle, exact_orders

        req = self.req
        todo = [j for j in req.jobs if j.id not in self.kept_where and not self._expired(j)]
        if len(todo) > EXACT_MAX_JOBS or any(j.kind is not JobKind.VISIT for j in todo):
            return None
        dims = self.dimensions or ["_"]
        vehicles = []
        for vi, v in enumerate(req.vehicles):
            _, loc, t, _, used = self._kept_prefix(vi, v, durations)
            left = tuple(max(0, c - u) for c, u in zip(v.capacity.vector(dims),
                                                        used.vector(dims), strict=True))
            vehicles.append(ExactVehicle(loc, self.end_loc[vi], t, self._s(v.shift.end_ms),
                                         left, frozenset(self.skill_no[s] for s in v.skills)))
        jobs = [ExactJob(self.job_loc[j.id],
                         tuple((self._s(w.start_ms), self._s(w.end_ms)) for w in j.windows
                               if w.end_ms >= req.now_ms),
                         j.service_s, tuple(j.demand.vector(dims)),
                         frozenset(self.skill_no[s] for s in j.skills), j.priority)
                 for j in todo]
        found = exact_orders(vehicles, jobs, durations)
        if found is None:
            return None
        orders, _ = found
        routes, served = [], set(self.kept_where)
        for vi, order in enumerate(orders):
            route = self._timeline(vi, [todo[k] for k in order], durations)
            if route is not None:
                routes.append(route)
                served |= set(route.job_ids)
        unassigned = {j: self._why(self.jobs[j]) for j in self.jobs if j not in served}
        return tuple(routes), unassigned

    def _timeline(self, vi: int, jobs: list[Job], durations) -> PlannedRoute | None:
        """Earliest times along kept stops then `jobs`, back to the end depot."""
        v = self.req.vehicles[vi]
        stops, loc, t, travel, _ = self._kept_prefix(vi, v, durations)
        if not stops and not jobs:
            return None
        start_s = max(self._s(v.shift.start_ms), self._s(self.req.now_ms))
        stops = list(stops)
        for job in jobs:
            leg = int(durations[loc, self.job_loc[job.id]])
            arrival = t + leg
            travel += leg
            begin = arrival
            fit = [w for w in job.windows if self._s(w.end_ms) >= arrival]
            if fit:
                begin = max(arrival, self._s(fit[0].start_ms))
            t = begin + job.service_s
            stops.append(PlannedStop(job.id, self._ms(arrival), self._ms(t), begin - arrival))
            loc = self.job_loc[job.id]
        leg = int(durations[loc, self.end_loc[vi]])
        return PlannedRoute(v.vehicle_id, tuple(stops), self._ms(start_s), self._ms(t + leg),
                            travel + leg)

    def _solve_once(self, durations, level: int, time_limit_s: float, attempt: int,
                    initial: bool = False):
        import vroom

        req = self.req
        rank = {jid: i for i, jid in enumerate(self.jobs)}
        problem = vroom.Input()
        problem.set_durations_matrix("car", durations)
        prefixes = []
        dims = self.dimensions or ["_"]
        for vi, v in enumerate(req.vehicles):
            stops, loc, t, travel, used = self._kept_prefix(vi, v, durations)
            prefixes.append((stops, travel))
            left = [max(0, c - u) for c, u in zip(v.capacity.vector(dims), used.vector(dims),
                                                   strict=True)]
            own = {self.skill_no[s] for s in v.skills} | {self._vehicle_skill(vi)}
            end = self._s(v.shift.end_ms)
            steps = self._initial_steps(v, rank) if initial and v.initial else ()
            problem.add_vehicle(vroom.Vehicle(
                id=vi, start=loc, end=self.end_loc[vi], capacity=left, skills=own,
                time_window=vroom.TimeWindow(min(t, end), max(t, end)), steps=steps))
        kept = set(self.kept_where)
        order = list(req.jobs)
        if attempt:
            random.Random(attempt).shuffle(order)
        for job in order:
            if job.id in kept or job.kind is JobKind.DELIVERY or self._expired(job):
                continue
            skills = {self.skill_no[s] for s in job.skills}
            amount = job.demand.vector(dims)
            if job.kind is JobKind.PICKUP:
                other = self.jobs[job.pair]
                if other.id in kept or self._expired(other):
                    continue  # goods already on board, or the delivery can no longer be made
                problem.add_job(vroom.Shipment(
                    pickup=vroom.ShipmentStep(rank[job.id], self.job_loc[job.id],
                                              default_service=job.service_s,
                                              time_windows=self._windows(job)),
                    delivery=vroom.ShipmentStep(rank[other.id], self.job_loc[other.id],
                                                default_service=other.service_s,
                                                time_windows=self._windows(other)),
                    amount=amount, skills=skills, priority=max(job.priority, other.priority)))
            else:
                problem.add_job(vroom.Job(rank[job.id], self.job_loc[job.id],
                                          default_service=job.service_s, delivery=amount,
                                          skills=skills, priority=job.priority,
                                          time_windows=self._windows(job)))
        # A delivery whose pickup is under way: the goods are on board that vehicle.
        for job in req.jobs:
            if job.kind is JobKind.DELIVERY and job.pair in kept and job.id not in kept \
                    and not self._expired(job):
                vi = [v.vehicle_id for v in req.vehicles].index(self.kept_where[job.pair])
                problem.add_job(vroom.Job(
                    rank[job.id], self.job_loc[job.id], default_service=job.service_s,
                    pickup=[0] * len(dims), skills={self._vehicle_skill(vi)},
                    priority=job.priority, time_windows=self._windows(job)))
        ids = list(self.jobs)
        solution = problem.solve(exploration_level=level, nb_threads=SOLVER_THREADS,
                                 timeout=timedelta(seconds=time_limit_s))
        routes_df = solution.routes
        routes = []
        served = set(kept)
        for vi, v in enumerate(req.vehicles):
            stops, travel = prefixes[vi]
            stops = list(stops)
            rows = routes_df[routes_df["vehicle_id"] == vi] if len(routes_df) else routes_df
            start_s = self._s(req.now_ms)
            end_s = None
            for row in rows.itertuples():
                if row.type in ("job", "pickup", "delivery"):
                    jid = ids[int(row.id)]
                    arrival = int(row.arrival)
                    wait = int(row.waiting_time)
                    stops.append(PlannedStop(jid, self._ms(arrival),
                                             self._ms(arrival + wait + int(row.service)), wait))
                    served.add(jid)
                elif row.type == "start" and not v.kept:
                    start_s = int(row.arrival)
                elif row.type == "end":
                    end_s = int(row.arrival)
                    travel += int(row.duration)
            if not stops:
                continue
            if end_s is None:  # only kept stops: drive back from the last one
                last = self.job_loc[stops[-1].job_id]
                leg = int(durations[last, self.end_loc[vi]])
                travel += leg
                end_s = self._s(stops[-1].departure_ms) + leg
            routes.append(PlannedRoute(v.vehicle_id, tuple(stops), self._ms(start_s),
                                       self._ms(end_s), travel))
        unassigned = {jid: self._why(self.jobs[jid]) for jid in ids if jid not in served}
        return tuple(routes), unassigned

    def _expired(self, job: Job) -> bool:
        """Every window of the job has passed (no window: never)."""
        return bool(job.windows) and all(w.end_ms < self.req.now_ms for w in job.windows)

    def _vehicle_skill(self, vi: int) -> int:
        """A skill only vehicle `vi` has: pins a job to it."""
        return len(self.skill_no) + 1 + vi

    def _why(self, job: Job) -> str:
        vehicles = self.req.vehicles
        able = [v for v in vehicles if job.skills <= v.skills]
        if not able:
            return f"no vehicle has the skills {sorted(job.skills)}"
        if not any(job.demand.fits_in(v.capacity) for v in able):
            return "its demand exceeds every able vehicle's capacity"
        if job.windows and all(w.end_ms < self.req.now_ms for w in job.windows):
            return "all its time windows have passed"
        if job.windows and not any(
                w.end_ms >= v.shift.start_ms and w.start_ms <= v.shift.end_ms
                for w in job.windows for v in able):
            return "no able vehicle's shift overlaps its time windows"
        return "no route can fit it within capacities, windows and shifts"
