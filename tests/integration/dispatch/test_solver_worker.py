"""The solver's own process: plans there, one per fleet at a time, cancellable."""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from backend.dispatch.model import Amounts, Job, Place, Point, Shift, TimeWindow
from backend.dispatch.planner import PlanError, PlanRequest, PlanVehicle
from backend.dispatch.solver_worker import (
    MAX_QUEUED_PLANS,
    PlanCancelled,
    PlannerBusy,
    SolverWorker,
)
from tests.integration.dispatch import helsinki

T0 = 1_790_000_000_000


def request(n_jobs: int, n_vehicles: int = 3, seed: int = 1, **kw) -> PlanRequest:
    g = helsinki.graph()
    rng = random.Random(seed)

    def point():
        i = rng.randrange(g.node_count)
        return Point(float(g.lat[i]), float(g.lon[i]))

    depot = point()
    jobs = []
    for k in range(n_jobs):
        start = T0 + rng.randrange(0, 4) * 3_600_000
        jobs.append(Job(f"j{k}", Place(point()), windows=(TimeWindow(start, start + 7_200_000),),
                        service_s=120, demand=Amounts.of(kg=rng.randint(1, 20))))
    vehicles = tuple(PlanVehicle(f"v{i}", depot, depot, Shift(T0, T0 + 36_000_000),
                                 Amounts.of(kg=400)) for i in range(n_vehicles))
    return PlanRequest(vehicles, tuple(jobs), T0, **kw)


@pytest.fixture
async def worker(tmp_path):
    w = SolverWorker(helsinki.extract(), tmp_path / "roads")
    yield w
    await w.close()


async def test_plans_in_its_own_process_on_the_road_network(worker):
    result = await worker.plan("fleet-a", request(12))
    assert worker._proc.pid != os.getpid()
    assert "road network Helsinki.osm.pbf" in result.basis == worker.basis
    assert sum(len(r.stops) for r in result.routes) + len(result.unassigned) == 12
    assert not result.unassigned


async def test_one_plan_per_fleet_and_a_bounded_queue(worker):
    first = asyncio.create_task(worker.plan("fleet-a", request(5)))
    await asyncio.sleep(0)  # let it register
    with pytest.raises(PlannerBusy, match="fleet-a"):
        await worker.plan("fleet-a", request(5))
    others = [asyncio.create_task(worker.plan(f"fleet-{i}", request(3, seed=i)))
              for i in range(MAX_QUEUED_PLANS)]
    await asyncio.sleep(0)
    with pytest.raises(PlannerBusy, match="in progress"):
        await worker.plan("fleet-z", request(3))
    await first
    for t in others:
        await t
    assert worker.status("fleet-a") is None


async def test_a_running_plan_is_cancelled_and_the_next_one_runs(worker):
    long = asyncio.create_task(worker.plan("fleet-a", request(300, 10, exploration=5,
                                                             time_limit_s=120)))
    await asyncio.sleep(0)
    await worker.wait_running("fleet-a")
    assert worker.status("fleet-a") == "running"
    assert worker.cancel("fleet-a")
    with pytest.raises(PlanCancelled):
        await long
    assert not worker.cancel("fleet-a")
    again = await worker.plan("fleet-a", request(4))
    assert not again.unassigned


async def test_a_stop_off_the_map_is_a_plan_error(worker):
    req = request(3)
    bad = Job("sea", Place(Point(60.10, 24.95)))
    with pytest.raises(PlanError, match="sea|off the map"):
        await worker.plan("fleet-a", PlanRequest(req.vehicles, req.jobs + (bad,), T0))


async def test_a_file_that_is_not_osm_is_reported_in_words(tmp_path):
    fake = tmp_path / "region.osm.pbf"
    fake.write_text("not a map")
    w = SolverWorker(fake, tmp_path / "roads")
    try:
        with pytest.raises(PlanError, match="not an OpenStreetMap PBF"):
            await w.plan("fleet-a", request(2))
    finally:
        await w.close()
