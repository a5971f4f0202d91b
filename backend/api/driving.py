"""Driver behaviour and fuel routes: driving events (harsh acceleration, braking, cornering,
idling, overspeed) with position and time, weekly scorecards per driver or vehicle, fuel
consumption (per trip, day, vehicle: the fleet ranking), refuels and drops; JSON or CSV
(docs/driving.md). Computed from the stored readings when asked."""

from __future__ import annotations

from aiohttp import web

from geostream.clock import wall_ms

from .. import queries
from ..authz import Role, requires
from ..driving import fuel, report, scorecard
from ..driving.thresholds import parse_driving
from .common import DRIVING, STORE, csv_response, error, principal, visible, wants_csv, window

DAY_MS = 86_400_000
DEFAULT_EVENT_DAYS = 7  # a week of events unless asked otherwise
SCORE_WEEKS = 4  # the current ISO week and the three before it
KINDS = ("harsh_accel", "harsh_brake", "harsh_corner", "idle", "overspeed")
EVENT_CSV = ["vehicle", "driver", "kind", "start_ms", "start", "end_ms", "end", "peak", "unit",
             "threshold", "lat", "lon", "speed_kmh", "source", "fuel_l"]
SCORE_KEYS = ["km", "score", "harsh_accel", "harsh_brake", "harsh_corner", "overspeed", "idle",
              "idle_min"]


def _window(request: web.Request, default_start) -> tuple[int, int]:
    start, end = window(request.query)
    end = wall_ms() + 1 if end is None else end
    start = default_start(end) if start is None else start
    try:
        queries.check_window(start, end)
    except ValueError as exc:
        raise error(web.HTTPBadRequest, f"bad query: {exc}") from None
    return start, end


async def _vehicles(request: web.Request) -> list[str]:
    """The query's `vehicle` (404 if not visible), else every visible, unrevoked vehicle."""
    one = request.query.get("vehicle")
    p = principal(request)
    known = [v["vehicle_id"] for v in await request.app[STORE].list_vehicles()
             if v.get("revoked_ms") is None and p.may_see(v["vehicle_id"])]
    if one is not None:
        if one not in known:
            raise error(web.HTTPNotFound, f"unknown vehicle {visible(request, one)!r}")
        return [one]
    return known


async def _fleet(request: web.Request, start: int, end: int) -> dict:
    cfg = request.app.get(DRIVING) or parse_driving(None)
    try:
        return await report.fleet_window(request.app[STORE], cfg, await _vehicles(request),
                                         start, end)
    except ValueError as exc:
        raise error(web.HTTPBadRequest, str(exc)) from None


@requires(Role.VIEWER)
async def driving_events(request: web.Request) -> web.Response:
    kind = request.query.get("kind")
    if kind is not None and kind not in KINDS:
        raise error(web.HTTPBadRequest, f"kind must be one of {', '.join(KINDS)}")
    csv = wants_csv(request)
    start, end = _window(request, lambda end: end - DEFAULT_EVENT_DAYS * DAY_MS)
    got = await _fleet(request, start, end)
    evs = [e for e in got["events"] if kind is None or e["kind"] == kind]
    if csv:
        return csv_response(EVENT_CSV, [
            [e["vehicle"], e["driver"], e["kind"], e["start_ms"], queries.iso(e["start_ms"]),
             e["end_ms"], "" if e["end_ms"] is None else queries.iso(e["end_ms"]), e["peak"],
             e["unit"], e["threshold"], e["lat"], e["lon"], e["speed_kmh"], e["source"],
             e.get("fuel_l")] for e in evs], "driving-events.csv")
    return web.json_response({"from_ms": start, "to_ms": end, "events": evs,
                              "truncated": got["truncated"]})


