"""Dispatch planning over HTTP on both stores: plan → proposal → approve; stale approvals are
refused with the new diff; one plan at a time (429), cancel; answers checked against the spec."""

from __future__ import annotations

import asyncio

import pytest

from backend.api.planning import PLANNING
from backend.dispatch.model import (
    Amounts,
    Depot,
    FleetVehicle,
    Job,
    JobState,
    Place,
    Point,
    VehicleType,
)
from backend.dispatch.planner import PlanRequest, PlanVehicle
from backend.dispatch.planning import FLEET, PlanningService, proposal_json
from backend.dispatch.service import Dispatcher
from backend.dispatch.solver_worker import PlanCancelled, SolverWorker
from backend.dispatch.storage import JobQuery
from tests.integration.api.apphelp import Api
from tests.integration.dispatch import helsinki

T0 = 1_790_000_000_000
SHIFT = {"start_ms": T0, "end_ms": T0 + 8 * 3_600_000}


def node_point(i: int) -> Point:
    g = helsinki.graph()
    k = (i * 97) % g.node_count
    return Point(float(g.lat[k]), float(g.lon[k]))


async def seed(store, n_jobs: int = 6) -> None:
    await store.put_catalogue(VehicleType("van", "Van", capacity=Amounts.of(kg=100)), T0)
    await store.put_catalogue(Depot("d1", "Depot", Place(node_point(0))), T0)
    for v in ("v1", "v2"):
        await store.put_dispatch_vehicle(FleetVehicle(v, "van", "d1"), T0)
    await store.add_jobs([Job(f"j{i}", Place(node_point(i + 1)), service_s=120,
                              demand=Amounts.of(kg=30)) for i in range(n_jobs)], T0)


@pytest.fixture
def planning_api(store_url, tmp_path):
    services = []

    def mount(app, store):
        svc = PlanningService(store, Dispatcher(store),
                              SolverWorker(helsinki.extract(), tmp_path / "roads"), lambda: T0)
        services.append(svc)
        app[PLANNING] = svc

    class Ctx:
        async def __aenter__(self):
            self.api = Api(store_url, mount=mount)
            await self.api.__aenter__()
            self.svc = services[0]
            return self.api, self.svc

        async def __aexit__(self, *exc):
            await self.svc.close()
            await self.api.__aexit__(*exc)

    return Ctx()


async def test_plan_approve_and_a_stale_approval(planning_api):
    async with planning_api as (api, svc):
        await seed(api.store)
        await api.call("POST", "/api/dispatch/plan", role="viewer", body={"shift": SHIFT},
                       expect=403)
        _, p = await api.call("POST", "/api/dispatch/plan", role="dispatcher",
                              body={"shift": SHIFT}, expect=201)
        assert "road network Helsinki.osm.pbf" in p["basis"]
        planned = sorted(s["job_id"] for r in p["routes"] for s in r["stops"])
        assert planned == [f"j{i}" for i in range(6)] and not p["unassigned"]
        assert all(sum(30 for _ in r["stops"]) <= 100 for r in p["routes"])  # capacity
        assert {c["kind"] for c in p["diff"]["changes"]} == {"added"}
        await api.call("GET", f"/api/dispatch/proposals/{p['id']}", expect=200)
        # kept in the store: another node (or this one after a restart) reads it as it was
        other = await PlanningService(api.store, Dispatcher(api.store), None,
                                      lambda: T0).get(p["id"])
        assert proposal_json(other) == p and p["status"] == "open" and p["cause"] == "on demand"
        _, listed = await api.call("GET", "/api/dispatch/proposals", expect=200)
        assert [x["id"] for x in listed["proposals"]] == [p["id"]]
        # a dispatcher of v1 only neither sees nor approves a plan that touches v2
        _, mine = await api.call("GET", "/api/dispatch/proposals", role="dispatcher",
                                 vehicles=["v1"], expect=200)
        assert mine["proposals"] == []
        await api.call("GET", f"/api/dispatch/proposals/{p['id']}", role="dispatcher",
                       vehicles=["v1"], expect=404)
        await api.call("POST", f"/api/dispatch/proposals/{p['id']}/approve", role="dispatcher",
                       vehicles=["v1"], expect=404)

        _, done = await api.call("POST", f"/api/dispatch/proposals/{p['id']}/approve",
                                 role="dispatcher", expect=200)
        _, twice = await api.call("POST", f"/api/dispatch/proposals/{p['id']}/approve",
                                  role="dispatcher", expect=409)
        assert "approved" in twice["error"]
        _, listed = await api.call("GET", "/api/dispatch/proposals?status=approved",
                                   expect=200)
        assert [x["id"] for x in listed["proposals"]] == [p["id"]]
        assert len(done["routes"]) == len(p["routes"])
        records = await api.store.jobs(JobQuery())
        assert {r.state for r in records} == {JobState.ASSIGNED}
        on = {r.job.id: r.route_id for r in records}
        for route in p["routes"]:
            rid = f"{route['vehicle_id']}-{T0}"
            assert all(on[s["job_id"]] == rid for s in route["stops"])
            stored = await api.store.dispatch_route(rid)
            assert stored.job_ids == tuple(s["job_id"] for s in route["stops"])

        # a re-plan on the new state, then the state moves on before approval
        _, again = await api.call("POST", "/api/dispatch/plan", role="dispatcher",
                                  body={"shift": SHIFT}, expect=201)
        await api.store.add_jobs([Job("late", Place(node_point(50)))], T0 + 1)
        _, stale = await api.call("POST", f"/api/dispatch/proposals/{again['id']}/approve",
                                  role="dispatcher", expect=409)
        assert "job late added" in stale["since"]
        assert stale["based_on_version"] == again["based_on_version"] != stale["current_version"]
        # nothing was applied: the routes are the approved ones
        for route in p["routes"]:
            stored = await api.store.dispatch_route(f"{route['vehicle_id']}-{T0}")
            assert stored.job_ids == tuple(s["job_id"] for s in route["stops"])
        assert (await api.store.job("late")).state is JobState.UNASSIGNED


