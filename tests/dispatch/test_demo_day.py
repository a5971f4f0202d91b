"""The demo's dispatch day (hil/demo_dispatch.py): its jobs are planned by the real planner on
the Helsinki roads and approved, and a vehicle driving its route file (the same hil.gps_sim
fixes the demo plays, in emulated time) is detected arriving at its first stop, with live
ETAs published on the way."""

from __future__ import annotations

import datetime as dt

from backend.dispatch.eta_service import EtaService
from backend.dispatch.matrix import RoadMatrix
from backend.dispatch.model import JobState, Shift
from backend.dispatch.planning import PlanningService
from backend.dispatch.service import Dispatcher
from backend.dispatch.solver_worker import SolverWorker
from backend.store.base import StoredReading
from backend.store.sqlite import SqliteStore
from hil import demo_dispatch
from hil.gps_sim import fixes, load_route_file
from tests.dispatch import helsinki

VEHICLES = [f"truck-{i}" for i in range(1, 7)]
START = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)
T0 = round(START.timestamp() * 1000)
RATE_HZ = 1.0
# Bound on the emulated drive: the first stop is reached well within an hour on these roads.
MAX_FIXES = 3600


async def test_the_demo_day_is_planned_and_its_first_stop_detected(tmp_path):
    store = SqliteStore(str(tmp_path / "demo.db"))
    await store.open()
    etas_seen = []
    graph = helsinki.graph()
    etas = EtaService(store, lambda: helsinki.road_matrix(),
                      lambda field, payload, vehicle, route_id=None: etas_seen.append(payload))
    d = Dispatcher(store, etas=etas)
    worker = SolverWorker(helsinki.extract(), tmp_path / "roads")
    planning = PlanningService(store, d, worker, lambda: T0)
    try:
        shift = Shift(T0, T0 + 8 * 3_600_000)
        routes = await demo_dispatch.plan_day(store, planning, d, graph, VEHICLES, shift, T0)
        again = await demo_dispatch.plan_day(store, planning, d, graph, VEHICLES, shift, T0)
    finally:
        await planning.close()
    assert {r.id for r in again} == {r.id for r in routes}  # a restart plans nothing twice
    planned = [j for r in routes for j in r.job_ids]
    assert len(planned) == len(set(planned)) == demo_dispatch.JOBS_PER_VEHICLE * len(VEHICLES)
    # every van drives (capacity is the day's demand shared out, with a margin)
    assert sorted(r.vehicle_id for r in routes) == VEHICLES
    assert all(r.status.value == "dispatched" for r in routes)
    jobs = {rec.job.id: rec.job for rec in [await store.job(j) for j in planned]}
    files = demo_dispatch.write_route_files(graph, routes, jobs, tmp_path)
    route = routes[0]
    points, dwell = load_route_file(str(files[route.vehicle_id]))
    assert len(dwell) == len(route.job_ids)
    # every waypoint is on the road graph (within the snap limit)
    RoadMatrix(graph).snap([(lon, lat) for lat, lon in points])
    first = route.job_ids[0]
    stream = fixes("harbour", 0.0, RATE_HZ, START, 35.0, route_file=str(files[route.vehicle_id]))
    for seq in range(1, MAX_FIXES + 1):
        f = next(stream)
        r = StoredReading(route.vehicle_id, 1, seq, round(f.time.timestamp() * 1000), "pos",
                          lat=f.lat, lon=f.lon, speed_kmh=f.speed_kmh, received_ms=1)
        await store.write([r], [])
        await d.on_committed([r], r.time_ms)
        if (await store.job(first)).state is JobState.ARRIVED:
            break
    assert (await store.job(first)).state is JobState.ARRIVED
    assert etas_seen and etas_seen[0]["stops"][0]["job_id"] == first
    assert "road network" in etas_seen[0]["basis"]
    await store.close()
