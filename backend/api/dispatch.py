"""Dispatch over HTTP (docs/dispatch.md): jobs (create, CSV import, list, get, edit, cancel,
state changes, history), vehicle types, drivers, depots, dispatch vehicles and routes.

Dispatchers write, viewers read. Vehicle groups scope it as they scope vehicles: a caller sees
jobs on no route and jobs on routes of vehicles it may see, and only those routes; anything
else answers 404 as if it did not exist.
"""

from __future__ import annotations

import json
import secrets

from aiohttp import web

from geostream.clock import wall_ms

from ..authz import Role, requires
from ..dispatch import codec
from ..dispatch.csvimport import MAX_IMPORT_BYTES, ImportRefused
from ..dispatch.jobstate import IllegalTransition
from ..dispatch.model import Actor, ActorKind, FleetVehicle, JobState, Route
from ..dispatch.service import DispatchError
from ..dispatch.storage import (
    DEFAULT_JOBS_PAGE,
    MAX_JOBS_PAGE,
    JobExists,
    JobQuery,
    StaleState,
    StaleVersion,
)
from .common import GATEWAY, STORE, audit, error, int_param, principal, read_json


def _dispatch(request: web.Request):
    return request.app[GATEWAY].dispatch


def _person(request: web.Request) -> Actor:
    return Actor(ActorKind.PERSON, principal(request).name)


def _bad(exc: Exception) -> web.HTTPError:
    return error(web.HTTPBadRequest, str(exc))


def _conflict(exc: Exception, **extra) -> web.HTTPError:
    """409 with {"error": text} and any `extra` members (the stored version, the ids)."""
    return web.HTTPConflict(text=json.dumps({"error": str(exc), **extra}),
                            content_type="application/json")


async def _visible_route(request: web.Request, route_id: str | None) -> Route | None:
    """The route (None for no route id); 404 if the caller may not see its vehicle."""
    if route_id is None:
        return None
    route = await request.app[STORE].dispatch_route(route_id)
    if route is None or not principal(request).may_see(route.vehicle_id):
        raise error(web.HTTPNotFound, f"unknown route {route_id!r}")
    return route


async def _visible_job(request: web.Request, job_id: str):
    rec = await request.app[STORE].job(job_id)
    if rec is None:
        raise error(web.HTTPNotFound, f"unknown job {job_id!r}")
    if rec.route_id is not None:
        route = await request.app[STORE].dispatch_route(rec.route_id)
        if route is not None and not principal(request).may_see(route.vehicle_id):
            raise error(web.HTTPNotFound, f"unknown job {job_id!r}")
    return rec


STATE_CHANGE_FIELDS = {"to", "id", "at_ms", "lat", "lon", "reason"}


def _tid(body: dict) -> str:
    """The caller's idempotency id for a state change, or a fresh one."""
    if "id" not in body:
        return "t" + secrets.token_hex(12)
    tid = body["id"]
    if not isinstance(tid, str) or not 0 < len(tid) <= 64 or not tid.isprintable():
        raise error(web.HTTPBadRequest, "id: 1–64 printable characters")
    return tid


# --- jobs ----------------------------------------------------------------------------------

@requires(Role.VIEWER)
async def list_jobs(request: web.Request) -> web.Response:
    q = request.query
    states = tuple(s for s in q.get("state", "").split(",") if s)
    try:
        parsed = tuple(JobState(s) for s in states)
    except ValueError:
        raise error(web.HTTPBadRequest, "state: one or more (comma-separated) of "
                    + ", ".join(s.value for s in JobState)) from None
    limit = int_param(q, "limit", lo=1, hi=MAX_JOBS_PAGE) or DEFAULT_JOBS_PAGE
    route_id = q.get("route") or None
    if route_id is not None:
        await _visible_route(request, route_id)
    recs = await request.app[STORE].jobs(JobQuery(
        parsed, route_id, principal(request).vehicles, q.get("after") or None, limit))
    return web.json_response({"jobs": [codec.record_to_dict(r) for r in recs],
                              "next": recs[-1].job.id if len(recs) == limit else None})


