"""The maintenance monitor on real SQLite and PostgreSQL: service alerts open when an interval
comes due, turn overdue, close once a service is recorded; GPS odometry when there is no CAN
odometer; a signal drifting from the vehicle's own baseline raises `signal_health`."""

from __future__ import annotations

import pytest

from backend.maintenance.config import parse_maintenance
from backend.maintenance.monitor import MaintenanceMonitor, service_status
from backend.queries import yesterday_bounds
from backend.store import open_store
from backend.store.base import AlertQuery, StoredReading
from geostream.clock import wall_ms
from tests.mcptools.fleetdata import MAINTENANCE, load

HOUR = 3_600_000
# a clock fixed for the test, at the hour before the real one: PostgreSQL creates partitions
# only for days near the wall clock (backend/store/postgres/partitions.py), so a fixed date
# fails once the calendar moves away from it
NOW = wall_ms() // HOUR * HOUR - HOUR


@pytest.fixture
async def store(db_url):
    s = open_store(db_url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def _alerts(store, rule):
    return await store.list_alerts(AlertQuery(rule=rule, limit=100))


async def test_service_alert_opens_escalates_and_closes(store):
    await load(store, NOW)
    monitor = MaintenanceMonitor(store, parse_maintenance(MAINTENANCE))
    await monitor.check(NOW)
    [a] = await _alerts(store, "service")
    assert (a.vehicle_id, a.subject, a.state, a.detail["level"]) == ("truck-1", "oil", "open",
                                                                      "due")
    assert a.detail["used"] == 95.0 and a.detail["source"] == "can-odometer"
    await monitor.check(NOW + 60_000)  # nothing changed: no second alert, no update
    assert [x.id for x in await _alerts(store, "service")] == [a.id]
    # six more km: overdue, the same alert
    t = NOW - HOUR
    await store.write([StoredReading("truck-1", 2, 1, t, "can",
                                     data={"HighResTotalVehicleDistance": 1101.0},
                                     received_ms=t)], [])
    await monitor.check(NOW + 120_000)
    [b] = await _alerts(store, "service")
    assert (b.id, b.detail["level"], b.state) == (a.id, "overdue", "open")
    # serviced at 1101 km: closed
    await store.add_service("truck-1", "oil", NOW + 150_000, 1101.0, None, "oil and filter")
    await monitor.check(NOW + 180_000)
    [c] = await _alerts(store, "service")
    assert (c.id, c.state, c.end_ms) == (a.id, "closed", NOW + 180_000)
    [oil, _] = await service_status(store, monitor.cfg, "truck-1", 0, NOW + 180_000)
    assert (oil.state, oil.used, oil.since_ms) == ("ok", 0.0, NOW + 150_000)


async def test_gps_odometry_without_a_can_odometer(store):
    await load(store, NOW)
    cfg = parse_maintenance({"interval": [{"name": "tyres", "by": "km", "every": 10}],
                             "odometer_signal": "NoSuchSignal"})
    [s] = await service_status(store, cfg, "truck-1", 0, NOW)
    # out of the depot (0.01° lat and lon, ~1.3 km), then 59 steps of 0.01° lat (1.11 km)
    assert s.source == "gps" and 60 < s.used < 72 and s.state == "overdue"


async def test_signal_drift_raises_signal_health(store):
    await store.add_vehicle("truck-7")
    start, _ = yesterday_bounds(NOW)
    rows, seq = [], 0
    for i in range(300):  # 5 h of baseline at 88 °C, then the last 24 h at 95 °C
        t = NOW - 3 * 24 * HOUR + i * 60_000 if i < 200 else NOW - 20 * HOUR + i * 60_000
        value = 88.0 + (i % 3) * 0.5 if i < 200 else 95.0 + (i % 3) * 0.5
        rows.append(StoredReading("truck-7", 1, seq, t, "can",
                                  data={"EngCoolantTemp": value}, received_ms=t))
        seq += 1
    await store.write(rows, [])
    cfg = parse_maintenance({"health": [{"signal": "EngCoolantTemp"}]})
    await MaintenanceMonitor(store, cfg).check(NOW)
    [a] = await _alerts(store, "signal_health")
    assert (a.vehicle_id, a.subject, a.state) == ("truck-7", "EngCoolantTemp all own", "open")
    assert a.detail["baseline"]["median"] == 88.5 and a.detail["recent"]["median"] == 95.5


async def test_engine_hours_interval_from_the_can_counter(store):
    await store.add_vehicle("truck-5")
    rows = [StoredReading("truck-5", 1, i, NOW - (10 - i) * HOUR, "can", received_ms=NOW,
                          data={"EngTotalHoursOfOperation": 4000.0 + 48 * i})
            for i in range(10)]  # 4000 h … 4432 h
    await store.write(rows, [])
    await store.add_service("truck-5", "engine", NOW - 9 * HOUR, 4048.0 - 100, 3990.0)
    cfg = parse_maintenance({"interval": [{"name": "engine", "by": "engine_h", "every": 500,
                                           "due_within": 50}]})
    [s] = await service_status(store, cfg, "truck-5", 0, NOW)
    assert (s.source, s.used, s.remaining, s.state) == ("can-engine-hours", 442.0, 58.0, "ok")
    rows = [StoredReading("truck-5", 1, 99, NOW - 1000, "can", received_ms=NOW,
                          data={"EngTotalHoursOfOperation": 4445.0})]
    await store.write(rows, [])
    [s] = await service_status(store, cfg, "truck-5", 0, NOW)
    assert (s.used, s.state) == (455.0, "due")
