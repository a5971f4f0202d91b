"""Driver behaviour through the REST API on SQLite and PostgreSQL, from hil/drives.py drives
written through the store: the events of the eventful drive with their times, drivers and
positions (the calm vehicle has none); the same drive delivered as a shuffled, late,
duplicated backfill (another vehicle) gives the same events; weekly scorecards per driver and
vehicle, the driver from the CAN driver id or the driver app's shift; JSON, CSV, scopes and
refusals."""

from __future__ import annotations

import random

from backend.dispatch.model import FleetVehicle, VehicleClass, VehicleType
from hil.drives import DriveBuilder, calm_trip
from tests.integration.api.apphelp import Api
from tests.integration.api.test_maintenance_api import stored
from tests.unit.backend.driving.test_events import T0, eventful

DAY = 86_400_000
START = 1_796_000_000_000 // DAY * DAY + 8 * 3_600_000  # 08:00 UTC
WINDOW = f"from_ms={START - DAY}&to_ms={START + DAY}"
SHIFT = START - T0


def _moved(b: DriveBuilder) -> DriveBuilder:
    """eventful() starts at T0: the same drive at START."""
    d = b.drive
    d.positions = [{**p, "time_ms": p["time_ms"] + SHIFT} for p in d.positions]
    d.signals = [(t + SHIFT, s) for t, s in d.signals]
    d.truth = {k: [(v[0] + SHIFT, v[1] + SHIFT) for v in vs] for k, vs in d.truth.items()}
    return b


async def _load(api) -> DriveBuilder:
    busy = _moved(eventful(driver="D-42"))
    # truck-2 has no driver id on its bus: its driver logged into the driver app for the
    # shift of its route
    calm = calm_trip(DriveBuilder(START, seed=8), minutes=30)
    await api.store.put_catalogue(VehicleType("hgv", "Truck", VehicleClass.TRUCK), START)
    for v, b in (("truck-1", busy), ("truck-2", calm), ("truck-3", busy)):
        await api.store.add_vehicle(v)
        await api.store.put_dispatch_vehicle(FleetVehicle(v, "hgv"), START)
        rows = stored(v, b)
        if v == "truck-3":  # a backfill: late, out of order, some twice, in odd batches
            rng = random.Random(5)
            rows = rows + [r for r in rng.sample(rows, 300)]
            rng.shuffle(rows)
            for i in range(0, len(rows), 777):
                await api.store.write(rows[i:i + 777], [])
        else:
            await api.store.write(rows, [])
    await api.call("PUT", "/api/routes/r2", role="dispatcher", expect=201, body={
        "vehicle_id": "truck-2", "shift": {"start_ms": START - 3_600_000,
                                           "end_ms": START + 8 * 3_600_000},
        "start_depot": "dep", "stops": [], "status": "dispatched", "driver_id": "D-17"})
    return busy


def _strip(events, vehicle):
    return [{k: v for k, v in e.items() if k != "vehicle"} for e in events
            if e["vehicle"] == vehicle]


async def test_driving_events_and_scorecards(store_url):
    async with Api(store_url) as api:
        busy = await _load(api)
        _, got = await api.call("GET", f"/api/driving/events?{WINDOW}", expect=200)
        one = [e for e in got["events"] if e["vehicle"] == "truck-1"]
        assert [(e["kind"], e["driver"]) for e in one] == [
            (k, "D-42") for k in ("harsh_brake", "harsh_corner", "harsh_accel", "idle")]
        for e in one:
            [(ts, te)] = busy.drive.truth[e["kind"]]
            assert ts - 1000 <= e["start_ms"] <= te and e["lat"] and e["lon"]
        assert not [e for e in got["events"] if e["vehicle"] == "truck-2"]
        # the backfilled copy: the same events
        assert _strip(got["events"], "truck-3") == _strip(got["events"], "truck-1")

        _, csv = await api.call("GET", f"/api/driving/events?{WINDOW}&format=csv&kind=idle"
                                "&vehicle=truck-1", expect=200)
        lines = csv.strip().split("\r\n")
        assert lines[0].startswith("vehicle,driver,kind,start_ms") and len(lines) == 2
        assert lines[1].startswith("truck-1,D-42,idle,")

        _, cards = await api.call("GET", f"/api/driving/scorecards?{WINDOW}", expect=200)
        by = {r["driver"]: r for r in cards["scorecards"]}
        assert by["D-17"]["score"] == 100.0 and by["D-17"]["km"] > 20
        assert (by["D-42"]["harsh_brake"], by["D-42"]["idle"]) == (2, 2)  # two trucks
        assert by["D-42"]["score"] < 100 and cards["scorecards"][0]["driver"] == "D-17"
        _, veh = await api.call("GET", f"/api/driving/scorecards?by=vehicle&{WINDOW}"
                                "&format=csv", expect=200)
        rows = veh.strip().split("\r\n")
        assert rows[0] == ("week,vehicle,km,score,harsh_accel,harsh_brake,harsh_corner,"
                           "overspeed,idle,idle_min") and len(rows) == 4

        _, mine = await api.call("GET", f"/api/driving/events?{WINDOW}", vehicles=["truck-2"],
                                 expect=200)
        assert mine["events"] == []
        await api.call("GET", "/api/driving/events?vehicle=truck-1", vehicles=["truck-2"],
                       expect=404)
        await api.call("GET", "/api/driving/events?kind=drift", expect=400)
        await api.call("GET", "/api/driving/scorecards?by=fleet", expect=400)
        await api.call("GET", f"/api/driving/events?from_ms={START - 40 * DAY}"
                       f"&to_ms={START}", expect=400)
