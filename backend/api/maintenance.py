"""Maintenance routes: record a service (it restarts the interval and closes the open `service`
alert at once), a vehicle's service history, the fleet's due list and trouble codes as a
workflow (docs/maintenance.md)."""

from __future__ import annotations

from aiohttp import web

from geostream.clock import wall_ms

from ..authz import Role, requires
from ..maintenance.config import MaintenanceConfig
from ..maintenance.monitor import fleet_dtcs, fleet_due, forecasts
from ..maintenance.records import parse_service, record_json, row_of
from ..queries import iso
from .common import (
    MAINTENANCE,
    STORE,
    audit,
    csv_response,
    error,
    int_param,
    principal,
    read_json,
    visible,
    wants_csv,
    window,
)

DEFAULT_HISTORY = 100
MAX_HISTORY = 1000  # one page of a vehicle's history; years of services at weekly visits


async def _vehicle(request: web.Request) -> dict:
    """The path's provisioned vehicle the caller may see, else 404."""
    vid = visible(request)
    for v in await request.app[STORE].list_vehicles():
        if v["vehicle_id"] == vid:
            return v
    raise error(web.HTTPNotFound, f"unknown vehicle {vid!r}")


@requires(Role.VIEWER)
async def list_services(request: web.Request) -> web.Response:
    limit = int_param(request.query, "limit", lo=1, hi=MAX_HISTORY) or DEFAULT_HISTORY
    vid = (await _vehicle(request))["vehicle_id"]
    rows = await request.app[STORE].list_services(vid, limit)
    monitor = request.app.get(MAINTENANCE)
    names = [] if monitor is None else sorted(await monitor.intervals_of(vid))
    return web.json_response({"services": [record_json(r) for r in rows], "intervals": names})


@requires(Role.DISPATCHER)
async def record_service(request: web.Request) -> web.Response:
    vehicle = await _vehicle(request)
    vid = vehicle["vehicle_id"]
    monitor = request.app.get(MAINTENANCE)
    names = None if monitor is None else await monitor.intervals_of(vid)
    now = wall_ms()
    try:
        rec = parse_service(await read_json(request), names, now, principal(request).name)
    except ValueError as exc:
        raise error(web.HTTPBadRequest, str(exc)) from None
    store = request.app[STORE]
    sid = await store.add_service(vid, rec.interval, rec.done_ms, rec.odometer_km, rec.engine_h,
                                  rec.work, rec.who, cost=rec.cost)
    await audit(request, "service.record", vid, {"interval": rec.interval, "id": sid})
    closed = ([] if monitor is None
              else await monitor.after_service(vid, vehicle.get("created_ms") or 0, now))
    resp = web.json_response({"service": record_json(row_of(sid, vid, rec)),
                              "closed_alerts": len(closed)}, status=201)
    resp.headers["Location"] = f"/api/vehicles/{vid}/services"
    return resp


# `state` of the due list: what needs a person's attention (the default), one state, or all.
DUE_STATES = {"attention": ("due", "overdue"), "overdue": ("overdue",), "due": ("due",),
              "unknown": ("unknown",), "ok": ("ok",),
              "all": ("overdue", "due", "unknown", "ok")}
DUE_CSV = ["vehicle", "interval", "by", "every", "used", "remaining", "state", "since_ms",
           "since", "source", "source_label"]


@requires(Role.VIEWER)
async def due_list(request: web.Request) -> web.Response:
    """The fleet's service plans the caller may see, the most urgent first."""
    state = request.query.get("state", "attention")
    if state not in DUE_STATES:
        raise error(web.HTTPBadRequest, f"state must be one of {', '.join(DUE_STATES)}")
    csv = wants_csv(request)
    monitor = request.app.get(MAINTENANCE)
    now = wall_ms()
    rows = []
    if monitor is not None:
        p = principal(request)
        vehicles = [v for v in await request.app[STORE].list_vehicles()
                    if v.get("revoked_ms") is None and p.may_see(v["vehicle_id"])]
        rows = [s.as_json() for s in await fleet_due(request.app[STORE], monitor.cfg,
                                                     vehicles, now)
                if s.state in DUE_STATES[state]]
    if csv:
        return csv_response(DUE_CSV, [[r["vehicle"], r["interval"], r["by"], r["every"],
                                       r["used"], r["remaining"], r["state"], r["since_ms"],
                                       iso(r["since_ms"]), r["source"], r["source_label"]]
                                      for r in rows], "maintenance-due.csv")
    return web.json_response({"now_ms": now, "due": rows})