@requires(Role.VIEWER)
async def scorecards(request: web.Request) -> web.Response:
    by = request.query.get("by", "driver")
    if by not in ("driver", "vehicle"):
        raise error(web.HTTPBadRequest, "by must be driver or vehicle")
    csv = wants_csv(request)
    start, end = _window(request, lambda end: scorecard.week_start(end - 1)
                         - (SCORE_WEEKS - 1) * scorecard.WEEK_MS)
    got = await _fleet(request, start, end)
    rows = scorecard.scorecards(got["events"], got["km"], by)
    if csv:
        return csv_response(["week", by, *SCORE_KEYS], [
            [queries.iso(r["week_ms"])[:10], r[by], *(r[k] for k in SCORE_KEYS)]
            for r in rows], f"scorecards-{by}.csv")
    return web.json_response({"from_ms": start, "to_ms": end, "by": by, "scorecards": rows,
                              "weights": scorecard.WEIGHTS,
                              "idle_weight": scorecard.IDLE_WEIGHT,
                              "truncated": got["truncated"]})


FUEL_BY = ("trip", "day", "vehicle")
TRIP_CSV = ["vehicle", "start_ms", "start", "end_ms", "end", "km", "litres", "l_per_100km",
            "source"]
SUMMARY_KEYS = ["km", "litres", "l_per_100km", "idle_l", "refuel_l", "refuels", "drop_l",
                "drops", "source"]
FUEL_EVENT_CSV = ["vehicle", "kind", "time_ms", "time", "litres", "pct", "level_before",
                  "level_after", "lat", "lon"]


async def _fuel(request: web.Request) -> tuple[int, int, dict]:
    start, end = _window(request, lambda end: end - DEFAULT_EVENT_DAYS * DAY_MS)
    cfg = request.app.get(DRIVING) or parse_driving(None)
    try:
        got = await report.fuel_window(request.app[STORE], cfg, await _vehicles(request), start,
                                       end)
    except ValueError as exc:
        raise error(web.HTTPBadRequest, str(exc)) from None
    return start, end, got


@requires(Role.VIEWER)
async def fuel_consumption(request: web.Request) -> web.Response:
    """Consumption per trip, per vehicle and day, or per vehicle (the fleet ranking)."""
    by = request.query.get("by", "vehicle")
    if by not in FUEL_BY:
        raise error(web.HTTPBadRequest, f"by must be one of {', '.join(FUEL_BY)}")
    csv = wants_csv(request)
    start, end, got = await _fuel(request)
    if by == "trip":
        rows = sorted(got["trips"], key=lambda t: (t["start_ms"], t["vehicle"]))
        if csv:
            return csv_response(TRIP_CSV, [
                [t["vehicle"], t["start_ms"], queries.iso(t["start_ms"]), t["end_ms"],
                 queries.iso(t["end_ms"]), t["km"], t["litres"], t["l_per_100km"],
                 t["source"]] for t in rows], "fuel-trips.csv")
    else:
        rows = fuel.summary(got["trips"], got["idle"], got["events"], by)
        if csv:
            head = ["day", "vehicle"] if by == "day" else ["rank", "vehicle"]
            return csv_response([*head, *SUMMARY_KEYS], [
                [queries.iso(r["day_ms"])[:10] if by == "day" else r["rank"], r["vehicle"],
                 *(r[k] for k in SUMMARY_KEYS)] for r in rows], f"fuel-{by}.csv")
    return web.json_response({"from_ms": start, "to_ms": end, "by": by, "rows": rows,
                              "truncated": got["truncated"]})


@requires(Role.VIEWER)
async def fuel_events(request: web.Request) -> web.Response:
    """Refuels and sudden drops (theft, leaks) found in the tank level."""
    csv = wants_csv(request)
    start, end, got = await _fuel(request)
    rows = sorted(got["events"], key=lambda e: (e["time_ms"], e["vehicle"]))
    if csv:
        return csv_response(FUEL_EVENT_CSV, [
            [e["vehicle"], e["kind"], e["time_ms"], queries.iso(e["time_ms"]), e["litres"],
             e["pct"], e["level_before"], e["level_after"], e["lat"], e["lon"]] for e in rows],
            "fuel-events.csv")
    return web.json_response({"from_ms": start, "to_ms": end, "events": rows,
                              "truncated": got["truncated"]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/driving/events", driving_events)
    app.router.add_get("/api/driving/scorecards", scorecards)
    app.router.add_get("/api/fuel/consumption", fuel_consumption)
    app.router.add_get("/api/fuel/events", fuel_events)
