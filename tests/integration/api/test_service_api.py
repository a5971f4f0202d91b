"""Recording a service through the REST API on SQLite and PostgreSQL: it closes the open
`service` alert at once and restarts the interval; the history lists it; bad input is refused
with 400, a viewer may not record (403), and a group-scoped user sees only its vehicles;
plans scoped to vehicles or vehicle types cover only those."""

from __future__ import annotations

import pytest

from backend.api.common import MAINTENANCE
from backend.dispatch.model import FleetVehicle
from backend.maintenance.config import parse_maintenance
from backend.maintenance.monitor import MaintenanceMonitor, service_status
from backend.store.base import AlertQuery, StoredReading
from geostream.clock import wall_ms
from tests.integration.api.apphelp import Api
from tests.integration.mcptools.fleetdata import MAINTENANCE as CONFIG
from tests.integration.mcptools.fleetdata import load

CFG = parse_maintenance(CONFIG)


def _mount(app, store) -> None:
    app[MAINTENANCE] = MaintenanceMonitor(store, CFG)


async def _service_alerts(store):
    return await store.list_alerts(AlertQuery(rule="service", limit=100))


async def test_recording_a_service_closes_its_alert_and_restarts_the_interval(store_url):
    async with Api(store_url, mount=_mount) as api:
        now = wall_ms()
        await load(api.store, now)  # truck-1: 95 km on the CAN odometer, "oil" due at 90
        await api.app[MAINTENANCE].check(now)
        [a] = await _service_alerts(api.store)
        assert (a.vehicle_id, a.subject, a.state) == ("truck-1", "oil", "open")

        _, got = await api.call("POST", "/api/vehicles/truck-1/services", role="dispatcher",
                                body={"interval": "oil", "odometer_km": 1095.0,
                                      "work": "oil and filter", "cost": 120.5,
                                      "who": "Garage Nord"}, expect=201)
        assert got["closed_alerts"] == 1
        rec = got["service"]
        assert (rec["interval"], rec["odometer_km"], rec["work"], rec["cost"], rec["who"]) == (
            "oil", 1095.0, "oil and filter", 120.5, "Garage Nord")
        [b] = await _service_alerts(api.store)
        assert (b.id, b.state) == (a.id, "closed")
        statuses = {s.interval: s for s in await service_status(
            api.store, CFG, "truck-1", 0, wall_ms())}
        assert (statuses["oil"].state, statuses["oil"].used) == ("ok", 0.0)
        assert statuses["oil"].since_ms == rec["time_ms"]

        # an older paper record, entered later: the history is newest first
        await api.call("POST", "/api/vehicles/truck-1/services", role="admin",
                       body={"interval": "inspection", "time": "2026-01-10"}, expect=201)
        _, hist = await api.call("GET", "/api/vehicles/truck-1/services", expect=200)
        assert [(h["interval"], h["who"]) for h in hist["services"]] == [
            ("oil", "Garage Nord"), ("inspection", "admin1")]
        _, one = await api.call("GET", "/api/vehicles/truck-1/services?limit=1", expect=200)
        assert [h["interval"] for h in one["services"]] == ["oil"]


async def test_bad_service_input_is_refused_with_400(store_url):
    async with Api(store_url, mount=_mount) as api:
        await api.store.add_vehicle("truck-1")
        bad = [
            "not an object",
            {},  # no interval
            {"interval": "brakes"},  # not configured
            {"interval": "oil", "odometer_km": -1},
            {"interval": "oil", "odometer_km": 1e12},
            {"interval": "oil", "engine_h": "12"},
            {"interval": "oil", "cost": True},
            {"interval": "oil", "work": "x" * 2001},
            {"interval": "oil", "who": "a\x00b"},
            {"interval": "oil", "time": "2026-02-30"},
            {"interval": "oil", "time": "2999-01-01"},
            {"interval": "oil", "price": 3},
        ]
        for body in bad:
            status, got = await api.call("POST", "/api/vehicles/truck-1/services",
                                         role="dispatcher", body=body)
            assert status == 400, (body, got)
            assert got["error"]
        status, _ = await api.call("GET", "/api/vehicles/truck-1/services?limit=0")
        assert status == 400
        _, hist = await api.call("GET", "/api/vehicles/truck-1/services", expect=200)
        assert hist["services"] == []


