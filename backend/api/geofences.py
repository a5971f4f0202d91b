"""Geofences CRUD (GeoJSON Polygon/MultiPolygon or a circle; name; optional speed limit) and
the vehicles inside one now.

A geofence belongs to a vehicle group (`properties.group`; null: fleet-wide). Whoever sees every
vehicle sees and (as a dispatcher) changes every geofence; everyone else only those of their
own groups: another group's geofence answers 404, as one that does not exist."""

from __future__ import annotations

import secrets

from aiohttp import web

from .. import geofence as shapes
from ..authz import Role, requires
from .common import GATEWAY, STORE, audit, error, principal, read_json
from .vehicles import position_of


def _feature(request: web.Request, body) -> shapes.Geofence:
    try:
        return shapes.from_feature(body, request.match_info.get("geofence"))
    except ValueError as exc:
        raise error(web.HTTPBadRequest, f"bad geofence: {exc}") from None


async def visible_geofence(request: web.Request, gid: str) -> dict | None:
    """The stored geofence `gid` if the principal may see it, else None."""
    if not shapes.ID_PATTERN.match(gid):
        return None
    row = await request.app[STORE].geofence(gid)
    return row if row is not None and principal(request).may_see_geofence(row["group"]) else None


def _group_for(request: web.Request, g: shapes.Geofence, old: dict | None) -> str | None:
    """The group a created or replaced geofence belongs to: as the body says; unsaid, the old
    one's, or a restricted dispatcher's only group. 403 for a group not the principal's."""
    who = principal(request)
    group = g.group
    if group is shapes.UNSET:
        if old is not None:
            group = old["group"]
        elif who.vehicles is None:
            group = None
        elif len(who.groups) == 1:
            [group] = who.groups
        else:
            raise error(web.HTTPBadRequest, "bad geofence: properties.group must name one of "
                        f"your groups ({', '.join(sorted(who.groups)) or 'you have none'})")
    if not who.may_change_geofence(group):
        raise error(web.HTTPForbidden, "a geofence may belong only to one of your groups")
    return group


async def _store(request: web.Request, g: shapes.Geofence, gid: str, create_only: bool,
                 group: str | None) -> bool:
    try:
        return await request.app[STORE].put_geofence(
            gid, g.name, g.area, speed_limit_kmh=g.speed_limit_kmh, circle=g.circle,
            create_only=create_only, group=group)
    except ValueError as exc:
        raise error(web.HTTPBadRequest, f"bad geofence: {exc}") from None


async def _changed(request: web.Request) -> None:
    """Tell this process's alert engine at once (it also re-reads every 30 s)."""
    await request.app[GATEWAY].alerts.geofences_changed()


async def _answer(request: web.Request, gid: str, status: int = 200) -> web.Response:
    row = await visible_geofence(request, gid)
    if row is None:
        raise error(web.HTTPNotFound, f"unknown geofence {gid!r}")
    return web.json_response(shapes.to_feature(row), status=status)


@requires(Role.VIEWER)
async def list_geofences(request: web.Request) -> web.Response:
    who = principal(request)
    rows = await request.app[STORE].geofences()
    return web.json_response({"type": "FeatureCollection",
                              "features": [shapes.to_feature(r) for r in rows
                                           if who.may_see_geofence(r["group"])]})


@requires(Role.DISPATCHER)
async def create_geofence(request: web.Request) -> web.Response:
    g = _feature(request, await read_json(request))
    gid = g.id or f"gf-{secrets.token_hex(4)}"
    group = _group_for(request, g, None)
    if not await _store(request, g, gid, create_only=True, group=group):
        raise error(web.HTTPConflict, f"geofence {gid!r} exists (PUT replaces it)")
    await _changed(request)
    await audit(request, "geofence.create", gid, {"name": g.name, "group": group})
    resp = await _answer(request, gid, status=201)
    resp.headers["Location"] = f"/api/geofences/{gid}"
    return resp


@requires(Role.VIEWER)
async def get_geofence(request: web.Request) -> web.Response:
    return await _answer(request, request.match_info["geofence"])


@requires(Role.DISPATCHER)
async def put_geofence(request: web.Request) -> web.Response:
    gid = request.match_info["geofence"]
    if not shapes.ID_PATTERN.match(gid):
        raise error(web.HTTPBadRequest, "id must be 1..64 of A-Z a-z 0-9 _ . -")
    g = _feature(request, await read_json(request))
    old = await request.app[STORE].geofence(gid)
    if old is not None and not principal(request).may_see_geofence(old["group"]):
        # another group's: changing it is refused as if it did not exist, and creating one
        # under its id would replace it
        raise error(web.HTTPNotFound, f"unknown geofence {gid!r}")
    group = _group_for(request, g, old)
    created = await _store(request, g, gid, create_only=False, group=group)
    await _changed(request)
    await audit(request, "geofence.create" if created else "geofence.update", gid,
                {"name": g.name, "group": group})
    return await _answer(request, gid)


@requires(Role.DISPATCHER)
async def delete_geofence(request: web.Request) -> web.Response:
    gid = request.match_info["geofence"]
    if await visible_geofence(request, gid) is None or not await request.app[STORE].delete_geofence(
            gid):
        raise error(web.HTTPNotFound, f"unknown geofence {gid!r}")
    await _changed(request)
    await audit(request, "geofence.delete", gid)
    return web.Response(status=204)


@requires(Role.VIEWER)
async def inside(request: web.Request) -> web.Response:
    gid = request.match_info["geofence"]
    rows = await request.app[STORE].inside(gid) if await visible_geofence(request, gid) else None
    if rows is None:
        raise error(web.HTTPNotFound, f"unknown geofence {gid!r}")
    who = principal(request)
    return web.json_response({"geofence": gid, "vehicles": [
        {"id": r["vehicle_id"], "position": pos} for r in rows
        if who.may_see(r["vehicle_id"]) and (pos := position_of(r)) is not None]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/geofences", list_geofences)
    app.router.add_post("/api/geofences", create_geofence)
    app.router.add_get("/api/geofences/{geofence}", get_geofence)
    app.router.add_put("/api/geofences/{geofence}", put_geofence)
    app.router.add_delete("/api/geofences/{geofence}", delete_geofence)
    app.router.add_get("/api/geofences/{geofence}/inside", inside)