@requires(Role.DISPATCHER)
async def create_job(request: web.Request) -> web.Response:
    body = await read_json(request)
    try:
        job = codec.job_from_dict(body)
    except ValueError as exc:
        raise _bad(exc) from None
    try:
        new = await _dispatch(request).add_jobs([job], wall_ms())
    except JobExists as exc:
        raise _conflict(exc, ids=exc.ids) from None
    if new:
        await audit(request, "job.create", job.id)
    rec = await request.app[STORE].job(job.id)
    resp = web.json_response(codec.record_to_dict(rec), status=201 if new else 200)
    resp.headers["Location"] = f"/api/jobs/{job.id}"
    return resp


@requires(Role.DISPATCHER)
async def import_jobs(request: web.Request) -> web.Response:
    """A CSV file as the body (text/csv): all its jobs, or none and every problem."""
    data = await request.content.read(MAX_IMPORT_BYTES + 1)
    try:
        result = await _dispatch(request).import_csv(data, wall_ms())
    except ImportRefused as exc:
        return web.json_response({"error": str(exc),
                                  "errors": [e.as_dict() for e in exc.errors]}, status=400)
    except JobExists as exc:
        raise _conflict(exc, ids=exc.ids) from None
    await audit(request, "job.import", f"{result['imported']} jobs",
                {"ids": result["ids"][:50]})
    return web.json_response(result)


@requires(Role.VIEWER)
async def get_job(request: web.Request) -> web.Response:
    rec = await _visible_job(request, request.match_info["job"])
    return web.json_response(codec.record_to_dict(rec))


@requires(Role.DISPATCHER)
async def put_job(request: web.Request) -> web.Response:
    jid = request.match_info["job"]
    await _visible_job(request, jid)
    body = await read_json(request)
    if isinstance(body, dict) and body.get("id", jid) != jid:
        raise error(web.HTTPBadRequest, "id: the path's")
    try:
        job = codec.job_from_dict(body, jid)
    except ValueError as exc:
        raise _bad(exc) from None
    try:
        rec = await _dispatch(request).update_job(job, wall_ms())
    except DispatchError as exc:
        raise _conflict(exc) from None
    await audit(request, "job.update", jid)
    return web.json_response(codec.record_to_dict(rec))


async def _change(request: web.Request, to: JobState | None) -> web.Response:
    jid = request.match_info["job"]
    await _visible_job(request, jid)
    body = await read_json(request) if request.can_read_body else {}
    if not isinstance(body, dict):
        raise error(web.HTTPBadRequest, "the body must be a JSON object")
    unknown = sorted(set(body) - STATE_CHANGE_FIELDS)
    if unknown:
        raise error(web.HTTPBadRequest, f"unknown field {unknown[0]!r}")
    try:
        if to is None:
            to = JobState(body.get("to"))
        elif "to" in body:
            JobState(body["to"])  # a cancel may name its state; it must be one
        at_ms = codec.parse_time(body["at_ms"], "at_ms") if "at_ms" in body else None
        lat, lon = body.get("lat"), body.get("lon")
        if ("lat" in body) != ("lon" in body):
            raise ValueError("lat/lon: both or neither")
        if "lat" in body:
            for name, v, bound in (("lat", lat, 90), ("lon", lon, 180)):
                if isinstance(v, bool) or not isinstance(v, int | float) \
                        or not -bound <= v <= bound:
                    raise ValueError(f"{name}: a number from -{bound} to {bound}")
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            raise ValueError("reason: a string")
        t = await _dispatch(request).change_state(jid, to, _person(request), wall_ms(),
                                                  _tid(body), at_ms, lat, lon, reason)
    except (IllegalTransition, StaleState, DispatchError) as exc:
        raise _conflict(exc) from None
    except ValueError as exc:
        raise _bad(exc) from None
    if t is not None:
        await audit(request, f"job.{to.value}", jid, {"transition": t.id})
    rec = await request.app[STORE].job(jid)
    return web.json_response({"job": codec.record_to_dict(rec),
                              "transition": None if t is None
                              else codec.transition_to_dict(t)})


