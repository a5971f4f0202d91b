"""The fleet questions dispatchers ask, shared by the REST API and `python -m backend query`.

Every function takes a `Store` (SQLite or PostgreSQL) and returns plain JSON-able values, so
both front ends print exactly the same answer. The stores do the heavy part (PostGIS with its
GIST index, or Shapely over SQLite); trips and stops are derived here from ordered points.
Times are epoch milliseconds; days are UTC days.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

from geostream.clock import wall_ms

from .hub import iso_time, position_feature

DEFAULT_ROUTE_HOURS = 48
# Downsampling never returns more than this many points, whatever the request says.
MAX_ROUTE_POINTS = 100_000
# A vehicle is stopped below this speed (GNSS speed noise at standstill is ~1-2 km/h) ...
STOP_SPEED_KMH = 3.0
# ... and a stop counts once it lasted this long (shorter ones are traffic lights).
MIN_STOP_S = 300
EARTH_RADIUS_M = 6_371_008.8
DAY_MS = 86_400_000
# The longest window one history question may span: a month of one vehicle at 1 Hz is ~2.7
# million points, past that a question is an export job, not an answer to wait for.
MAX_WINDOW_DAYS = 31
MAX_WINDOW_MS = MAX_WINDOW_DAYS * DAY_MS
# The most positions one history question reads (LIMIT in SQL): two days of a vehicle at 1 Hz,
# ~80 MB as Python objects. More is refused (400): ask for a shorter window or a step.
MAX_HISTORY_ROWS = 200_000


async def bounded_route(store, vehicle_id: str, start_ms: int, end_ms: int,
                        step_ms: int | None = None) -> list[dict]:
    """`store.route` with at most MAX_HISTORY_ROWS points; ValueError beyond."""
    points = await store.route(vehicle_id, start_ms, end_ms, step_ms, limit=MAX_HISTORY_ROWS + 1)
    if len(points) > MAX_HISTORY_ROWS:
        raise ValueError(f"more than {MAX_HISTORY_ROWS} positions in the window: ask for a "
                         "shorter window, or max_points / step_ms")
    return points


def check_window(start_ms: int, end_ms: int) -> None:
    """ValueError unless [start, end) is a window a history question may ask about."""
    if end_ms <= start_ms:
        raise ValueError("the end of the window must be after its start")
    if end_ms - start_ms > MAX_WINDOW_MS:
        raise ValueError(f"the window may span at most {MAX_WINDOW_DAYS} days")



def parse_time(value: str | int | None, default: int | None = None) -> int | None:
    """Epoch milliseconds from an integer or an ISO-8601 string (naive means UTC)."""
    if value is None or value == "":
        return default
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return round(dt.timestamp() * 1000)


def parse_day(value: str | None, now: int | None = None) -> date:
    if value:
        return date.fromisoformat(value)
    return datetime.fromtimestamp((now or wall_ms()) / 1000, UTC).date()


def day_bounds(day: date) -> tuple[int, int]:
    start = round(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    return start, start + DAY_MS


def yesterday_bounds(now: int | None = None) -> tuple[int, int]:
    return day_bounds(parse_day(None, now) - timedelta(days=1))


# Distance from positions ignores a step implying more than this speed: a position jump
# (multipath, a cold start far away) is not distance driven (service-interval odometry, trip
# and scorecard kilometres all use it).
MAX_PLAUSIBLE_KMH = 250.0


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


# --- route ------------------------------------------------------------------------------------

async def route(store, vehicle_id: str, start_ms: int | None = None, end_ms: int | None = None,
                step_ms: int | None = None, max_points: int | None = None,
                now: int | None = None) -> dict:
    """GeoJSON Feature (LineString) of the vehicle's positions in [start, end), by device time.
    Downsampled on request: the first point of every `step_ms` bucket, or a bucket size that
    keeps about `max_points`."""
    end = end_ms if end_ms is not None else (now or wall_ms())
    start = start_ms if start_ms is not None else end - DEFAULT_ROUTE_HOURS * 3_600_000
    check_window(start, end)
    if max_points:
        limit = min(max_points, MAX_ROUTE_POINTS)
        step_ms = max(step_ms or 0, math.ceil((end - start) / limit))
    points = await bounded_route(store, vehicle_id, start, end, step_ms or None)
    if len(points) > MAX_ROUTE_POINTS:  # no step asked and a huge window: thin it anyway
        points = points[:: math.ceil(len(points) / MAX_ROUTE_POINTS)]
    return {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": [[p["lon"], p["lat"]] for p in points]},
        "properties": {"vehicle": vehicle_id, "points": len(points), "from_ms": start,
                       "to_ms": end, "step_ms": step_ms or None,
                       "times_ms": [p["time_ms"] for p in points],
                       "speeds_kmh": [p["speed_kmh"] for p in points]},
    }


# --- last positions ---------------------------------------------------------------------------

async def last_positions(store) -> dict:
    """Newest position of every vehicle, as the hub's Feature shape (docs/protocol.md §9)."""
    rows = await store.last_positions()
    return {"type": "FeatureCollection", "features": [
        {**position_feature(r["vehicle_id"], r["time_ms"], r["lat"], r["lon"], r["speed_kmh"],
                            r["course_deg"], r["seq"]), "id": r["vehicle_id"]}
        for r in rows]}


