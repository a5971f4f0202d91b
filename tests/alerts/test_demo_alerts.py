"""The demo's scenario raises alerts: truck-1's simulated drive (hil.demo.sim_args, the same
gps_sim fixes the demo plays, on a route file of the demo's Helsinki roads) out of the demo's
depot geofence, in emulated time, evaluated by the default rules on a real SQLite store."""

import datetime as dt

from backend.alerts import AlertEngine, parse_rules
from backend.store.base import AlertQuery, StoredReading
from backend.store.sqlite import SqliteStore
from hil import demo, demo_dispatch
from hil.gps_sim import Overspeed, fixes
from tests.dispatch import helsinki

RATE_HZ = 2.0
MINUTES = 10


def truck1_fixes(tmp_path):
    # truck-1 as the demo starts it when the planner gave it no stops: a tour from the depot
    files = demo_dispatch.write_route_files(helsinki.graph(), [], {}, tmp_path, ["truck-1"])
    opts = dict(zip(*[iter(demo.sim_args(0, RATE_HZ, str(files["truck-1"])))] * 2,
                    strict=True))
    kmh, every, for_s = (float(x) for x in opts["--overspeed"].split(":"))
    start = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
    stream = fixes("harbour", float(opts["--start-fraction"]), RATE_HZ, start,
                   float(opts["--speed"]), Overspeed(kmh, every, for_s), opts["--route-file"])
    return [next(stream) for _ in range(int(MINUTES * 60 * RATE_HZ))], start


async def test_demo_truck1_overspeeds_and_visits_the_depot(tmp_path):
    store = SqliteStore(str(tmp_path / "demo.db"))
    await store.open()
    await store.put_geofence("depot", "Depot", demo.DEPOT)
    engine = AlertEngine(store, parse_rules({}))
    await engine.start(0)
    points, start = truck1_fixes(tmp_path)
    readings = [StoredReading("truck-1", 1, i + 1, round(f.time.timestamp() * 1000), "pos",
                              lat=f.lat, lon=f.lon, speed_kmh=f.speed_kmh, received_ms=1)
                for i, f in enumerate(points)]
    for i in range(0, len(readings), 4):  # a batch per 2 s, as the paced agent sends
        await store.write(readings[i:i + 4], [])
        await engine.on_committed(readings[i:i + 4], 0)
    alerts = await store.list_alerts(AlertQuery(limit=100))
    await store.close()
    t0 = round(start.timestamp() * 1000)
    got = sorted((a.rule, (a.start_ms - t0) / 1000,
                  None if a.end_ms is None else (a.end_ms - t0) / 1000) for a in alerts)
    # 110 km/h for the last 40 s of every 240 s: 200-240 s and 440-480 s
    assert [g for g in got if g[0] == "overspeed"] == [("overspeed", 200.0, 240.0),
                                                        ("overspeed", 440.0, 480.0)]
    # it starts in the depot (first seen inside: no enter), leaves, passes through it again
    visits = [g[0] for g in sorted(got, key=lambda g: g[1]) if g[0].startswith("geofence")]
    assert visits == ["geofence-exit", "geofence-enter", "geofence-exit"]
    assert engine.stats["alerts_opened"]["overspeed"] == 2