@requires(Role.DISPATCHER)
async def cancel_job(request: web.Request) -> web.Response:
    return await _change(request, JobState.CANCELLED)


@requires(Role.DISPATCHER)
async def add_transition(request: web.Request) -> web.Response:
    return await _change(request, None)


@requires(Role.VIEWER)
async def list_transitions(request: web.Request) -> web.Response:
    jid = request.match_info["job"]
    await _visible_job(request, jid)
    ts = await request.app[STORE].transitions(jid)
    return web.json_response({"transitions": [codec.transition_to_dict(t) for t in ts]})


# --- vehicle types, drivers, depots --------------------------------------------------------

def _catalogue_handlers(kind: str, decode, encode):
    """GET (list), PUT and DELETE handlers of one catalogue (vehicle types, drivers, depots)."""
    noun = kind[:-1].replace("_", " ")

    @requires(Role.VIEWER)
    async def list_items(request: web.Request) -> web.Response:
        items = await request.app[STORE].catalogue(kind)
        return web.json_response({kind: [encode(i) for i in items]})

    @requires(Role.DISPATCHER)
    async def put_item(request: web.Request) -> web.Response:
        item_id = request.match_info["id"]
        body = await read_json(request)
        if isinstance(body, dict) and body.get("id", item_id) != item_id:
            raise error(web.HTTPBadRequest, "id: the path's")
        try:
            item = decode(body, item_id)
        except ValueError as exc:
            raise _bad(exc) from None
        created = await request.app[STORE].put_catalogue(item, wall_ms())
        await audit(request, f"{kind}.{'create' if created else 'update'}", item_id)
        return web.json_response(encode(item), status=201 if created else 200)

    @requires(Role.DISPATCHER)
    async def delete_item(request: web.Request) -> web.Response:
        item_id = request.match_info["id"]
        if not await request.app[STORE].delete_catalogue(kind, item_id):
            raise error(web.HTTPNotFound, f"unknown {noun} {item_id!r}")
        await audit(request, f"{kind}.delete", item_id)
        return web.Response(status=204)

    return list_items, put_item, delete_item


# URL segment → (store kind, decoder, encoder)
CATALOGUES = {
    "vehicle-types": ("vehicle_types", codec.vehicle_type_from_dict,
                      codec.vehicle_type_to_dict),
    "drivers": ("drivers", codec.driver_from_dict, codec.driver_to_dict),
    "depots": ("depots", codec.depot_from_dict, codec.depot_to_dict),
}


@requires(Role.VIEWER)
async def list_dispatch_vehicles(request: web.Request) -> web.Response:
    who = principal(request)
    items = await request.app[STORE].dispatch_vehicles()
    return web.json_response({"vehicles": [
        {"vehicle_id": v.vehicle_id, "type_id": v.type_id, "depot_id": v.depot_id}
        for v in items if who.may_see(v.vehicle_id)]})


@requires(Role.DISPATCHER)
async def put_dispatch_vehicle(request: web.Request) -> web.Response:
    vehicle = request.match_info["vehicle"]
    if not principal(request).may_see(vehicle):
        raise error(web.HTTPNotFound, f"unknown vehicle {vehicle!r}")
    body = await read_json(request)
    if not isinstance(body, dict) or set(body) - {"type_id", "depot_id", "vehicle_id"}:
        raise error(web.HTTPBadRequest, "body: {type_id, depot_id}")
    if body.get("vehicle_id", vehicle) != vehicle:
        raise error(web.HTTPBadRequest, "vehicle_id: the path's")
    try:
        v = FleetVehicle(vehicle, body.get("type_id"), body.get("depot_id"))
    except ValueError as exc:
        raise _bad(exc) from None
    await request.app[STORE].put_dispatch_vehicle(v, wall_ms())
    await audit(request, "dispatch_vehicle.update", vehicle, {"type_id": v.type_id})
    return web.json_response({"vehicle_id": v.vehicle_id, "type_id": v.type_id,
                              "depot_id": v.depot_id})


# --- routes --------------------------------------------------------------------------------