async def test_roles_and_vehicle_groups(store_url):
    async with Api(store_url, mount=_mount) as api:
        for v in ("truck-1", "truck-2"):
            await api.store.add_vehicle(v)
        body = {"interval": "oil"}
        await api.call("POST", "/api/vehicles/truck-1/services", role="viewer", body=body,
                       expect=403)
        # a dispatcher of truck-1's group: records there, truck-2 does not exist for it
        await api.call("POST", "/api/vehicles/truck-1/services", role="dispatcher",
                       vehicles=["truck-1"], body=body, expect=201)
        await api.call("POST", "/api/vehicles/truck-2/services", role="dispatcher",
                       vehicles=["truck-1"], body=body, expect=404)
        await api.call("GET", "/api/vehicles/truck-2/services", role="viewer",
                       vehicles=["truck-1"], expect=404)
        await api.call("GET", "/api/vehicles/nobody/services", role="admin", expect=404)
        _, hist = await api.call("GET", "/api/vehicles/truck-1/services", role="viewer",
                                 vehicles=["truck-1"], expect=200)
        assert len(hist["services"]) == 1
        assert await api.store.list_services("truck-2", 10) == []


async def test_plans_per_vehicle_and_per_vehicle_type(store_url):
    cfg = parse_maintenance({"interval": [
        {"name": "oil", "by": "km", "every": 100},
        {"name": "tachograph", "by": "days", "every": 730, "vehicle_types": ["hgv"]},
        {"name": "crane", "by": "engine_h", "every": 500, "vehicles": ["truck-2"]}]})

    def mount(app, store) -> None:
        app[MAINTENANCE] = MaintenanceMonitor(store, cfg)

    async with Api(store_url, mount=mount) as api:
        for v in ("truck-1", "truck-2", "van-1"):
            await api.store.add_vehicle(v)
        for v, t in (("truck-1", "hgv"), ("truck-2", "hgv"), ("van-1", "van")):
            await api.store.put_dispatch_vehicle(FleetVehicle(v, t), wall_ms())
        want = {"truck-1": ["oil", "tachograph"], "truck-2": ["crane", "oil", "tachograph"],
                "van-1": ["oil"]}
        for v, names in want.items():
            _, got = await api.call("GET", f"/api/vehicles/{v}/services", expect=200)
            assert got["intervals"] == names
            assert sorted(s.interval for s in await service_status(
                api.store, cfg, v, 0, wall_ms())) == names
        await api.call("POST", "/api/vehicles/van-1/services", role="dispatcher",
                       body={"interval": "tachograph"}, expect=400)
        await api.call("POST", "/api/vehicles/truck-1/services", role="dispatcher",
                       body={"interval": "tachograph"}, expect=201)


def test_a_plan_scope_must_be_a_list_of_ids():
    with pytest.raises(ValueError, match="vehicle_types must be a list"):
        parse_maintenance({"interval": [{"name": "x", "by": "days", "every": 1,
                                         "vehicle_types": "hgv"}]})


