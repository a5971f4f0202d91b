"""The dispatch API on SQLite and PostgreSQL: roles, vehicle-group scoping, CSV import errors
per row with nothing imported, bad input refused with the field named, stale route versions,
idempotent state changes, and live changes on the hub's dispatch topics."""

import pytest

from backend.hub import DISPATCH, Hub, route_topic
from tests.integration.api.apphelp import Api

T0 = 1_796_000_000_000
D = "dispatcher"
PLACE = {"lat": 60.17, "lon": 24.94}
CSV = ("id,name,lat,lon,window_start,window_end,service_min,demand_kg\n"
       "a,A,60.17,24.94,2026-12-07T08:00Z,2026-12-07T10:00Z,5,10\n"
       "b,B,60.18,24.95,,,3,20\n"
       "c,C,60.19,24.96,,,,\n")


def route(vehicle="v1", stops=("a",), version=None, status="draft"):
    body = {"vehicle_id": vehicle, "shift": {"start_ms": T0, "end_ms": T0 + 8 * 3_600_000},
            "start_depot": "dep", "stops": [{"job_id": s} for s in stops], "status": status}
    if version is not None:
        body["version"] = version
    return body


@pytest.fixture
async def api(store_url):
    async with Api(store_url) as api:
        for v in ("v1", "v2"):
            await api.store.add_vehicle(v)
        await api.call("POST", "/api/jobs/import", role=D, csv=CSV, expect=200)
        yield api


async def test_import_twice_is_harmless_and_a_changed_row_conflicts(api):
    _, again = await api.call("POST", "/api/jobs/import", role=D, csv=CSV, expect=200)
    assert (again["imported"], again["unchanged"]) == (0, 3)
    changed = CSV.replace("B,60.18", "B,60.28") + "d,D,60.1,24.9,,,,\n"
    _, err = await api.call("POST", "/api/jobs/import", role=D, csv=changed, expect=409)
    assert err["ids"] == ["b"]
    await api.call("GET", "/api/jobs/d", expect=404)  # nothing of it imported


async def test_broken_rows_are_each_reported_and_nothing_planned_is_lost(api):
    await api.call("PUT", "/api/routes/r1", role=D, body=route(stops=("a", "b")), expect=201)
    broken = ("id,lat,lon,window_start,window_end\n"
              "x1,60.1,24.9,,\n"
              "x2,60.1,200,,\n"  # longitude out of range
              "x3,60.1,24.9,2026-12-07T10:00Z,2026-12-07T09:00Z\n"  # impossible window
              "x4,sixty,24.9,,\n"
              "import,60.1,24.9,,\n")  # the import's URL word: no job may be called so
    _, err = await api.call("POST", "/api/jobs/import", role=D, csv=broken, expect=400)
    assert [(e["line"], e["id"]) for e in err["errors"]] == [(3, "x2"), (4, "x3"), (5, "x4"),
                                                              (6, "import")]
    assert "reserved" in err["errors"][3]["error"]
    assert "lon" in err["errors"][0]["error"] and "end is before" in err["errors"][1]["error"]
    await api.call("GET", "/api/jobs/x1", expect=404)
    _, r1 = await api.call("GET", "/api/routes/r1", expect=200)
    assert [s["job_id"] for s in r1["stops"]] == ["a", "b"]
    _, jobs = await api.call("GET", "/api/jobs?state=assigned", expect=200)
    assert [j["id"] for j in jobs["jobs"]] == ["a", "b"]


@pytest.mark.parametrize("body,field", [
    ({"id": "z", "place": {"lat": 91, "lon": 0}}, "lat"),
    ({"id": "z", "place": PLACE, "windows": [{"start_ms": 5, "end_ms": 1}]}, "end is before"),
    ({"id": "z", "place": PLACE, "colour": "red"}, "unknown field 'colour'"),
    ({"id": "z z", "place": PLACE}, "id"),
    ({"id": "z", "place": PLACE, "demand": {"kg": -1}}, "kg"),
    ({"id": "z", "place": PLACE, "notes": None}, "notes"),  # null only where the spec says
    ({"id": "z", "place": {**PLACE, "radius_m": None}}, "radius_m"),
    ({"id": "z", "place": PLACE, "windows": [{}]}, "a start and an end"),
])
async def test_bad_job_bodies_name_the_field(api, body, field):
    status, err = await api.call("POST", "/api/jobs", role=D, body=body)
    assert status == 400 and field in err["error"]


@pytest.mark.parametrize("path,body", [
    ("/api/drivers/d1", {"id": "d1", "display_name": "D", "skills": ["a", 0, [None, None]]}),
    ("/api/vehicle-types/t1", {"id": "t1", "name": "T", "class": "van",
                               "skills": ["a", {"b": 1}, [None]]}),
])
async def test_skills_of_mixed_types_are_refused_not_a_server_error(api, path, body):
    status, err = await api.call("PUT", path, role="admin", body=body)
    assert status == 400 and "skills" in err["error"]