@requires(Role.VIEWER)
async def list_routes(request: web.Request) -> web.Response:
    status = tuple(s for s in request.query.get("status", "").split(",") if s)
    bad = [s for s in status if s not in ("draft", "dispatched", "active", "done", "cancelled")]
    if bad:
        raise error(web.HTTPBadRequest, f"status: not {bad[0]!r}")
    routes = await request.app[STORE].dispatch_routes(status,
                                                      request.query.get("vehicle") or None)
    who = principal(request)
    return web.json_response({"routes": [codec.route_to_dict(r) for r in routes
                                         if who.may_see(r.vehicle_id)]})


@requires(Role.VIEWER)
async def get_route(request: web.Request) -> web.Response:
    route = await _visible_route(request, request.match_info["route"])
    return web.json_response(codec.route_to_dict(route))


@requires(Role.DISPATCHER)
async def put_route(request: web.Request) -> web.Response:
    """Create or change a route; `version` in the body is the version the change is based on
    (absent or null: a new route). Its jobs are assigned and unassigned with it."""
    rid = request.match_info["route"]
    body = await read_json(request)
    if not isinstance(body, dict):
        raise error(web.HTTPBadRequest, "the body must be a JSON object")
    base = body.get("version")
    if base is not None and (isinstance(base, bool) or not isinstance(base, int) or base < 1):
        raise error(web.HTTPBadRequest, "version: the route's version the change is based on")
    try:
        route = codec.route_from_dict({**body, "version": 1}, rid)
    except ValueError as exc:
        raise _bad(exc) from None
    if body.get("id", rid) != rid:
        raise error(web.HTTPBadRequest, "id: the path's")
    who = principal(request)
    if not who.may_see(route.vehicle_id):
        raise error(web.HTTPNotFound, f"unknown vehicle {route.vehicle_id!r}")
    old = await request.app[STORE].dispatch_route(rid)
    if old is not None and not who.may_see(old.vehicle_id):
        raise error(web.HTTPNotFound, f"unknown route {rid!r}")
    try:
        saved = await _dispatch(request).save_route(route, base, _person(request), wall_ms())
    except StaleVersion as exc:
        raise _conflict(exc, version=exc.stored) from None
    except (DispatchError, StaleState) as exc:
        if getattr(exc, "status", 409) == 404:
            raise error(web.HTTPNotFound, str(exc)) from None
        raise _conflict(exc) from None
    await audit(request, "route.create" if base is None else "route.update", rid,
                {"version": saved.version, "status": saved.status.value})
    return web.json_response(codec.route_to_dict(saved), status=201 if base is None else 200)


def add_routes(app: web.Application) -> None:
    from .integrations import idempotent  # `Idempotency-Key` on the job calls

    r = app.router
    r.add_get("/api/jobs", list_jobs)
    r.add_post("/api/jobs", idempotent(create_job))
    r.add_post("/api/jobs/import", import_jobs)
    # {job} is any id but "import": /api/jobs/import is only the import (POST), so its
    # OPTIONS and 405 answers do not advertise a job's GET and PUT
    r.add_get("/api/jobs/{job:(?!import$)[^/]+}", get_job)
    r.add_put("/api/jobs/{job:(?!import$)[^/]+}", idempotent(put_job))
    r.add_post("/api/jobs/{job}/cancel", idempotent(cancel_job))
    r.add_get("/api/jobs/{job}/transitions", list_transitions)
    r.add_post("/api/jobs/{job}/transitions", add_transition)
    for segment, (kind, decode, encode) in CATALOGUES.items():
        list_items, put_item, delete_item = _catalogue_handlers(kind, decode, encode)
        r.add_get(f"/api/{segment}", list_items)
        r.add_put(f"/api/{segment}/{{id}}", put_item)
        r.add_delete(f"/api/{segment}/{{id}}", delete_item)
    r.add_get("/api/dispatch-vehicles", list_dispatch_vehicles)
    r.add_put("/api/dispatch-vehicles/{vehicle}", put_dispatch_vehicle)
    r.add_get("/api/routes", list_routes)
    r.add_get("/api/routes/{route}", get_route)
    r.add_put("/api/routes/{route}", put_route)
