"""Vehicles with their last state; provisioning and revocation (admin)."""

from __future__ import annotations

import collections

from aiohttp import web

from geostream.clock import wall_ms

from ..authz import Role, requires
from ..hub import iso_time, position_feature
from ..store.base import AlertQuery
from .common import GATEWAY, STORE, VEHICLE_ID, audit, error, principal, read_json, visible
from .units import signal_units

# Open alerts counted per list: far above what a fleet has open at once (they close or get
# acknowledged); beyond it the counts are a floor.
MAX_OPEN_ALERTS = 10_000


def position_of(row: dict) -> dict | None:
    """The API's position of a stored last position; None (no position) for one whose time no
    ISO 8601 date can name (stored before the gateway checked the time window)."""
    if iso_time(row["time_ms"]) is None:
        return None
    props = position_feature(row["vehicle_id"], row["time_ms"], row["lat"], row["lon"],
                             row["speed_kmh"], row["course_deg"], row["seq"])["properties"]
    return {"lat": row["lat"], "lon": row["lon"], "time_ms": row["time_ms"],
            "time": props["time"], "speed_kmh": row["speed_kmh"],
            "course_deg": row["course_deg"], "epoch": row["epoch"], "seq": row["seq"]}


async def vehicle_states(request: web.Request, only: str | None = None) -> list[dict]:
    """The API's Vehicle objects (backend/openapi.yaml) the principal may see, by id."""
    store, gateway = request.app[STORE], request.app[GATEWAY]
    who = principal(request)
    provisioned = {v["vehicle_id"]: v for v in await store.list_vehicles()}
    last = {r["vehicle_id"]: r for r in await store.last_positions()}
    signals = await store.last_signals()
    fixes = await store.last_fixes()
    units = signal_units()
    statuses = await store.vehicle_statuses()
    counts = collections.Counter(a.vehicle_id for a in await store.list_alerts(
        AlertQuery(state="open", vehicles=who.vehicles, limit=MAX_OPEN_ALERTS)))
    now = wall_ms()
    out = []
    for vid in sorted(provisioned.keys() | last.keys()):
        if (only is not None and vid != only) or not who.may_see(vid):
            continue
        row, pos = provisioned.get(vid, {}), last.get(vid)
        conns = gateway.connections.get(vid, ())
        out.append({
            "id": vid, "created_ms": row.get("created_ms"),
            "revoked": row.get("revoked_ms") is not None,
            "position": None if pos is None else position_of(pos),
            "fix_age_s": None if pos is None else max(0.0, (now - pos["time_ms"]) / 1000),
            "fix": fixes.get(vid) if pos is not None else None,
            "can": {name: {**v, "unit": units.get(name)}
                    for name, v in signals.get(vid, {}).items()},
            "link": {"connected": bool(conns), "connections": len(conns)},
            "status": statuses.get(vid),
            "open_alerts": counts.get(vid, 0)})
    return out


@requires(Role.VIEWER)
async def list_vehicles(request: web.Request) -> web.Response:
    return web.json_response({"vehicles": await vehicle_states(request)})


@requires(Role.VIEWER)
async def get_vehicle(request: web.Request) -> web.Response:
    vid = visible(request)
    found = await vehicle_states(request, only=vid)
    if not found:
        raise error(web.HTTPNotFound, f"unknown vehicle {vid!r}")
    return web.json_response(found[0])


@requires(Role.ADMIN)
async def create_vehicle(request: web.Request) -> web.Response:
    body = await read_json(request)
    vid = body.get("id") if isinstance(body, dict) else None
    if not isinstance(vid, str) or not VEHICLE_ID.fullmatch(vid):
        raise error(web.HTTPBadRequest, "id must be 1..64 of A-Z a-z 0-9 _ . : -")
    token = await request.app[STORE].add_vehicle(vid)
    await audit(request, "vehicle.create", vid)
    return web.json_response({"id": vid, "token": token}, status=201)


@requires(Role.ADMIN)
async def revoke_vehicle(request: web.Request) -> web.Response:
    vid = request.match_info["vehicle"]
    store = request.app[STORE]
    if not VEHICLE_ID.fullmatch(vid) or vid not in {
            v["vehicle_id"] for v in await store.list_vehicles()}:
        raise error(web.HTTPNotFound, f"unknown vehicle {vid!r}")
    if await store.revoke_vehicle(vid):
        await audit(request, "vehicle.revoke", vid)
    # open connections close on the gateway's next revocation poll (seconds)
    return web.json_response({"id": vid, "revoked": True})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/vehicles", list_vehicles)
    app.router.add_post("/api/vehicles", create_vehicle)
    app.router.add_get("/api/vehicles/{vehicle}", get_vehicle)
    app.router.add_post("/api/vehicles/{vehicle}/revoke", revoke_vehicle)
