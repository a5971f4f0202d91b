"""The planner on random small instances, checked against an exhaustive search written here.

Travel times come from a grid metric defined in this file (asymmetric: north is uphill), so
the expected costs depend on nothing in backend/dispatch but the plan's order of stops. The
feasibility of each plan (capacity, windows, skills, shift end) is re-simulated here too.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from backend.dispatch.matrix import Matrix
from backend.dispatch.model import (
    Amounts,
    Job,
    JobKind,
    Place,
    Point,
    Shift,
    TimeWindow,
)
from backend.dispatch.planner import PlanError, PlanRequest, PlanVehicle, plan

T0 = 1_790_000_000_000  # ms
HOUR_S = 3600


def seconds(p: Point, q: Point) -> int:
    """East/west 60,000 s per degree, north 100,000, south 80,000 (triangle inequality holds)."""
    dlat = q.lat - p.lat
    return int(round(60_000 * abs(q.lon - p.lon) + (100_000 if dlat > 0 else 80_000) * abs(dlat)))


class GridTimes:
    basis = "test grid"

    def matrix(self, points):
        pts = [Point(lat=lat, lon=lon) for lon, lat in points]
        return Matrix(np.array([[seconds(p, q) for q in pts] for p in pts], dtype=float),
                      self.basis)


def rand_point(rng) -> Point:
    return Point(lat=round(rng.uniform(60.160, 60.180), 5), lon=round(rng.uniform(24.93, 24.96), 5))


def random_instance(rng, n_jobs: int, n_vehicles: int):
    depot = rand_point(rng)
    shift_h = rng.choice([2, 3, 8])
    vehicles = []
    for i in range(n_vehicles):
        skills = frozenset(rng.sample(["fridge", "lift"], rng.randint(0, 2)))
        vehicles.append(PlanVehicle(f"v{i}", depot, depot,
                                    Shift(T0, T0 + shift_h * HOUR_S * 1000),
                                    Amounts.of(kg=rng.choice([30, 60, 1000])), skills))
    jobs = []
    for k in range(n_jobs):
        windows = ()
        if rng.random() < 0.6:
            start = rng.randint(0, 3 * HOUR_S)
            width = rng.choice([300, 900, 1800, 3600])
            windows = (TimeWindow(T0 + start * 1000, T0 + (start + width) * 1000),)
        skills = frozenset(rng.sample(["fridge", "lift"], 1)) if rng.random() < 0.2 else frozenset()
        jobs.append(Job(f"j{k}", Place(rand_point(rng)), windows=windows,
                        service_s=rng.choice([0, 120, 600]), skills=skills,
                        demand=Amounts.of(kg=rng.randint(1, 25))))
    return vehicles, jobs


def simulate(vehicle: PlanVehicle, route: list[Job]):
    """(travel seconds, feasible?) of driving `route` from the shift start, as written in the
    model: arrive, wait for the window, serve; back by the shift's end; capacity and skills."""
    t = (vehicle.shift.start_ms - T0) // 1000
    end = (vehicle.shift.end_ms - T0) // 1000
    loc, travel, load = vehicle.start, 0, 0
    for job in route:
        leg = seconds(loc, job.place.point)
        travel += leg
        t += leg
        if job.windows:
            ok = [w for w in job.windows if (w.end_ms - T0) // 1000 >= t]
            if not ok:
                return travel, False
            t = max(t, (ok[0].start_ms - T0) // 1000)
        t += job.service_s
        load += job.demand.get("kg")
        if not job.skills <= vehicle.skills:
            return travel, False
        loc = job.place.point
    if route:
        leg = seconds(loc, vehicle.end)
        travel += leg
        t += leg
    return travel, t <= end and load <= vehicle.capacity.get("kg")


def brute_force(vehicles, jobs):
    """(most jobs served, least travel for that many) over every assignment and order."""
    best = [-1, math.inf]

    def extend(vi, route, routes_cost, served, remaining):
        v = vehicles[vi]
        travel, ok = simulate(v, route)
        if not ok:
            return
        # close this vehicle's route
        count, cost = served, routes_cost + travel
        if vi + 1 < len(vehicles):
            extend(vi + 1, [], cost, count, remaining)
        elif (count, -cost) > (best[0], -best[1]):
            best[0], best[1] = count, cost
        # or add one more job to it
        if served + len(remaining) < best[0]:
            return
        for j in sorted(remaining, key=lambda j: j.id):
            extend(vi, route + [j], routes_cost, served + 1, remaining - {j})

    extend(0, [], 0, 0, frozenset(jobs))
    return best[0], best[1]


def check_plan(vehicles, jobs, result):
    """The plan breaks no constraint; returns (served, travel) recomputed here."""
    by_id = {j.id: j for j in jobs}
    by_vehicle = {v.vehicle_id: v for v in vehicles}
    served, total = set(), 0
    for route in result.routes:
        stops = [by_id[s.job_id] for s in route.stops]
        travel, ok = simulate(by_vehicle[route.vehicle_id], stops)
        assert ok, f"{route.vehicle_id}: {[s.id for s in stops]} breaks a constraint"
        assert route.travel_s == travel
        for s in route.stops:  # the planned times honour the windows too
            job = by_id[s.job_id]
            begin = s.departure_ms - job.service_s * 1000
            assert not job.windows or any(w.contains(begin) for w in job.windows)
        served |= {s.id for s in stops}
        total += travel
    assert served.isdisjoint(result.unassigned) and served | set(result.unassigned) == set(by_id)
    return len(served), total


@pytest.mark.parametrize("seed", range(1130, 1250))
def test_small_instances_are_feasible_complete_and_near_optimal(seed):
    rng = random.Random(seed)
    n_vehicles = 1 if seed % 3 else 2
    n_jobs = rng.randint(3, 8 if n_vehicles == 1 else 6)
    vehicles, jobs = random_instance(rng, n_jobs, n_vehicles)
    result = plan(PlanRequest(tuple(vehicles), tuple(jobs), T0), GridTimes())
    served, cost = check_plan(vehicles, jobs, result)
    best_served, best_cost = brute_force(vehicles, jobs)
    assert served == best_served, f"left out jobs that could be served: {result.unassigned}"
    assert cost <= best_cost * 1.01 + 1e-9
    assert result.basis == "test grid" and result.cost_s == cost


def test_larger_random_instances_never_break_a_constraint():
    rng = random.Random(2024)
    for _ in range(3):
        vehicles, jobs = random_instance(rng, 60, 5)
        result = plan(PlanRequest(tuple(vehicles), tuple(jobs), T0), GridTimes())
        check_plan(vehicles, jobs, result)
        for jid, why in result.unassigned.items():
            assert why, jid


def _visit(jid, lat, lon, **kw):
    return Job(jid, Place(Point(lat, lon)), **kw)


DEPOT = Point(60.170, 24.940)
SHIFT = Shift(T0, T0 + 8 * HOUR_S * 1000)


def test_pickup_comes_before_its_delivery_on_one_route():
    jobs = (
        Job("p", Place(Point(60.175, 24.950)), kind=JobKind.PICKUP, pair="d",
            demand=Amounts.of(kg=10)),
        Job("d", Place(Point(60.165, 24.935)), kind=JobKind.DELIVERY, pair="p",
            demand=Amounts.of(kg=10)),
        _visit("x", 60.171, 24.945),
    )
    vehicles = tuple(PlanVehicle(f"v{i}", DEPOT, DEPOT, SHIFT, Amounts.of(kg=10))
                     for i in range(2))
    result = plan(PlanRequest(vehicles, jobs, T0), GridTimes())
    assert not result.unassigned
    route = next(r for r in result.routes if "p" in r.job_ids)
    assert route.job_ids.index("p") < route.job_ids.index("d")


def test_started_stops_stay_first_and_take_their_capacity():
    jobs = (
        _visit("far", 60.179, 24.959, demand=Amounts.of(kg=6)),
        _visit("near", 60.1701, 24.9401, demand=Amounts.of(kg=6)),
        _visit("mid", 60.175, 24.950, demand=Amounts.of(kg=6)),
    )
    v = PlanVehicle("v0", DEPOT, DEPOT, SHIFT, Amounts.of(kg=12), kept=("far",))
    result = plan(PlanRequest((v,), jobs, T0 + 60_000), GridTimes())
    (route,) = result.routes
    assert route.job_ids[0] == "far" and route.stops[0].kept
    assert len(route.job_ids) == 2  # 12 kg: the kept 6 kg and one more
    assert len(result.unassigned) == 1


def test_priority_decides_who_is_served_when_not_all_fit():
    jobs = tuple(_visit(f"j{i}", 60.171 + i * 0.001, 24.941, demand=Amounts.of(kg=5),
                        priority=100 if i == 3 else 0) for i in range(4))
    v = PlanVehicle("v0", DEPOT, DEPOT, SHIFT, Amounts.of(kg=5))
    result = plan(PlanRequest((v,), jobs, T0), GridTimes())
    assert result.routes[0].job_ids == ("j3",)


def test_an_impossible_job_is_unassigned_with_its_reason():
    jobs = (
        _visit("cold", 60.171, 24.941, skills=frozenset({"fridge"})),
        _visit("heavy", 60.172, 24.941, demand=Amounts.of(kg=500)),
        _visit("late", 60.173, 24.941, windows=(TimeWindow(T0 - 7_200_000, T0 - 3_600_000),)),
        _visit("ok", 60.174, 24.941),
    )
    v = PlanVehicle("v0", DEPOT, DEPOT, SHIFT, Amounts.of(kg=100))
    result = plan(PlanRequest((v,), jobs, T0), GridTimes())
    assert result.routes[0].job_ids == ("ok",)
    assert "skills" in result.unassigned["cold"]
    assert "capacity" in result.unassigned["heavy"]
    assert "passed" in result.unassigned["late"]


def test_inconsistent_requests_are_refused():
    v = PlanVehicle("v0", DEPOT, DEPOT, SHIFT)
    with pytest.raises(PlanError, match="no vehicles"):
        plan(PlanRequest((), (_visit("a", 60.17, 24.94),), T0), GridTimes())
    with pytest.raises(PlanError, match="kept job"):
        plan(PlanRequest((PlanVehicle("v0", DEPOT, DEPOT, SHIFT, kept=("zz",)),),
                         (_visit("a", 60.17, 24.94),), T0), GridTimes())
    with pytest.raises(PlanError, match="pair"):
        plan(PlanRequest((v,), (Job("p", Place(DEPOT), kind=JobKind.PICKUP, pair="d"),), T0),
             GridTimes())


def test_a_replan_starts_from_the_current_routes_even_when_they_no_longer_fit():
    rng = random.Random(77)
    vehicles, jobs = random_instance(rng, 40, 3)
    first = plan(PlanRequest(tuple(vehicles), tuple(jobs), T0), GridTimes())
    order = first.assignment()
    seeded = [PlanVehicle(v.vehicle_id, v.start, v.end, v.shift, v.capacity, v.skills,
                          initial=order.get(v.vehicle_id, ())) for v in vehicles]
    again = plan(PlanRequest(tuple(seeded), tuple(jobs), T0), GridTimes())
    check_plan(seeded, jobs, again)
    assert check_plan(seeded, jobs, again)[0] >= check_plan(vehicles, jobs, first)[0]
    # every job on the first vehicle, over its capacity: VROOM refuses it, the plan does not
    crowded = [PlanVehicle(v.vehicle_id, v.start, v.end, v.shift, Amounts.of(kg=10), v.skills,
                           initial=tuple(j.id for j in jobs) if i == 0 else ())
               for i, v in enumerate(vehicles)]
    check_plan(crowded, jobs, plan(PlanRequest(tuple(crowded), tuple(jobs), T0), GridTimes()))
