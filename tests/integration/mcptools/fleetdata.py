"""Yesterday's fleet, written through the store: truck-1 spends an hour in the demo's Depot
and drives 95 km by its CAN odometer (due for its 100 km service); truck-2 drives elsewhere
(10 km); truck-3 sits in the Depot but belongs to a group the limited user is not in."""

from __future__ import annotations

from backend.queries import yesterday_bounds
from backend.store.base import StoredReading
from hil.demo import DEPOT, DEPOT_CENTER

MAINTENANCE = {"interval": [{"name": "oil", "by": "km", "every": 100, "due_within": 10},
                            {"name": "inspection", "by": "days", "every": 365,
                             "due_within": 30}]}
ODOMETER = "HighResTotalVehicleDistance"


def _pos(v, seq, t, lat, lon, speed=30.0):
    return StoredReading(v, 1, seq, t, "pos", lat=lat, lon=lon, speed_kmh=speed, fix=3,
                         received_ms=t)


def _can(v, seq, t, sig):
    return StoredReading(v, 1, seq, t, "can", data=sig, received_ms=t)


def readings(now_ms: int) -> list[StoredReading]:
    start, _ = yesterday_bounds(now_ms)
    t0 = start + 8 * 3_600_000  # 08:00 UTC yesterday
    lat0, lon0 = DEPOT_CENTER
    out = []
    # truck-1: 60 one-minute positions inside the depot, then 60 driving north-east outside
    for i in range(120):
        t = t0 + i * 60_000
        lat, lon = (lat0, lon0) if i < 60 else (lat0 + 0.01 * (i - 59), lon0 + 0.01)
        out.append(_pos("truck-1", i, t, lat, lon, 5.0 if i < 60 else 60.0))
        out.append(_can("truck-1", 1000 + i, t, {ODOMETER: 1000.0 + 95 * i / 119,
                                                 "EngCoolantTemp": 88.0}))
    out.append(StoredReading("truck-1", 1, 5000, t0 + 600_000, "evt",
                             data={"name": "dtc", "bus": "truck", "proto": "j1939",
                                   "src": 0, "set": "active",
                                   "dtcs": [{"spn": 110, "fmi": 0, "oc": 1}]},
                             received_ms=t0))
    # truck-2: always 30 km north of the depot
    for i in range(60):
        t = t0 + i * 60_000
        out.append(_pos("truck-2", i, t, lat0 + 0.3 + 0.001 * i, lon0))
        out.append(_can("truck-2", 1000 + i, t, {ODOMETER: 5000.0 + 10 * i / 59}))
    # truck-3: in the depot, invisible to the limited user
    for i in range(10):
        out.append(_pos("truck-3", i, t0 + i * 60_000, lat0, lon0, 0.0))
    return out


async def load(store, now_ms: int) -> None:
    for v in ("truck-1", "truck-2", "truck-3"):
        await store.add_vehicle(v)
    await store.put_geofence("depot", "Depot", DEPOT)
    await store.write(readings(now_ms), [])