async def test_one_plan_at_a_time_and_cancel(planning_api):
    async with planning_api as (api, svc):
        await seed(api.store, 2)
        g = helsinki.graph()
        depot = node_point(0)
        big = PlanRequest(
            tuple(PlanVehicle(f"x{i}", depot, depot, __import__(
                "backend.dispatch.model", fromlist=["Shift"]).Shift(T0, T0 + 36_000_000),
                Amounts.of(kg=1000)) for i in range(10)),
            tuple(Job(f"b{k}", Place(Point(float(g.lat[k]), float(g.lon[k]))), service_s=60)
                  for k in range(0, 1500, 5)), T0, exploration=5, time_limit_s=120)
        running = asyncio.create_task(svc.worker.plan(FLEET, big))
        await asyncio.sleep(0)
        await svc.worker.wait_running(FLEET)
        status, body = await api.call("POST", "/api/dispatch/plan", role="dispatcher",
                                      body={"shift": SHIFT})
        assert status == 429 and "already running" in body["error"]
        await api.call("DELETE", "/api/dispatch/plan", role="dispatcher", expect=204)
        with pytest.raises(PlanCancelled):
            await running
        await api.call("DELETE", "/api/dispatch/plan", role="dispatcher", expect=404)


async def test_bad_requests_and_unplannable_data(planning_api):
    async with planning_api as (api, svc):
        await api.call("POST", "/api/dispatch/plan", role="dispatcher",
                       body={"shift": {"start_ms": T0, "end_ms": T0 - 1}}, expect=400)
        await api.call("POST", "/api/dispatch/plan", role="dispatcher",
                       body={"shift": SHIFT, "time_limit_s": 1e9}, expect=400)
        _, err = await api.call("POST", "/api/dispatch/plan", role="dispatcher",
                                body={"shift": SHIFT}, expect=422)
        assert "no dispatch vehicles" in err["error"]
        await seed(api.store, 1)
        await api.store.add_jobs([Job("sea", Place(Point(60.10, 24.95)))], T0)
        _, err = await api.call("POST", "/api/dispatch/plan", role="dispatcher",
                                body={"shift": SHIFT}, expect=422)
        assert "nearest drivable road" in err["error"] or "no drivable road" in err["error"]
        await api.call("GET", "/api/dispatch/proposals/nope", expect=404)
        await api.call("POST", "/api/dispatch/proposals/nope/approve", role="dispatcher",
                       expect=404)


async def test_move_a_job_to_another_route_in_one_action(planning_api):
    async with planning_api as (api, svc):
        await seed(api.store, 5)
        _, p = await api.call("POST", "/api/dispatch/plan", role="dispatcher",
                              body={"shift": SHIFT}, expect=201)
        await api.call("POST", f"/api/dispatch/proposals/{p['id']}/approve", role="dispatcher",
                       expect=200)
        routes = {r.vehicle_id: r for r in await api.store.dispatch_routes()}
        full, light = sorted(routes.values(), key=lambda r: -len(r.stops))  # 3 and 2 stops
        assert (len(full.stops), len(light.stops)) == (3, 2)
        # the light route has room for one more (100 kg, 30 kg each): a job of the full one
        mover = full.job_ids[1]
        await api.call("POST", f"/api/jobs/{mover}/move", role="viewer",
                       body={"route_id": light.id}, expect=403)
        _, moved = await api.call("POST", f"/api/jobs/{mover}/move", role="dispatcher",
                                  body={"route_id": light.id}, expect=200)
        assert [r["id"] for r in moved["routes"]] == [full.id, light.id]
        src, dst = (await api.store.dispatch_route(full.id),
                    await api.store.dispatch_route(light.id))
        assert src.job_ids == tuple(j for j in full.job_ids if j != mover)
        assert sorted(dst.job_ids) == sorted((*light.job_ids, mover))
        assert all(s.arrival_ms is not None for s in dst.stops)  # re-sequenced with times
        rec = await api.store.job(mover)
        assert (rec.route_id, rec.state) == (light.id, JobState.ASSIGNED)
        # now full: another job does not fit, and nothing changes
        other = src.job_ids[0]
        _, err = await api.call("POST", f"/api/jobs/{other}/move", role="dispatcher",
                                body={"route_id": light.id}, expect=409)
        assert (f"job {other} cannot go on route {light.id}" in err["error"]
                or f"job {other} fits on route {light.id} only by leaving" in err["error"])
        assert (await api.store.dispatch_route(full.id)).job_ids == src.job_ids
        assert (await api.store.job(other)).route_id == full.id
        await api.call("POST", f"/api/jobs/{mover}/move", role="dispatcher",
                       body={"route_id": light.id}, expect=409)  # there already
        await api.call("POST", "/api/jobs/nope/move", role="dispatcher",
                       body={"route_id": light.id}, expect=404)
        await api.call("POST", f"/api/jobs/{other}/move", role="dispatcher",
                       body={"route_id": "nope"}, expect=404)
        await api.call("POST", f"/api/jobs/{other}/move", role="dispatcher",
                       body={"route": light.id}, expect=400)