@pytest.mark.parametrize("body,field", [
    ({"to": "cancelled", "lat": 0, "lon": {}}, "lon"),
    ({"to": "cancelled", "lat": 91, "lon": 0}, "lat"),
    ({"to": "cancelled", "colour": "red"}, "colour"),
    ({"to": "cancelled", "at_ms": None}, "at_ms"),
])
async def test_bad_state_changes_name_the_field(api, body, field):
    status, err = await api.call("POST", "/api/jobs/c/transitions", role=D, body=body)
    assert status == 400 and field in err["error"]
    _, job = await api.call("GET", "/api/jobs/c", expect=200)
    assert job["state"] == "unassigned"


async def test_roles_and_vehicle_groups(api):
    await api.call("POST", "/api/jobs", role="viewer", body={"id": "q", "place": PLACE},
                   expect=403)
    await api.call("PUT", "/api/routes/r1", role=D, body=route("v1", ("a",)), expect=201)
    await api.call("PUT", "/api/routes/r2", role=D, body=route("v2", ("b",)), expect=201)
    _, seen = await api.call("GET", "/api/jobs", vehicles=["v2"], expect=200)
    assert [j["id"] for j in seen["jobs"]] == ["b", "c"]  # a is on v1's route
    await api.call("GET", "/api/jobs/a", vehicles=["v2"], expect=404)
    await api.call("GET", "/api/routes/r1", vehicles=["v2"], expect=404)
    _, routes = await api.call("GET", "/api/routes", vehicles=["v2"], expect=200)
    assert [r["id"] for r in routes["routes"]] == ["r2"]
    await api.call("POST", "/api/jobs/a/cancel", role=D, vehicles=["v2"], expect=404)
    await api.call("PUT", "/api/routes/r3", role=D, vehicles=["v2"], body=route("v1", ("c",)),
                   expect=404)


async def test_route_versions_and_assignment(api):
    _, r = await api.call("PUT", "/api/routes/r1", role=D, body=route(stops=("a", "b")),
                          expect=201)
    assert r["version"] == 1
    _, r = await api.call("PUT", "/api/routes/r1", role=D, body=route(stops=("b",), version=1),
                          expect=200)
    assert r["version"] == 2
    _, stale = await api.call("PUT", "/api/routes/r1", role=D,
                              body=route(stops=("c",), version=1), expect=409)
    assert stale["version"] == 2
    _, a = await api.call("GET", "/api/jobs/a", expect=200)
    assert (a["state"], a["route_id"]) == ("unassigned", None)
    _, busy = await api.call("PUT", "/api/routes/r2", role=D, body=route("v2", ("b",)),
                             expect=409)
    assert "b is assigned on route r1" in busy["error"]
    await api.call("PUT", "/api/routes/r2", role=D, body=route("v2", ("nope",)), expect=404)


async def test_state_changes_are_idempotent_and_checked(api):
    await api.call("PUT", "/api/routes/r1", role=D, body=route(stops=("a",)), expect=201)
    change = {"to": "completed", "id": "drv-1", "lat": 60.17, "lon": 24.94, "reason": "signed"}
    _, first = await api.call("POST", "/api/jobs/a/transitions", role=D, body=change,
                              expect=200)
    _, again = await api.call("POST", "/api/jobs/a/transitions", role=D, body=change,
                              expect=200)
    assert first["transition"] == again["transition"] and first["job"]["state"] == "completed"
    assert first["transition"]["by"] == {"kind": "person", "id": "dispatcher0"}
    _, err = await api.call("POST", "/api/jobs/a/cancel", role=D, expect=409)
    assert "cannot go from completed to cancelled" in err["error"]
    await api.call("PUT", "/api/jobs/a", role=D, body={"place": PLACE}, expect=409)
    _, hist = await api.call("GET", "/api/jobs/a/transitions", expect=200)
    assert [(t["from"], t["to"]) for t in hist["transitions"]] == [
        ("unassigned", "assigned"), ("assigned", "completed")]
    await api.call("POST", "/api/jobs/a/transitions", role=D, body={"to": "flying"},
                   expect=400)


async def test_changes_are_published_on_dispatch_topics(store_url):
    hub = Hub()
    async with Api(store_url, hub=hub) as api:
        await api.store.add_vehicle("v1")
        sub = hub.new_subscriber(may_see=lambda v: v == "v1")
        blind = hub.new_subscriber(may_see=lambda v: False)
        for s in (sub, blind):
            hub.add(s)
            hub.subscribe(s, DISPATCH)
        hub.subscribe(sub, route_topic("r1"))
        await api.call("POST", "/api/jobs/import", role=D, csv=CSV, expect=200)
        await api.call("PUT", "/api/routes/r1", role=D, body=route(stops=("a",)), expect=201)
        got = [(m["topic"], next(k for k in ("job", "route", "transition") if k in m))
               for m in sub.drain() if "event" not in m]
        assert ("dispatch", "job") in got and ("route:r1", "route") in got
        assert ("route:r1", "transition") in got
        unseen = [m for m in blind.drain() if "event" not in m]
        assert {next(k for k in ("job", "route", "transition") if k in m) for m in unseen} \
            == {"job"}  # jobs on no route: everyone; the route and its transitions: not
