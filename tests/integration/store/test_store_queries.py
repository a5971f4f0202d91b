"""Queries on both stores against a brute-force reference on random, shuffled, re-sent data."""

import random
from datetime import date

import pytest

from backend import queries
from backend.store.base import StoredReading

T0 = 1_763_856_000_000  # 2025-11-23T00:00:00Z
CENTER = (10.0, 50.0)   # lon, lat
VEHICLES = [f"veh-{i}" for i in range(6)]


def star_polygon(rng, n=7):
    import math

    ring = []
    for k in range(n):
        a = 2 * math.pi * k / n
        r = rng.uniform(0.02, 0.05)
        ring.append([round(CENTER[0] + r * math.cos(a), 6), round(CENTER[1] + r * math.sin(a), 6)])
    return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


def inside_ref(lon, lat, ring):
    """Even-odd ray casting, written independently of Shapely and PostGIS."""
    hit = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:], strict=False):
        if (y1 > lat) != (y2 > lat) and lon < x1 + (lat - y1) * (x2 - x1) / (y2 - y1):
            hit = not hit
    return hit


def make_data(rng):
    """Per vehicle: moving and stopped phases over two days, one reading every 20-40 s."""
    rows = []
    for v in VEHICLES:
        lon, lat = CENTER[0] + rng.uniform(-0.06, 0.06), CENTER[1] + rng.uniform(-0.06, 0.06)
        t, seq, epoch = T0 - DAY, 0, rng.randrange(1, 2**62)
        while t < T0 + DAY:
            moving = rng.random() < 0.7
            for _ in range(rng.randint(5, 40)):
                seq += 1
                t += rng.randint(20_000, 40_000)
                speed = rng.randint(20, 240) / 4 if moving else rng.randint(0, 6) / 4
                if moving:
                    lon = min(max(lon + rng.uniform(-0.006, 0.006), CENTER[0] - 0.08),
                              CENTER[0] + 0.08)
                    lat = min(max(lat + rng.uniform(-0.006, 0.006), CENTER[1] - 0.08),
                              CENTER[1] + 0.08)
                rows.append(StoredReading(vehicle_id=v, epoch=epoch, seq=seq, time_ms=t,
                                          kind="pos", lat=lat, lon=lon, speed_kmh=speed,
                                          course_deg=rng.randint(0, 359), fix=1,
                                          received_ms=T0 + DAY))
                if rng.random() < 0.05:
                    rows.append(StoredReading(vehicle_id=v, epoch=epoch, seq=seq + 1,
                                              time_ms=t + 1, kind="can", data={"rpm": 900},
                                              received_ms=T0 + DAY))
                    seq += 1
    return rows


DAY = 86_400_000


async def load(store, rows, rng):
    """Arrival order is not device order: shuffle, batch, and re-send some batches."""
    shuffled = rows[:]
    rng.shuffle(shuffled)
    i = 0
    while i < len(shuffled):
        n = rng.randint(1, 400)
        batch = shuffled[i:i + n]
        await store.write(batch, [])
        if rng.random() < 0.2:
            await store.write(batch, [])
        i += n


def ref_points(rows, vehicle, start, end):
    pts = sorted((r for r in rows if r.vehicle_id == vehicle and r.kind == "pos"
                  and start <= r.time_ms < end), key=lambda r: (r.time_ms, r.epoch, r.seq))
    return pts


@pytest.fixture(scope="module")
def data():
    rng = random.Random(20251123)
    return make_data(rng), star_polygon(rng)


