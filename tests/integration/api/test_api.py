"""The REST API on real SQLite and real PostgreSQL: every answer is checked against
backend/openapi.yaml (tests/integration/api/apphelp.py), plus what the answers must say."""

import csv
import io
import math

import pytest

from backend.queries import haversine_m
from backend.store.base import StoredReading
from tests.integration.api.apphelp import Api

T0 = 1_763_856_000_000  # 2025-11-23T00:00:00Z
DAY = "from=2025-11-23T00:00:00Z&to=2025-11-24T00:00:00Z"
SQUARE = {"type": "Polygon", "coordinates": [[[8, 50], [8.01, 50], [8.01, 50.01], [8, 50.01],
                                              [8, 50]]]}
# v1 drives east along lat 50.005 at one point a minute: outside the square (lon < 8) until
# seq 10 (lon 8.0005), inside up to seq 19, outside again from seq 20
TRACK = [(i, 7.9905 + i * 0.001) for i in range(1, 40)]


def pos(vehicle, seq, lon, lat=50.005, minute=None, speed=30.0, fix=None, sats=None,
        hdop=None):
    return StoredReading(vehicle_id=vehicle, epoch=1, seq=seq,
                         time_ms=T0 + (minute if minute is not None else seq) * 60_000,
                         kind="pos", lat=lat, lon=lon, speed_kmh=speed, course_deg=90.0,
                         fix=fix, sats=sats, hdop=hdop, received_ms=T0)


def can(vehicle, seq, minute, **signals):
    return StoredReading(vehicle_id=vehicle, epoch=1, seq=seq, time_ms=T0 + minute * 60_000,
                         kind="can", data={"bus": "can0", **signals}, received_ms=T0)


async def seed(api: Api) -> None:
    s = api.store
    for v in ("v1", "v2"):
        await s.add_vehicle(v)
    await s.write([pos("v1", q, lon, fix=1, sats=q % 12, hdop=1.5) for q, lon in TRACK], [])
    # v2 parks inside the square; its CAN arrives newest first (backfill after it)
    await s.write([pos("v2", 1, 8.005, 50.005, minute=5, speed=0.0),
                   can("v2", 3, 30, coolant_c=91.5, gear="D", OBD_CoolantTemp=88)], [])
    await s.write([can("v2", 2, 20, coolant_c=70.0, fuel_pct=40)], [])


@pytest.fixture
async def api(store_url):
    async with Api(store_url) as api:
        await seed(api)
        yield api


async def test_vehicles_last_state(api):
    _, body = await api.call("GET", "/api/vehicles", expect=200)
    by_id = {v["id"]: v for v in body["vehicles"]}
    assert sorted(by_id) == ["v1", "v2"]
    v2 = by_id["v2"]
    # newest by device time per signal: the backfilled older batch did not overwrite coolant
    # with the unit of the agents' DBC (agent/dbc/obd2.dbc: OBD_CoolantTemp in degC); none
    # for a signal no DBC defines
    assert v2["can"] == {
        "coolant_c": {"value": 91.5, "time_ms": T0 + 30 * 60_000, "unit": None},
        "gear": {"value": "D", "time_ms": T0 + 30 * 60_000, "unit": None},
        "OBD_CoolantTemp": {"value": 88, "time_ms": T0 + 30 * 60_000, "unit": "degC"},
        "fuel_pct": {"value": 40, "time_ms": T0 + 20 * 60_000, "unit": None}}
    # the quality of the last position (seq 39: 39 % 12 = 3 satellites); none reported for v2
    assert by_id["v1"]["fix"] == {"fix": 1, "sats": 3, "hdop": 1.5}
    assert v2["fix"] == {"fix": None, "sats": None, "hdop": None}
    assert "bus" not in v2["can"]
    assert v2["position"]["lon"] == 8.005 and v2["position"]["time_ms"] == T0 + 5 * 60_000
    assert by_id["v1"]["position"]["seq"] == 39 and by_id["v1"]["position"]["speed_kmh"] == 30
    assert by_id["v1"]["fix_age_s"] >= (1_764_000_000_000 - T0 - 39 * 60_000) / 1000
    assert v2["link"] == {"connected": False, "connections": 0}
    assert v2["status"] is None and v2["revoked"] is False and v2["open_alerts"] == 0
    _, one = await api.call("GET", "/api/vehicles/v2", expect=200)
    assert one.pop("fix_age_s") >= v2.pop("fix_age_s") and one == v2
    await api.call("GET", "/api/vehicles/nope", expect=404)