DAY_MS = 86_400_000
# Trouble codes are sparse (an event per change of a set), and a recurrence months later is
# what the workflow is for: the default window is a quarter, at most a year.
DTC_DEFAULT_DAYS = 90
DTC_MAX_DAYS = 366
DTC_STATUSES = ("all", "active", "pending", "cleared")
DTC_CSV = ["vehicle", "code", "status", "proto", "first_ms", "first", "last_ms", "last",
           "cleared_ms", "cleared", "episodes", "recurrences", "recurred_ms", "reports",
           "occurrences", "km", "km_source", "per_1000_km", "other_vehicles", "controllers"]


def _dtc_window(request: web.Request, now: int) -> tuple[int, int]:
    start, end = window(request.query)
    end = now + 1 if end is None else end
    start = end - DTC_DEFAULT_DAYS * DAY_MS if start is None else start
    if end <= start or end - start > DTC_MAX_DAYS * DAY_MS:
        raise error(web.HTTPBadRequest, f"the window must be non-empty and at most "
                                        f"{DTC_MAX_DAYS} days")
    return start, end


async def _dtcs(request: web.Request, only: str | None = None) -> web.Response:
    """The trouble-code workflow rows of the visible vehicles (or of `only`), the other
    vehicles sharing a code counted among the visible ones."""
    status = request.query.get("status", "all")
    if status not in DTC_STATUSES:
        raise error(web.HTTPBadRequest, f"status must be one of {', '.join(DTC_STATUSES)}")
    csv = wants_csv(request)
    now = wall_ms()
    start, end = _dtc_window(request, now)
    monitor = request.app.get(MAINTENANCE)
    cfg = MaintenanceConfig() if monitor is None else monitor.cfg
    per = await fleet_dtcs(request.app[STORE], cfg, await _visible_vehicles(request), start,
                           end)
    rows = [r for v, rs in per.items() if only is None or v == only for r in rs
            if status == "all" or r["status"] == status]
    order = {"active": 0, "pending": 1, "cleared": 2}
    rows.sort(key=lambda r: (order[r["status"]], -r["last_ms"], r["vehicle"], r["code"]))
    if csv:
        def t(ms):
            return "" if ms is None else iso(ms)
        name = f"dtcs-{only}.csv" if only else "dtcs.csv"
        return csv_response(DTC_CSV, [
            [r["vehicle"], r["code"], r["status"], r["proto"], r["first_ms"], t(r["first_ms"]),
             r["last_ms"], t(r["last_ms"]), r["cleared_ms"], t(r["cleared_ms"]), r["episodes"],
             r["recurrences"], r["recurred_ms"], r["reports"], r["occurrences"], r["km"],
             r["km_source"], r["per_1000_km"], " ".join(r["other_vehicles"]),
             " ".join(r["controllers"])] for r in rows], name)
    return web.json_response({"from_ms": start, "to_ms": end, "dtcs": rows})


@requires(Role.VIEWER)
async def fleet_trouble_codes(request: web.Request) -> web.Response:
    return await _dtcs(request)


@requires(Role.VIEWER)
async def vehicle_trouble_codes(request: web.Request) -> web.Response:
    return await _dtcs(request, (await _vehicle(request))["vehicle_id"])


FORECAST_CSV = ["vehicle", "kind", "signal", "text", "method", "days_to_threshold",
                "reaches_ms", "reaches", "slope_per_day", "level_now", "threshold", "band",
                "z", "median", "peers_median"]


