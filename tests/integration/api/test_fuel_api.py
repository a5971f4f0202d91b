"""Fuel through the REST API on SQLite and PostgreSQL: the day of hil/drives.py with a night
drop, an idling hour and a refuel, written through the store: the drop and the refuel with
their times, litres and positions; consumption per trip, per day and the fleet ranking (the
thirstier engine last); JSON, CSV and refusals."""

from __future__ import annotations

from hil.drives import DriveBuilder, calm_trip
from tests.integration.api.apphelp import Api
from tests.integration.api.test_maintenance_api import stored
from tests.unit.backend.driving.test_fuel import DAY, T0, day

SHIFT = (1_796_000_000_000 // DAY * DAY) - T0
START = T0 + SHIFT
WINDOW = f"from_ms={START}&to_ms={START + DAY}"


def _moved(b: DriveBuilder) -> DriveBuilder:
    d = b.drive
    d.positions = [{**p, "time_ms": p["time_ms"] + SHIFT} for p in d.positions]
    d.signals = [(t + SHIFT, s) for t, s in d.signals]
    d.truth = {k: [(v[0] + SHIFT, v[1] + SHIFT, *v[2:]) for v in vs]
               for k, vs in d.truth.items()}
    return b


async def test_fuel_events_consumption_and_ranking(store_url):
    async with Api(store_url) as api:
        busy = _moved(day())
        frugal = DriveBuilder(START + 8 * 3_600_000, seed=3, fuel_pct=50)
        frugal.fuel_factor = 0.8  # a newer engine
        calm_trip(frugal, minutes=40)
        for v, b in (("truck-1", busy), ("truck-2", frugal)):
            await api.store.add_vehicle(v)
            await api.store.write(stored(v, b), [])
        _, got = await api.call("GET", f"/api/fuel/events?{WINDOW}", expect=200)
        assert [(e["vehicle"], e["kind"]) for e in got["events"]] == [
            ("truck-1", "drop"), ("truck-1", "refuel")]
        for e in got["events"]:
            [(s, end, litres)] = busy.drive.truth[e["kind"]]
            assert s - 600_000 <= e["time_ms"] <= end + 600_000 and e["lat"]
            assert abs(e["litres"] - litres) <= 0.1 * litres
        _, trips = await api.call("GET", f"/api/fuel/consumption?by=trip&{WINDOW}", expect=200)
        assert [t["vehicle"] for t in trips["rows"]] == [
            "truck-1", "truck-2", "truck-1", "truck-1"]  # 07:00, 08:00, 09:00, 10:00
        assert all(t["source"] == "rate" for t in trips["rows"])
        _, per_day = await api.call("GET", f"/api/fuel/consumption?by=day&{WINDOW}",
                                    expect=200)
        row = next(r for r in per_day["rows"] if r["vehicle"] == "truck-1")
        assert (row["refuels"], row["drops"]) == (1, 1) and row["idle_l"] == 2.5
        _, text = await api.call("GET", f"/api/fuel/consumption?{WINDOW}&format=csv",
                                 expect=200)
        head, first, second = text.strip().split("\r\n")
        assert head == ("rank,vehicle,km,litres,l_per_100km,idle_l,refuel_l,refuels,drop_l,"
                        "drops,source")
        assert first.startswith("1,truck-2,") and second.startswith("2,truck-1,")
        await api.call("GET", "/api/fuel/consumption?by=week", expect=400)
        await api.call("GET", "/api/fuel/events?vehicle=truck-9", expect=404)