async def test_provision_and_revoke_as_admin_only(api):
    await api.call("POST", "/api/vehicles", role="dispatcher", body={"id": "v3"}, expect=403)
    await api.call("POST", "/api/vehicles", role=None, body={"id": "v3"}, expect=401)
    await api.call("POST", "/api/vehicles", role="admin", body={"id": "bad id"}, expect=400)
    _, made = await api.call("POST", "/api/vehicles", role="admin", body={"id": "v3"},
                             expect=201)
    assert made["id"] == "v3" and len(made["token"]) >= 32
    assert (await api.store.authenticate("v3", made["token"])).value == "ok"
    await api.call("POST", "/api/vehicles/v3/revoke", role="dispatcher", expect=403)
    _, rev = await api.call("POST", "/api/vehicles/v3/revoke", role="admin", expect=200)
    assert rev == {"id": "v3", "revoked": True}
    assert (await api.store.authenticate("v3", made["token"])).value == "revoked"
    _, v3 = await api.call("GET", "/api/vehicles/v3", expect=200)
    assert v3["revoked"] is True and v3["position"] is None and v3["fix_age_s"] is None
    await api.call("POST", "/api/vehicles/v9/revoke", role="admin", expect=404)


async def test_route_downsampled_with_times_and_speeds(api):
    start, end = T0, T0 + 3_600_000
    _, full = await api.call("GET", f"/api/vehicles/v1/route?from_ms={start}&to_ms={end}",
                             expect=200)
    p = full["properties"]
    assert p["points"] == 39 == len(p["times_ms"]) == len(p["speeds_kmh"])
    assert p["times_ms"] == [T0 + q * 60_000 for q, _ in TRACK]
    assert full["geometry"]["coordinates"][0] == [TRACK[0][1], 50.005]
    _, thin = await api.call(
        "GET", f"/api/vehicles/v1/route?from_ms={start}&to_ms={end}&max_points=6", expect=200)
    # 6 buckets of 10 minutes; points at minutes 1-39 fall in 4 of them
    assert thin["properties"]["times_ms"] == [T0 + m * 60_000 for m in (1, 10, 20, 30)]
    await api.call("GET", "/api/vehicles/v1/route?from_ms=x", expect=400)
    await api.call("GET", f"/api/vehicles/v1/route?from_ms={end}&to_ms={start}", expect=400)


async def test_trips_json_and_csv(api):
    _, trips = await api.call("GET", f"/api/vehicles/v1/trips?{DAY}", expect=200)
    assert len(trips["trips"]) == 1 and trips["stops"] == []
    assert trips["trips"][0]["start_ms"] == T0 + 60_000
    # 38 steps of 0.001° of longitude at latitude 50.005 (an independent great-circle sum)
    expected_km = 38 * haversine_m(50.005, 8.0, 50.005, 8.001) / 1000
    assert math.isclose(trips["distance_km"], expected_km, abs_tol=0.002)
    _, day = await api.call("GET", "/api/vehicles/v1/trips?day=2025-11-23", expect=200)
    assert day["trips"] == trips["trips"] and day["day"] == "2025-11-23"
    status, text = await api.call("GET", f"/api/vehicles/v1/trips?{DAY}&format=csv",
                                  expect=200, raw=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["kind"] for r in rows] == ["trip"]
    assert int(rows[0]["start_ms"]) == T0 + 60_000 and rows[0]["start"].endswith("00:01:00.000Z")
    assert float(rows[0]["distance_km"]) == trips["trips"][0]["distance_km"]
    await api.call("GET", "/api/vehicles/v1/trips?day=23-11-2025", expect=400)
    await api.call("GET", f"/api/vehicles/v1/trips?{DAY}&format=xml", expect=400)