async def _visible_vehicles(request: web.Request) -> list[str]:
    p = principal(request)
    return [v["vehicle_id"] for v in await request.app[STORE].list_vehicles()
            if v.get("revoked_ms") is None and p.may_see(v["vehicle_id"])]


@requires(Role.VIEWER)
async def forecast_list(request: web.Request) -> web.Response:
    """Trend-to-threshold forecasts (soonest first) and peer deviations, each naming its
    method, over the vehicles the caller may see (peers are counted among them)."""
    csv = wants_csv(request)
    monitor = request.app.get(MAINTENANCE)
    now = wall_ms()
    rows = [] if monitor is None else await forecasts(
        request.app[STORE], monitor.cfg, await _visible_vehicles(request), now)
    if csv:
        return csv_response(FORECAST_CSV, [
            [f["vehicle"], f["kind"], f["signal"], f.get("text", ""), f["method"],
             f.get("days_to_threshold"), f.get("reaches_ms"),
             iso(f["reaches_ms"]) if "reaches_ms" in f else "", f.get("slope_per_day"),
             f.get("level_now"), f.get("threshold"), f.get("band", ""), f.get("z"),
             f.get("median"), (f.get("fleet") or {}).get("median")] for f in rows],
            "maintenance-forecasts.csv")
    return web.json_response({"now_ms": now, "forecasts": rows})


SIGNAL_NAME_MAX = 128  # a CAN signal name, as the protocol bounds it (docs/protocol.md)
DEFAULT_BUCKETS = 200  # a chart's width in points
MAX_BUCKETS = 1000
MAX_SIGNAL_SAMPLES = 200_000  # raw samples read to fill the buckets
SIGNAL_DEFAULT_DAYS = 7


@requires(Role.VIEWER)
async def signal_history(request: web.Request) -> web.Response:
    """One CAN signal of a vehicle in equal time buckets (min, max, mean, n): what a chart of
    the signal draws. Default window: the last 7 days; at most 31."""
    vid = (await _vehicle(request))["vehicle_id"]
    name = request.match_info["signal"]
    if not 0 < len(name) <= SIGNAL_NAME_MAX or not name.isprintable():
        raise error(web.HTTPBadRequest, "bad signal name")
    n = int_param(request.query, "buckets", lo=1, hi=MAX_BUCKETS) or DEFAULT_BUCKETS
    start, end = window(request.query)
    end = wall_ms() + 1 if end is None else end
    start = end - SIGNAL_DEFAULT_DAYS * DAY_MS if start is None else start
    if end <= start or end - start > 31 * DAY_MS:
        raise error(web.HTTPBadRequest, "the window must be non-empty and at most 31 days")
    samples = await request.app[STORE].signal_series(vid, name, start, end, MAX_SIGNAL_SAMPLES)
    width = -(-(end - start) // n)
    groups: dict[int, list[float]] = {}
    for t, v in samples:
        groups.setdefault((t - start) // width, []).append(v)
    return web.json_response({
        "vehicle": vid, "signal": name, "from_ms": start, "to_ms": end, "bucket_ms": width,
        "samples": len(samples), "truncated": len(samples) >= MAX_SIGNAL_SAMPLES,
        "buckets": [{"start_ms": start + i * width, "n": len(vs), "min": min(vs),
                     "max": max(vs), "mean": round(sum(vs) / len(vs), 4)}
                    for i, vs in sorted(groups.items())]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/vehicles/{vehicle}/services", list_services)
    app.router.add_post("/api/vehicles/{vehicle}/services", record_service)
    app.router.add_get("/api/maintenance/due", due_list)
    app.router.add_get("/api/maintenance/dtcs", fleet_trouble_codes)
    app.router.add_get("/api/maintenance/forecasts", forecast_list)
    app.router.add_get("/api/vehicles/{vehicle}/signals/{signal}", signal_history)
    app.router.add_get("/api/vehicles/{vehicle}/dtcs", vehicle_trouble_codes)
