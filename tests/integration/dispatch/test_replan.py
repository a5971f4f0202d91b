"""Re-planning on events through the real planner, store and dispatcher (both stores): a
failed stop and an offline vehicle during the routes make one proposal, planned from the
vehicles' live positions with started stops kept, for a dispatcher to approve."""

from __future__ import annotations

from backend.dispatch.model import (
    Actor,
    ActorKind,
    Amounts,
    Depot,
    FleetVehicle,
    Job,
    JobState,
    Place,
    Point,
    RouteStatus,
    VehicleType,
)
from backend.dispatch.planning import PlanningService
from backend.dispatch.replan import COALESCE_MS
from backend.dispatch.replanner import Replanner
from backend.dispatch.service import Dispatcher
from backend.dispatch.solver_worker import SolverWorker
from backend.store.base import StoredReading
from geostream.clock import wall_ms
from tests.integration.dispatch import helsinki

S = JobState
ANN = Actor(ActorKind.PERSON, "ann")
DRIVER = Actor(ActorKind.PERSON, "driver-1")
HOUR_MS = 3_600_000
# The shift started an hour before this run's hour (PostgreSQL keeps readings only within its
# partition window around today).
T0 = (wall_ms() // HOUR_MS - 1) * HOUR_MS
SHIFT_END = T0 + 8 * HOUR_MS


def node_point(i: int) -> Point:
    g = helsinki.graph()
    k = (i * 97) % g.node_count
    return Point(float(g.lat[k]), float(g.lon[k]))


async def test_failed_stop_and_offline_vehicle_make_one_proposal(any_store, tmp_path):
    store = any_store
    await store.put_catalogue(VehicleType("van", "Van", capacity=Amounts.of(kg=100)), T0)
    await store.put_catalogue(Depot("d1", "Depot", Place(node_point(0))), T0)
    for v in ("v1", "v2"):
        await store.put_dispatch_vehicle(FleetVehicle(v, "van", "d1"), T0)
    await store.add_jobs([Job(f"j{i}", Place(node_point(i + 1)), service_s=120,
                              demand=Amounts.of(kg=30)) for i in range(6)], T0)
    now = [T0]
    published = []
    dispatcher = Dispatcher(store)
    planning = PlanningService(store, dispatcher,
                               SolverWorker(helsinki.extract(), tmp_path / "roads"),
                               lambda: now[0])
    replanner = Replanner(planning, lambda *a: published.append(a), lambda: now[0],
                          dispatcher.live_vehicles)
    dispatcher.on_event = replanner.on_event
    try:
        kept = await planning.plan(planning_shift(), "ann")
        await planning.approve(kept.proposal.id, ANN)
        routes = {r.vehicle_id: r for r in await store.dispatch_routes()}
        assert {v: len(r.stops) for v, r in routes.items()} == {"v1": 3, "v2": 3}
        for r in routes.values():  # both routes go out
            await dispatcher.save_route(r.__class__(**{**r.__dict__,
                                                       "status": RouteStatus.DISPATCHED}),
                                        r.version, ANN, T0)
        assert dispatcher.live_vehicles() == {"v1", "v2"}
        first, second, third = routes["v1"].job_ids
        now[0] = T0 + HOUR_MS
        await dispatcher.change_state(first, S.EN_ROUTE, DRIVER, now[0], "t-go")
        here = node_point(300)
        await store.write([StoredReading("v1", 1, 1, now[0] - 30_000, "pos", lat=here.lat,
                                         lon=here.lon, received_ms=now[0])], [])
        # the events: a stop fails, a vehicle goes offline (its alert as published)
        await dispatcher.change_state(second, S.FAILED, DRIVER, now[0], "t-fail")
        replanner.on_alert({"rule": "offline", "state": "open", "vehicle": "v2"})
        assert await replanner.run_due() is None  # not yet: events close together coalesce
        now[0] += COALESCE_MS
        body = await replanner.run_due()

        assert body["cause"] == f"stop {second} failed; vehicle v2 offline"
        assert body["starts"]["v1"] == f"live position at {now[0] - COALESCE_MS - 30_000}"
        assert "v2" not in body["starts"]  # unavailable: planned for nothing new
        planned = {r["vehicle_id"]: r["stops"] for r in body["routes"]}
        assert planned["v1"][0]["job_id"] == first and planned["v1"][0]["kept"]
        assert "v2" not in planned
        after = body["diff"]["routes_after"]
        assert after["v1"][0] == second  # the failed stop stays on the route, first
        assert after.get("v2", []) == []  # the offline van's stops went elsewhere
        on_v1_or_left = set(after["v1"]) | {u["job_id"] for u in body["unassigned"]}
        assert set(routes["v2"].job_ids) <= on_v1_or_left
        assert all(u["reason"] for u in body["unassigned"])
        # on the live feed with the vehicles it touches: only who sees both gets it
        assert published == [("proposal", {k: body[k] for k in (
            "id", "cause", "status", "created_ms", "based_on_version", "diff")} | {
            "vehicles": ["v1", "v2"]}, None)]
        # nothing changed until a dispatcher approves
        assert (await store.dispatch_route(routes["v2"].id)).job_ids == routes["v2"].job_ids
        await planning.approve(body["id"], ANN)
        assert (await store.dispatch_route(routes["v2"].id)).job_ids == ()
        v1 = await store.dispatch_route(routes["v1"].id)
        assert v1.job_ids[:2] == (second, first)
        assert (await store.job(first)).state is S.EN_ROUTE
    finally:
        replanner.close()
        await planning.close()


def planning_shift():
    from backend.dispatch.model import Shift

    return Shift(T0, SHIFT_END)
