"""`plan_routes` over MCP: an AI client's plan is a proposal that changes nothing until a
dispatcher approves it (docs/planning.md)."""

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
    VehicleType,
)
from backend.dispatch.storage import JobQuery
from tests.mcptools.test_mcp import backend, call, http_client  # noqa: F401 (fixture)

START, END = "2026-12-07T08:00", "2026-12-07T16:00"


async def test_an_ai_plan_waits_for_a_dispatcher(backend):  # noqa: F811
    store = backend.store
    await store.put_catalogue(VehicleType("van", "Van", capacity=Amounts.of(kg=20)), 1)
    await store.put_catalogue(Depot("d", "Depot", Place(Point(53.544, 9.984))), 1)
    for v in ("truck-1", "truck-2"):
        await store.put_dispatch_vehicle(FleetVehicle(v, "van", "d"), 1)
    await store.add_jobs([Job(f"j{i}", Place(Point(53.54 + i * 0.002, 9.98)),
                              demand=Amounts.of(kg=8)) for i in range(5)], 1)
    async with http_client(backend.url, backend.tokens["dispatcher"]) as client:
        p = await call(client, "plan_routes", start=START, end=END)
    assert "straight line" in p["basis"]  # no road network configured
    assert p["status"] == "waiting for a dispatcher's approval"
    planned = sorted(j for r in p["routes"] for j in r["stops"])
    assert len(planned) == 4 and len(p["unassigned"]) == 1  # 2 × 20 kg for 5 × 8 kg
    assert p["changes"] == {"added": 4}
    # nothing was applied
    assert {r.state for r in await store.jobs(JobQuery())} == {JobState.UNASSIGNED}
    assert await store.dispatch_routes() == []
    # a dispatcher approves it
    done = await backend.planning.approve(p["proposal_id"], Actor(ActorKind.PERSON, "ann"))
    assert len(done["routes"]) == 2
    assert sorted(r.job.id for r in await store.jobs(JobQuery(states=(JobState.ASSIGNED,)))) \
        == planned
    async with http_client(backend.url, backend.tokens["viewer"]) as client:
        refused = await client.call_tool("plan_routes", {"start": START, "end": END})
    assert refused.is_error and "needs role dispatcher" in refused.content[0].text


async def test_route_etas_over_mcp(backend):  # noqa: F811
    from backend.dispatch.model import Route, RouteStatus, RouteStop, Shift, TimeWindow
    from backend.store.base import StoredReading
    from geostream.clock import wall_ms

    store, now = backend.store, wall_ms()
    d = backend.dispatch
    # 5.5 km south and north of the vehicle; e2's window closes in 20 minutes
    await d.add_jobs([Job("e1", Place(Point(53.45, 9.98))),
                      Job("e2", Place(Point(53.55, 9.98)),
                          windows=(TimeWindow(now, now + 1_200_000),))], now)
    await d.save_route(Route("re", "truck-1", Shift(now - 1000, now + 3_600_000), "d", "d",
                             stops=(RouteStop("e1"), RouteStop("e2")),
                             status=RouteStatus.DISPATCHED), None,
                       Actor(ActorKind.PERSON, "ann"), now)
    r = StoredReading("truck-1", 99, 1, now, "pos", lat=53.50, lon=9.98, received_ms=now)
    await store.write([r], [])
    await d.on_committed([r], now)
    async with http_client(backend.url, backend.tokens["viewer"]) as client:
        got = await call(client, "route_etas", vehicle="truck-1")
        none = await client.call_tool("route_etas", {"vehicle": "truck-2"})
        swapped = await call(client, "eta_what_if", vehicle="truck-1", stops=["e2", "e1"])
    assert got["route_id"] == "re" and [s["job_id"] for s in got["stops"]] == ["e1", "e2"]
    assert got["stops"][0]["eta_ms"] > now and "straight line" in got["basis"]
    assert got["late_risk"] == ["e2"]  # after e1: ~43 minutes on the straight-line basis
    assert none.is_error and "no dispatched or active route" in none.content[0].text
    # e2 first (~14 minutes): not late; and nothing was changed
    assert [s["job_id"] for s in swapped["stops"]] == ["e2", "e1"] and swapped["late"] == []
    assert (await store.dispatch_route("re")).job_ids == ("e1", "e2")
