"""Downlink commands over HTTP (docs/protocol.md §3 command), also for `python -m backend
command`. Commands and answers live in the store, so they outlive a backend restart."""

from __future__ import annotations

import logging

from aiohttp import web

from ..authz import Role, requires
from .common import GATEWAY, STORE, audit, error, int_param, principal, read_json, visible

log = logging.getLogger(__name__)

MAX_NAME = 64  # command names are short verbs (protocol.md §3)
MAX_ID = 2**63  # ids are signed 64-bit in both stores


@requires(Role.DISPATCHER)
async def send(request: web.Request) -> web.Response:
    """POST {"name", "args"} → 202 {"id"}; sent now if the vehicle is connected, else on its
    next welcome, until it answers."""
    body = await read_json(request)
    name = body.get("name") if isinstance(body, dict) else None
    args = body.get("args", {}) if isinstance(body, dict) else None
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME or not isinstance(args, dict):
        raise error(web.HTTPBadRequest, f"bad command: name must be text of 1..{MAX_NAME}, "
                                        "args a map")
    vehicle = visible(request)
    gateway = request.app[GATEWAY]
    try:
        known = {v["vehicle_id"] for v in await gateway.store.list_vehicles()}
        if vehicle not in known:  # it would wait forever for a vehicle that never connects
            raise error(web.HTTPNotFound, f"unknown vehicle {vehicle!r}")
        cid = await gateway.downlink.send(vehicle, name, args)
    except web.HTTPError:
        raise
    except Exception as exc:
        log.warning("cannot store command: %s", exc)
        raise error(web.HTTPServiceUnavailable, f"store unavailable: {exc}") from None
    await audit(request, "command.send", vehicle, {"id": cid, "name": name, "args": args})
    return web.json_response({"id": cid}, status=202)


@requires(Role.VIEWER)
async def get(request: web.Request) -> web.Response:
    try:
        cid = int(request.match_info["id"])
    except ValueError:
        raise error(web.HTTPBadRequest, "id must be an integer") from None
    command = await request.app[STORE].command(cid) if 0 <= cid < MAX_ID else None
    if command is None or not principal(request).may_see(command.vehicle_id):
        raise error(web.HTTPNotFound, "unknown command id")
    return web.json_response(command.as_json())


@requires(Role.VIEWER)
async def list_commands(request: web.Request) -> web.Response:
    vehicle = visible(request)
    limit = int_param(request.query, "limit", lo=1, hi=1000) or 100
    commands = await request.app[STORE].commands_of(vehicle, limit)
    return web.json_response({"commands": [c.as_json() for c in commands]})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/vehicles/{vehicle}/commands", send)
    app.router.add_get("/api/vehicles/{vehicle}/commands", list_commands)
    app.router.add_get("/api/commands/{id}", get)
