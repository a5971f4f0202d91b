"""Driving folded per vehicle-day and kept (backend/driving/report.py, fold.py), on SQLite and
PostgreSQL: a whole day's fold is read back while its readings are unchanged; readings that
arrive after the day was folded (late, shuffled, some twice) fold it again and give the same
events, distances and fuel (trips, idling) as the same readings on time, and as computing
everything from the readings; a driver-app login entered later still names the driver; other
thresholds fold again."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from backend.dispatch.model import (
    FleetVehicle,
    Route,
    RouteStatus,
    Shift,
    VehicleClass,
    VehicleType,
)
from backend.driving import fold, report
from backend.driving.thresholds import parse_driving
from hil.drives import DriveBuilder, calm_trip
from tests.integration.api.test_maintenance_api import stored
from tests.pgfixture import STORE_KINDS, opened_store
from tests.unit.backend.driving.test_events import T0, eventful

DAY = 86_400_000
DAY0 = 1_796_000_000_000 // DAY * DAY  # a whole UTC day, long past when the test runs
START = DAY0 + 8 * 3_600_000
CFG = parse_driving(None)


@pytest.fixture(params=STORE_KINDS)
async def any_store(request, tmp_path):
    async for store in opened_store(request, tmp_path):
        yield store


def _at_start(b: DriveBuilder) -> DriveBuilder:
    d, shift = b.drive, START - T0
    d.positions = [{**p, "time_ms": p["time_ms"] + shift} for p in d.positions]
    d.signals = [(t + shift, s) for t, s in d.signals]
    return b


async def _window(store, vehicles, keep=True):
    got = await report.fleet_window(store, CFG, vehicles, DAY0, DAY0 + DAY, keep=keep)
    by = {}
    for e in got["events"]:
        by.setdefault(e["vehicle"], []).append({k: v for k, v in e.items() if k != "vehicle"})
    km = {(v, d): round(k, 6) for _, v, d, k in got["km"]}
    return by, km


def _per(by, km, vehicle):
    return by.get(vehicle, []), {d: k for (v, d), k in km.items() if v == vehicle}


async def _fuel(store, vehicles, keep=True):
    got = await report.fuel_window(store, CFG, vehicles, DAY0, DAY0 + DAY, keep=keep)
    return {v: {k: [{f: x for f, x in row.items() if f != "vehicle"} for row in got[k]
                    if row["vehicle"] == v] for k in ("trips", "events", "idle")}
            for v in vehicles}


async def test_late_readings_fold_the_day_again_and_match_on_time_delivery(any_store):
    store = any_store
    await store.put_catalogue(VehicleType("hgv", "Truck", VehicleClass.TRUCK), START)
    rows = {}
    for v in ("on-time", "late"):
        await store.add_vehicle(v)
        await store.put_dispatch_vehicle(FleetVehicle(v, "hgv"), START)
        rows[v] = stored(v, _at_start(eventful(driver="D-42")))
    await store.write(rows["on-time"], [])
    # "late" has only the first half of its drive when the day is first asked for
    cut = START + 40 * 60_000
    early = [r for r in rows["late"] if r.time_ms < cut]
    await store.write(early, [])
    by, km = await _window(store, ["on-time", "late"])
    assert await store.driving_day("late", DAY0) is not None
    assert (await _fuel(store, ["late"]))["late"]["idle"][0]["peak"] < 60  # half of it
    assert _per(by, km, "late") != _per(by, km, "on-time")  # half the idling hour, fewer km

    # the rest arrives late, out of order, some twice, in odd batches
    rest = [r for r in rows["late"] if r.time_ms >= cut]
    rng = random.Random(7)
    rest += rng.sample(rest, 200) + rng.sample(early, 100)
    rng.shuffle(rest)
    for i in range(0, len(rest), 555):
        await store.write(rest[i:i + 555], [])
    by, km = await _window(store, ["on-time", "late"])
    assert _per(by, km, "late") == _per(by, km, "on-time")
    fuel = await _fuel(store, ["on-time", "late"])
    assert fuel["late"] == fuel["on-time"] and len(fuel["late"]["trips"]) >= 2
    assert [e["peak"] for e in fuel["late"]["idle"]] == [60.0]  # the whole idling hour
    assert fuel == await _fuel(store, ["on-time", "late"], keep=False)
    assert [e["kind"] for e in by["late"]] == ["harsh_brake", "harsh_corner", "harsh_accel",
                                              "idle"]
    # ... and as computing it all from the readings, keeping nothing
    assert (by, km) == await _window(store, ["on-time", "late"], keep=False)


async def test_a_kept_day_is_read_back_until_its_readings_change(any_store):
    store = any_store
    await store.add_vehicle("truck-1")
    b = _at_start(eventful(driver="D-42"))
    rows = stored("truck-1", b)
    await store.write(rows[:-1], [])
    by, _ = await _window(store, ["truck-1"])
    signature, fingerprint, result = await store.driving_day("truck-1", DAY0)
    assert signature == fold.signature(*report.day_params(CFG, None, "truck-1"),
                                       report.events.DEFAULT_SIGNALS)
    # a kept day is what the next question reads (marked here to tell it from a new fold)
    day = json.loads(result)
    day["driving"]["events"] = day["driving"]["events"][:1]
    await store.put_driving_day("truck-1", DAY0, signature, fingerprint, json.dumps(day), 0)
    marked, _ = await _window(store, ["truck-1"])
    assert marked["truck-1"] == by["truck-1"][:1]
    # one more reading of the day's window: folded again from the readings
    await store.write(rows[-1:], [])
    again, _ = await _window(store, ["truck-1"])
    assert again["truck-1"] == by["truck-1"]
    # other thresholds (a new signature): folded again
    stricter = replace(CFG, per_class={**CFG.per_class, VehicleClass.VAN: replace(
        CFG.for_class(None), brake_ms2=99.0, corner_ms2=99.0, accel_ms2=99.0)})
    got = await report.fleet_window(store, stricter, ["truck-1"], DAY0, DAY0 + DAY)
    assert [e["kind"] for e in got["events"]] == ["idle"]


async def test_a_login_entered_after_the_fold_names_the_driver(any_store):
    store = any_store
    await store.add_vehicle("truck-2")
    await store.write(stored("truck-2", calm_trip(DriveBuilder(START, seed=8), minutes=30)),
                      [])
    _, km = await _window(store, ["truck-2"])
    assert set(km) == {("truck-2", "")}  # nobody known yet
    # the dispatcher enters the shift's route with its driver after the day was folded
    await store.put_dispatch_route(Route("r2", "truck-2", Shift(START - 3_600_000,
                                                               START + 8 * 3_600_000),
                                         "dep", "dep", driver_id="D-17",
                                         status=RouteStatus.DISPATCHED), None, START)
    _, km_after = await _window(store, ["truck-2"])
    assert set(km_after) == {("truck-2", "D-17")}
    assert km_after[("truck-2", "D-17")] == km[("truck-2", "")] > 20