async def test_route_matches_reference(any_store, data):
    rows, _ = data
    await load(any_store, rows, random.Random(1))
    assert await any_store.count_readings() == len(rows)
    rng = random.Random(2)
    for _ in range(12):
        v = rng.choice(VEHICLES)
        start = T0 - DAY + rng.randint(0, 2 * DAY)
        end = start + rng.randint(60_000, DAY)
        step = rng.choice([None, 60_000, 600_000, 3_600_000])
        got = await queries.route(any_store, v, start, end, step_ms=step)
        ref = ref_points(rows, v, start, end)
        if step:
            seen, thinned = set(), []
            for r in ref:
                if r.time_ms // step not in seen:
                    seen.add(r.time_ms // step)
                    thinned.append(r)
            ref = thinned
        assert got["geometry"]["coordinates"] == [[r.lon, r.lat] for r in ref]
        assert got["properties"]["times_ms"] == [r.time_ms for r in ref]
        assert got["properties"]["speeds_kmh"] == [r.speed_kmh for r in ref]
    # default window: the 48 h before `now`
    v = VEHICLES[0]
    got = await queries.route(any_store, v, now=T0 + DAY)
    assert got["properties"]["points"] == len(ref_points(rows, v, T0 - DAY, T0 + DAY))
    capped = await queries.route(any_store, v, now=T0 + DAY, max_points=50)
    assert 0 < capped["properties"]["points"] <= 51


async def test_last_positions_are_newest_by_device_time(any_store, data):
    rows, _ = data
    await load(any_store, rows, random.Random(3))
    got = await queries.last_positions(any_store)
    assert [f["id"] for f in got["features"]] == VEHICLES
    for f in got["features"]:
        newest = ref_points(rows, f["id"], 0, 2**62)[-1]
        assert f["properties"]["seq"] == newest.seq
        assert f["geometry"]["coordinates"] == [newest.lon, newest.lat]


async def test_geofence_entries_match_reference(any_store, data):
    rows, polygon = data
    await any_store.put_geofence("depot", "Depot", polygon)
    await load(any_store, rows, random.Random(4))
    ring = polygon["coordinates"][0]
    rng = random.Random(5)
    windows = [(T0 - DAY, T0), (T0, T0 + DAY)] + [
        (s, s + rng.randint(600_000, DAY)) for s in
        (T0 - DAY + rng.randint(0, 2 * DAY) for _ in range(8))]
    total = 0
    for start, end in windows:
        ref = []
        for v in VEHICLES:
            pts = ref_points(rows, v, 0, end)
            for prev, cur in zip(pts, pts[1:], strict=False):
                if (cur.time_ms >= start and inside_ref(cur.lon, cur.lat, ring)
                        and not inside_ref(prev.lon, prev.lat, ring)):
                    ref.append((v, cur.time_ms, cur.seq))
        got = await queries.geofence_entries(any_store, "depot", start, end)
        assert [(e["vehicle_id"], e["time_ms"], e["seq"]) for e in got["entries"]] == ref
        assert got["vehicles"] == sorted({r[0] for r in ref})
        total += len(ref)
    assert total > 10  # the random walk does cross the fence
    yesterday = await queries.geofence_entries(any_store, "depot", now=T0 + 3_600_000)
    assert (yesterday["from_ms"], yesterday["to_ms"]) == (T0 - DAY, T0)


async def test_geofence_entry_judged_in_device_order_under_backfill(any_store):
    square = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
    await any_store.put_geofence("sq", "Square", square)

    def p(seq, t, inside):
        lon = 0.5 if inside else 2.0
        return StoredReading(vehicle_id="b", epoch=1, seq=seq, time_ms=T0 + t, kind="pos",
                             lat=0.5, lon=lon, speed_kmh=10.0, received_ms=T0)

    await any_store.write([p(1, 0, False), p(4, 40, True)], [])      # live: outside, inside
    got = await queries.geofence_entries(any_store, "sq", T0, T0 + 100)
    assert [e["seq"] for e in got["entries"]] == [4]
    await any_store.write([p(2, 10, True), p(3, 20, True)], [])      # backfill after an outage
    got = await queries.geofence_entries(any_store, "sq", T0, T0 + 100)
    assert [e["seq"] for e in got["entries"]] == [2]                 # entered at t=10, not 40
    got = await queries.geofence_entries(any_store, "sq", T0 + 15, T0 + 100)
    assert got["entries"] == []                                      # already inside at t=10


async def test_trips_and_stops_equal_reference_route(any_store, data):
    rows, _ = data
    await load(any_store, rows, random.Random(6))
    for v in VEHICLES[:3]:
        got = await queries.trips(any_store, v, "2025-11-23")
        ref = queries.summarize([dict(time_ms=r.time_ms, lat=r.lat, lon=r.lon,
                                      speed_kmh=r.speed_kmh)
                                 for r in ref_points(rows, v, T0, T0 + DAY)])
        assert got["trips"] == ref["trips"] and got["stops"] == ref["stops"]
        assert got["day"] == "2025-11-23" and got["trips"]


def test_summarize_scenario():
    pts, t = [], T0

    def run(minutes, speed, dlat):
        nonlocal t
        for _ in range(minutes * 2):
            t += 30_000
            last = pts[-1]["lat"] if pts else 50.0
            pts.append(dict(time_ms=t, lat=last + dlat, lon=8.0, speed_kmh=speed))

    run(20, 50.0, 0.0004)   # trip
    run(10, 0.0, 0.0)       # stop (10 min)
    run(15, 40.0, 0.0003)   # trip ...
    run(2, 0.5, 0.0)        # ... with a traffic light (2 min: not a stop)
    run(5, 30.0, 0.0002)
    s = queries.summarize(pts)
    assert len(s["stops"]) == 1 and 9 * 60 <= s["stops"][0]["duration_s"] <= 10 * 60
    assert len(s["trips"]) == 2
    assert s["trips"][0]["max_speed_kmh"] == 50.0
    # 39 steps of 0.0004° latitude between the first point and the stop ≈ 1.73 km
    assert s["trips"][0]["distance_km"] == pytest.approx(39 * 0.0004 * 111.2, rel=0.01)
    assert s["trips"][1]["points"] == 15 * 2 + 2 * 2 + 5 * 2 + 1


def test_parse_time_and_day():
    assert queries.parse_time("2025-11-23T00:00:00Z") == T0
    assert queries.parse_time("2025-11-23T01:00:00+01:00") == T0
    assert queries.parse_time(str(T0)) == T0
    assert queries.day_bounds(date(2025, 11, 23)) == (T0, T0 + DAY)
