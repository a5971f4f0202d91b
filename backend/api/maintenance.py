"""Service records: record a service (it restarts the interval and closes the open `service`
alert at once) and a vehicle's service history (docs/maintenance.md)."""

from __future__ import annotations

from aiohttp import web

from geostream.clock import wall_ms

from ..authz import Role, requires
from ..maintenance.monitor import fleet_due
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


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/vehicles/{vehicle}/services", list_services)
    app.router.add_post("/api/vehicles/{vehicle}/services", record_service)
    app.router.add_get("/api/maintenance/due", due_list)
