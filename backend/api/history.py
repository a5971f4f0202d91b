"""A vehicle's past: route (downsampled GeoJSON), trips and stops, geofence entries; CSV."""

from __future__ import annotations

import re

from aiohttp import web

from geostream.clock import wall_ms

from .. import queries
from ..authz import Role, requires
from .common import STORE, csv_response, error, int_param, principal, visible, wants_csv, window
from .geofences import visible_geofence

DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
TRIP_CSV = ["kind", "start_ms", "end_ms", "start", "end", "duration_s", "distance_km",
            "max_speed_kmh", "from_lon", "from_lat", "to_lon", "to_lat"]
ENTRY_CSV = ["geofence", "vehicle", "time_ms", "time", "lat", "lon", "epoch", "seq"]


@requires(Role.VIEWER)
async def route(request: web.Request) -> web.Response:
    vehicle = visible(request)
    q = request.query
    step_s = int_param(q, "step_s", lo=1, hi=queries.MAX_WINDOW_MS // 1000)
    try:
        feature = await queries.route(
            request.app[STORE], vehicle, *window(q),
            step_ms=int_param(q, "step_ms", lo=1, hi=queries.MAX_WINDOW_MS)
            or (step_s or 0) * 1000 or None,
            max_points=int_param(q, "max_points", lo=1, hi=queries.MAX_ROUTE_POINTS))
    except ValueError as exc:
        raise error(web.HTTPBadRequest, f"bad query: {exc}") from None
    return web.json_response(feature)


@requires(Role.VIEWER)
async def trips(request: web.Request) -> web.Response:
    vehicle = visible(request)
    q, store = request.query, request.app[STORE]
    start, end = window(q)
    day = q.get("day")
    if day is not None and not DAY.fullmatch(day):
        raise error(web.HTTPBadRequest, "day must be YYYY-MM-DD")
    try:
        if start is None and end is None:
            answer = await queries.trips(store, vehicle, queries.parse_day(day))
        else:
            now = wall_ms()
            end = end if end is not None else now
            start = start if start is not None else end - queries.DAY_MS
            answer = await queries.trips_between(store, vehicle, start, end)
    except ValueError as exc:
        raise error(web.HTTPBadRequest, f"bad query: {exc}") from None
    if not wants_csv(request):
        return web.json_response(answer)
    rows = [["trip", t["start_ms"], t["end_ms"], queries.iso(t["start_ms"]),
             queries.iso(t["end_ms"]), (t["end_ms"] - t["start_ms"]) / 1000, t["distance_km"],
             t["max_speed_kmh"], *t["from"], *t["to"]] for t in answer["trips"]]
    rows += [["stop", s["start_ms"], s["end_ms"], queries.iso(s["start_ms"]),
              queries.iso(s["end_ms"]), s["duration_s"], 0, "", *s["at"], *s["at"]]
             for s in answer["stops"]]
    rows.sort(key=lambda r: r[1])
    return csv_response(TRIP_CSV, rows, f"trips-{vehicle}.csv")


def _entry_rows(entries: list[dict]) -> list[list]:
    return [[e["geofence_id"], e["vehicle_id"], e["time_ms"], queries.iso(e["time_ms"]),
             e["lat"], e["lon"], e["epoch"], e["seq"]] for e in entries]


def _default_window(q) -> tuple[int, int]:
    start, end = window(q)
    default_start, default_end = queries.yesterday_bounds()
    start = default_start if start is None else start
    end = default_end if end is None else end
    try:
        queries.check_window(start, end)
    except ValueError as exc:
        raise error(web.HTTPBadRequest, f"bad query: {exc}") from None
    return start, end


@requires(Role.VIEWER)
async def vehicle_entries(request: web.Request) -> web.Response:
    vehicle = visible(request)
    start, end = _default_window(request.query)
    store, who = request.app[STORE], principal(request)
    hidden = {r["geofence_id"] for r in await store.geofences()
              if not who.may_see_geofence(r["group"])}
    entries = [e for e in await store.vehicle_geofence_entries(vehicle, start, end)
               if e["geofence_id"] not in hidden]
    if wants_csv(request):
        return csv_response(ENTRY_CSV, _entry_rows(entries), f"entries-{vehicle}.csv")
    return web.json_response({"vehicle": vehicle, "from_ms": start, "to_ms": end,
                              "entries": entries})


@requires(Role.VIEWER)
async def geofence_entries(request: web.Request) -> web.Response:
    gid = request.match_info["geofence"]
    store = request.app[STORE]
    if await visible_geofence(request, gid) is None:
        raise error(web.HTTPNotFound, f"unknown geofence {gid!r}")
    start, end = _default_window(request.query)
    answer = await queries.geofence_entries(store, gid, start, end)
    who = principal(request)
    entries = [e for e in answer["entries"] if who.may_see(e["vehicle_id"])]
    answer.update(entries=entries, vehicles=sorted({e["vehicle_id"] for e in entries}))
    if wants_csv(request):
        return csv_response(ENTRY_CSV, _entry_rows(entries), f"entries-{gid}.csv")
    return web.json_response(answer)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/vehicles/{vehicle}/route", route)
    app.router.add_get("/api/vehicles/{vehicle}/trips", trips)
    app.router.add_get("/api/vehicles/{vehicle}/geofence-entries", vehicle_entries)
    app.router.add_get("/api/geofences/{geofence}/entries", geofence_entries)