async def test_the_fleet_due_list_most_urgent_first_as_json_and_csv(store_url):
    async with Api(store_url, mount=_mount) as api:
        await load(api.store, wall_ms())
        _, got = await api.call("GET", "/api/maintenance/due", expect=200)
        # truck-1: 95 of 100 km by its odometer; the others are within their plans
        assert [(d["vehicle"], d["interval"], d["state"]) for d in got["due"]] == [
            ("truck-1", "oil", "due")]
        assert got["due"][0]["source_label"] == "odometer (CAN)"
        _, every = await api.call("GET", "/api/maintenance/due?state=all", expect=200)
        rows = {(d["vehicle"], d["interval"]): d for d in every["due"]}
        assert len(rows) == 6 and every["due"][0]["vehicle"] == "truck-1"
        # truck-3 has positions but no odometer: its distance is GPS-integrated, and says so
        assert rows[("truck-3", "oil")]["source"] == "gps"
        assert "GPS-integrated" in rows[("truck-3", "oil")]["source_label"]
        assert rows[("truck-2", "oil")]["used"] == 10.0
        # a group-scoped viewer sees only its vehicles
        _, mine = await api.call("GET", "/api/maintenance/due?state=all", vehicles=["truck-2"],
                                 expect=200)
        assert {d["vehicle"] for d in mine["due"]} == {"truck-2"}
        _, text = await api.call("GET", "/api/maintenance/due?format=csv", expect=200)
        lines = text.strip().split("\r\n")
        assert lines[0].startswith("vehicle,interval,by,every,used,remaining,state")
        assert len(lines) == 2 and lines[1].startswith("truck-1,oil,km,100")
        await api.call("GET", "/api/maintenance/due?state=late", expect=400)
        # recording the service empties the list
        await api.call("POST", "/api/vehicles/truck-1/services", role="dispatcher",
                       body={"interval": "oil"}, expect=201)
        _, after = await api.call("GET", "/api/maintenance/due", expect=200)
        assert after["due"] == []


def _dm1(v, seq, t, *codes):
    return StoredReading(v, 1, seq, t, "evt", received_ms=t, data={
        "name": "dtc", "bus": "truck", "proto": "j1939", "src": 0, "set": "active",
        "dtcs": [{"spn": s, "fmi": f, "oc": 1} for s, f in codes]})


async def test_trouble_codes_as_a_workflow_per_vehicle_and_over_the_fleet(store_url):
    async with Api(store_url, mount=_mount) as api:
        now = wall_ms()
        await load(api.store, now)  # truck-1: SPN110-FMI0 active yesterday, 95 km driven
        t = now - 3 * 3_600_000
        # truck-2 shows it too, clears it, and it comes back; SPN100-FMI1 clears for good
        await api.store.write([_dm1("truck-2", 9000, t, (110, 0), (100, 1)),
                               _dm1("truck-2", 9001, t + 60_000),
                               _dm1("truck-2", 9002, t + 120_000, (110, 0))], [])
        _, mine = await api.call("GET", "/api/vehicles/truck-1/dtcs", expect=200)
        [row] = mine["dtcs"]
        assert (row["code"], row["status"], row["other_vehicles"], row["km_source"]) == (
            "SPN110-FMI0", "active", ["truck-2"], "can-odometer")
        assert row["km"] == 95.0 and row["per_1000_km"] == round(1 / 95 * 1000, 3)
        _, fleet = await api.call("GET", "/api/maintenance/dtcs", expect=200)
        got = [(r["vehicle"], r["code"], r["status"], r["recurrences"]) for r in fleet["dtcs"]]
        assert got == [("truck-2", "SPN110-FMI0", "active", 1),
                       ("truck-1", "SPN110-FMI0", "active", 0),
                       ("truck-2", "SPN100-FMI1", "cleared", 0)]
        _, cleared = await api.call("GET", "/api/maintenance/dtcs?status=cleared", expect=200)
        assert [r["cleared_ms"] for r in cleared["dtcs"]] == [t + 60_000]
        # a viewer of truck-1 only: truck-2's codes are not its business
        _, scoped = await api.call("GET", "/api/maintenance/dtcs", vehicles=["truck-1"],
                                   expect=200)
        assert [(r["vehicle"], r["other_vehicles"]) for r in scoped["dtcs"]] == [
            ("truck-1", [])]
        _, text = await api.call("GET", "/api/maintenance/dtcs?format=csv", expect=200)
        lines = text.strip().split("\r\n")
        assert lines[0].startswith("vehicle,code,status") and len(lines) == 4
        assert lines[1].startswith("truck-2,SPN110-FMI0,active,j1939")
        await api.call("GET", "/api/maintenance/dtcs?status=open", expect=400)
        await api.call("GET", "/api/maintenance/dtcs?from=2020-01-01&to=2022-01-01",
                       expect=400)
        await api.call("GET", "/api/vehicles/nobody/dtcs", expect=404)