async def test_geofence_entries_per_geofence_and_per_vehicle(api):
    await api.call("PUT", "/api/geofences/sq", role="dispatcher", expect=200, body={
        "type": "Feature", "geometry": SQUARE, "properties": {"name": "Square"}})
    # a second zone further east: v1 enters it at seq 30 (lon 8.0205)
    east = {"type": "Polygon", "coordinates": [[[8.02, 50], [8.03, 50], [8.03, 50.01],
                                                [8.02, 50.01], [8.02, 50]]]}
    await api.call("PUT", "/api/geofences/east", role="dispatcher", expect=200, body={
        "type": "Feature", "geometry": east, "properties": {"name": "East", "speed_limit_kmh": 20}})
    _, sq = await api.call("GET", f"/api/geofences/sq/entries?{DAY}", expect=200)
    assert [(e["vehicle_id"], e["seq"]) for e in sq["entries"]] == [("v1", 10)]
    # v2's only point is inside, with nothing before it: no transition, no entry
    assert sq["vehicles"] == ["v1"]
    _, mine = await api.call("GET", f"/api/vehicles/v1/geofence-entries?{DAY}", expect=200)
    assert [(e["geofence_id"], e["seq"]) for e in mine["entries"]] == [("sq", 10), ("east", 30)]
    _, text = await api.call("GET", f"/api/vehicles/v1/geofence-entries?{DAY}&format=csv",
                             expect=200, raw=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["geofence"], r["vehicle"], int(r["seq"])) for r in rows] == [
        ("sq", "v1", 10), ("east", "v1", 30)]
    _, text = await api.call("GET", f"/api/geofences/east/entries?{DAY}&format=csv",
                             expect=200, raw=True)
    assert [int(r["time_ms"]) for r in csv.DictReader(io.StringIO(text))] == [T0 + 30 * 60_000]
    await api.call("GET", f"/api/geofences/nope/entries?{DAY}", expect=404)


async def test_visibility_by_group(api):
    only_v1 = {"vehicles": ["v1"]}
    _, body = await api.call("GET", "/api/vehicles", **only_v1, expect=200)
    assert [v["id"] for v in body["vehicles"]] == ["v1"]
    for path in ("/api/vehicles/v2", "/api/vehicles/v2/route", "/api/vehicles/v2/trips",
                 "/api/vehicles/v2/geofence-entries", "/api/vehicles/v2/commands"):
        await api.call("GET", path, **only_v1, expect=404)
    await api.call("POST", "/api/vehicles/v2/commands", role="dispatcher", **only_v1,
                   body={"name": "ping"}, expect=404)
    _, cmd = await api.call("POST", "/api/vehicles/v2/commands", role="dispatcher",
                            body={"name": "ping"}, expect=202)
    await api.call("GET", f"/api/commands/{cmd['id']}", **only_v1, expect=404)
    _, groups = await api.call("GET", "/api/groups", role="admin", expect=200)
    [group] = [g["name"] for g in groups["groups"]
               if g["vehicles"] == ["v1"] and g["members"][0].startswith("viewer")]
    await api.call("PUT", "/api/geofences/sq", role="dispatcher", expect=200, body={
        "type": "Feature", "geometry": SQUARE, "properties": {"name": "Square",
                                                              "group": group}})
    _, inside = await api.call("GET", "/api/geofences/sq/inside", expect=200)
    assert [v["id"] for v in inside["vehicles"]] == ["v2"]
    # the geofence of the restricted user's group: v2 is inside, but not the user's to see
    _, inside = await api.call("GET", "/api/geofences/sq/inside", **only_v1, expect=200)
    assert inside["vehicles"] == []