# --- geofences --------------------------------------------------------------------------------

async def geofence_entries(store, geofence_id: str, start_ms: int | None = None,
                           end_ms: int | None = None, now: int | None = None) -> dict:
    """Which vehicles entered geofence G in [start, end) (default: yesterday, UTC). An entry
    is an outside→inside transition between consecutive positions in device-time order, so
    backfilled points are judged in their place, not in arrival order."""
    if start_ms is None or end_ms is None:
        default_start, default_end = yesterday_bounds(now)
        start_ms = default_start if start_ms is None else start_ms
        end_ms = default_end if end_ms is None else end_ms
    check_window(start_ms, end_ms)
    entries = [{**e, "geofence_id": geofence_id}
               for e in await store.geofence_entries(geofence_id, start_ms, end_ms)]
    return {"geofence": geofence_id, "from_ms": start_ms, "to_ms": end_ms,
            "vehicles": sorted({e["vehicle_id"] for e in entries}), "entries": entries}


# --- trips and stops --------------------------------------------------------------------------

def summarize(points: list[dict], stop_speed_kmh: float = STOP_SPEED_KMH,
              min_stop_s: float = MIN_STOP_S) -> dict:
    """Split time-ordered positions into stops (a run of points below `stop_speed_kmh` lasting
    at least `min_stop_s`) and trips (what lies between, joined to the neighbouring stops)."""
    def still(i: int) -> bool:
        speed = points[i]["speed_kmh"]
        if speed is None:  # no GNSS speed: derive it from the previous point
            if i == 0:
                return False
            a, b = points[i - 1], points[i]
            dt = (b["time_ms"] - a["time_ms"]) / 3_600_000
            speed = haversine_m(a["lat"], a["lon"], b["lat"], b["lon"]) / 1000 / dt if dt else 0
        return speed < stop_speed_kmh

    stops: list[tuple[int, int]] = []  # index ranges, inclusive
    i = 0
    while i < len(points):
        if not still(i):
            i += 1
            continue
        j = i
        while j + 1 < len(points) and still(j + 1):
            j += 1
        if (points[j]["time_ms"] - points[i]["time_ms"]) / 1000 >= min_stop_s:
            stops.append((i, j))
        i = j + 1

    trips: list[tuple[int, int]] = []
    cursor = 0
    for a, b in stops + [(len(points) - 1, None)]:
        if a > cursor:
            trips.append((cursor, a))
        cursor = b if b is not None else cursor
    out_trips = []
    for a, b in trips:
        seg = points[a:b + 1]
        dist = sum(haversine_m(p["lat"], p["lon"], q["lat"], q["lon"])
                   for p, q in zip(seg, seg[1:], strict=False))
        speeds = [p["speed_kmh"] for p in seg if p["speed_kmh"] is not None]
        out_trips.append({"start_ms": seg[0]["time_ms"], "end_ms": seg[-1]["time_ms"],
                          "distance_km": round(dist / 1000, 3),
                          "max_speed_kmh": max(speeds) if speeds else None,
                          "points": len(seg),
                          "from": [seg[0]["lon"], seg[0]["lat"]],
                          "to": [seg[-1]["lon"], seg[-1]["lat"]]})
    out_stops = [{"start_ms": points[a]["time_ms"], "end_ms": points[b]["time_ms"],
                  "duration_s": (points[b]["time_ms"] - points[a]["time_ms"]) / 1000,
                  "at": [points[a]["lon"], points[a]["lat"]]} for a, b in stops]
    return {"trips": out_trips, "stops": out_stops,
            "distance_km": round(sum(t["distance_km"] for t in out_trips), 3),
            "driving_s": sum((t["end_ms"] - t["start_ms"]) / 1000 for t in out_trips),
            "stopped_s": sum(s["duration_s"] for s in out_stops)}


async def trips(store, vehicle_id: str, day: date | str | None = None,
                now: int | None = None) -> dict:
    """Trips and stops of one vehicle on one UTC day (default today)."""
    d = day if isinstance(day, date) else parse_day(day, now)
    start, end = day_bounds(d)
    return {**await trips_between(store, vehicle_id, start, end), "day": d.isoformat()}


async def trips_between(store, vehicle_id: str, start_ms: int, end_ms: int) -> dict:
    """Trips and stops of one vehicle in [start, end)."""
    check_window(start_ms, end_ms)
    points = await bounded_route(store, vehicle_id, start_ms, end_ms)
    return {"vehicle": vehicle_id, "from_ms": start_ms, "to_ms": end_ms, **summarize(points)}


def iso(ms: int) -> str:
    """ISO 8601 UTC with milliseconds, as in the GeoJSON `time` properties ("" for a time
    outside years 1–9999)."""
    return iso_time(ms) or ""