async def test_geofence_crud_and_circles(api):
    body = {"type": "Feature", "geometry": None, "properties": {
        "name": "Depot", "speed_limit_kmh": 15,
        "circle": {"center": [8.005, 50.005], "radius_m": 200}}}
    await api.call("POST", "/api/geofences", role="viewer", body=body, expect=403)
    _, made = await api.call("POST", "/api/geofences", role="dispatcher", body=body, expect=201)
    gid = made["id"]
    assert made["properties"]["circle"] == {"center": [8.005, 50.005], "radius_m": 200}
    assert made["properties"]["speed_limit_kmh"] == 15
    ring = made["geometry"]["coordinates"][0]
    # every vertex on the circle (independent great-circle distance), within a metre
    assert len(ring) == 65 and all(
        abs(haversine_m(50.005, 8.005, lat, lon) - 200) < 1 for lon, lat in ring)
    _, inside = await api.call("GET", f"/api/geofences/{gid}/inside", expect=200)
    assert [v["id"] for v in inside["vehicles"]] == ["v2"]  # v2 parks at the centre
    # the same id again is a conflict; PUT replaces it: a MultiPolygon without the centre
    await api.call("POST", "/api/geofences", role="dispatcher",
                   body={**body, "id": gid}, expect=409)
    multi = {"type": "MultiPolygon", "coordinates": [
        [[[8, 50], [8.001, 50], [8.001, 50.001], [8, 50.001], [8, 50]]],
        [[[8.02, 50], [8.021, 50], [8.021, 50.001], [8.02, 50.001], [8.02, 50]]]]}
    _, put = await api.call("PUT", f"/api/geofences/{gid}", role="dispatcher", expect=200,
                            body={"type": "Feature", "geometry": multi,
                                  "properties": {"name": "Two yards"}})
    assert put["geometry"]["type"] == "MultiPolygon" and put["properties"]["circle"] is None
    assert put["properties"]["speed_limit_kmh"] is None
    assert put["properties"]["created_ms"] == made["properties"]["created_ms"]
    _, inside = await api.call("GET", f"/api/geofences/{gid}/inside", expect=200)
    assert inside["vehicles"] == []
    _, listed = await api.call("GET", "/api/geofences", expect=200)
    assert [f["properties"]["name"] for f in listed["features"]] == ["Two yards"]
    await api.call("DELETE", f"/api/geofences/{gid}", role="viewer", expect=403)
    await api.call("DELETE", f"/api/geofences/{gid}", role="dispatcher", expect=204)
    await api.call("GET", f"/api/geofences/{gid}", expect=404)
    await api.call("DELETE", f"/api/geofences/{gid}", role="dispatcher", expect=404)
    await api.call("GET", f"/api/geofences/{gid}/inside", expect=404)


@pytest.mark.parametrize("geometry, props", [
    ({"type": "Point", "coordinates": [8, 50]}, {"name": "p"}),
    ({"type": "Polygon", "coordinates": [[[8, 50], [8.01, 50.01], [8.01, 50], [8, 50.01],
                                          [8, 50]]]}, {"name": "bow tie"}),
    (SQUARE, {}),
    (SQUARE, {"name": "x", "speed_limit_kmh": -5}),
    (None, {"name": "c", "circle": {"center": [8, 50], "radius_m": 0}}),
    ({"type": "Polygon", "coordinates": [[[190, 50], [191, 50], [191, 51], [190, 50]]]},
     {"name": "off the globe"}),
])
async def test_bad_geofences_are_400(api, geometry, props):
    await api.call("POST", "/api/geofences", role="dispatcher", expect=400,
                   body={"type": "Feature", "geometry": geometry, "properties": props})


async def test_commands_send_read_list(api):
    await api.call("POST", "/api/vehicles/v1/commands", role="viewer", body={"name": "ping"},
                   expect=403)
    await api.call("POST", "/api/vehicles/v1/commands", role="dispatcher", body={"name": ""},
                   expect=400)
    await api.call("POST", "/api/vehicles/zz/commands", role="dispatcher",
                   body={"name": "ping"}, expect=404)
    # the registry (geostream/commands.py): an unknown name, oversized arguments
    _, refused = await api.call("POST", "/api/vehicles/v1/commands", role="dispatcher",
                                body={"name": "reboot"}, expect=400)
    assert "unknown command 'reboot'" in refused["error"]
    _, refused = await api.call("POST", "/api/vehicles/v1/commands", role="dispatcher",
                                body={"name": "ping", "args": {"blob": "x" * 5000}},
                                expect=400)
    assert "exceed 4096" in refused["error"]
    ids = []
    for n in (1, 2):
        _, sent = await api.call("POST", "/api/vehicles/v1/commands", role="dispatcher",
                                 body={"name": "ping", "args": {"n": n}}, expect=202)
        ids.append(sent["id"])
    _, one = await api.call("GET", f"/api/commands/{ids[0]}", expect=200)
    assert one["state"] == "pending" and one["name"] == "ping" and one["args"] == {"n": 1}
    _, listed = await api.call("GET", "/api/vehicles/v1/commands", expect=200)
    assert [c["id"] for c in listed["commands"]] == ids[::-1]
    _, listed = await api.call("GET", "/api/vehicles/v1/commands?limit=1", expect=200)
    assert [c["id"] for c in listed["commands"]] == ids[1:]
    await api.call("GET", "/api/commands/abc", expect=400)
    await api.call("GET", "/api/commands/12", expect=404)
