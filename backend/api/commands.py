"""Downlink commands over HTTP (docs/protocol.md §3 command), also for `python -m backend
command`. Commands and answers live in the store, so they outlive a backend restart."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid

from aiohttp import web

from geostream.commands import REGISTRY, command_problem

from ..authz import Role, requires
from ..downlink import CommandNotOffered, CommandRefused, advertised, check_command
from .common import GATEWAY, STORE, audit, error, int_param, principal, read_json, visible

log = logging.getLogger(__name__)

COMMAND_ID = re.compile(r"[0-9]{1,18}")  # ids are signed 64-bit in both stores
# The client's idempotency key: printable ASCII, bounded (it is stored with the command).
IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,100}")
# A store that fails for a reason that passes (a database failover: docs/operations.md) is
# asked again with the same key for this long, so the request outlasts the failover's gap
# without storing the command twice; then 503, and the client may repeat with its key.
STORE_RETRY_S = 20.0
STORE_RETRY_EVERY_S = 0.5


@requires(Role.DISPATCHER)
async def send(request: web.Request) -> web.Response:
    """POST {"name", "args"} → 202 {"id"}; sent now if the vehicle is connected, else on its
    next welcome, until it answers."""
    body = await read_json(request)
    name = body.get("name") if isinstance(body, dict) else None
    args = body.get("args", {}) if isinstance(body, dict) else None
    # the one registry (geostream/commands.py): a known name, arguments within its limits
    if (problem := command_problem(name, args)) is not None:
        raise error(web.HTTPBadRequest, f"bad command: {problem}")
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise error(web.HTTPBadRequest, "Idempotency-Key: 1..100 printable ASCII characters")
    vehicle = visible(request)
    gateway = request.app[GATEWAY]
    try:
        known = {v["vehicle_id"] for v in await gateway.store.list_vehicles()}
        if vehicle not in known:  # it would wait forever for a vehicle that never connects
            raise error(web.HTTPNotFound, f"unknown vehicle {vehicle!r}")
        # the one check (backend/downlink.py), as MCP's: the vehicle's advertised set
        await check_command(gateway.store, vehicle, name, args)
        cid = await _store_once(gateway, vehicle, name, args, key or f"auto:{uuid.uuid4()}")
    except web.HTTPError:
        raise
    except CommandNotOffered as exc:
        raise error(web.HTTPConflict, str(exc)) from None
    except CommandRefused as exc:
        raise error(web.HTTPBadRequest, str(exc)) from None
    except Exception as exc:
        log.warning("cannot store command: %s", exc)
        raise error(web.HTTPServiceUnavailable, f"store unavailable: {exc}") from None
    await audit(request, "command.send", vehicle, {"id": cid, "name": name, "args": args})
    return web.json_response({"id": cid}, status=202)


async def _store_once(gateway, vehicle: str, name: str, args: dict, key: str) -> int:
    """Store (and send) the command, asking again with the same key while the store's
    failure is transient: if an attempt committed but its answer was lost, the next one
    finds that command instead of storing a second."""
    transient = getattr(gateway.store, "is_transient", lambda exc: False)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STORE_RETRY_S
    while True:
        try:
            return await gateway.downlink.send(vehicle, name, args, request_key=key)
        except Exception as exc:
            if not transient(exc) or loop.time() + STORE_RETRY_EVERY_S > deadline:
                raise
            log.info("command for %s: store unavailable (%s); asking again", vehicle, exc)
            await asyncio.sleep(STORE_RETRY_EVERY_S)


@requires(Role.VIEWER)
async def get(request: web.Request) -> web.Response:
    if not COMMAND_ID.fullmatch(request.match_info["id"]):
        raise error(web.HTTPBadRequest, "id must be a number")
    command = await request.app[STORE].command(int(request.match_info["id"]))
    if command is None or not principal(request).may_see(command.vehicle_id):
        raise error(web.HTTPNotFound, "unknown command id")
    return web.json_response(command.as_json())


@requires(Role.VIEWER)
async def list_commands(request: web.Request) -> web.Response:
    vehicle = visible(request)
    limit = int_param(request.query, "limit", lo=1, hi=1000) or 100
    commands = await request.app[STORE].commands_of(vehicle, limit)
    return web.json_response({"commands": [c.as_json() for c in commands]})


@requires(Role.VIEWER)
async def offered(request: web.Request) -> web.Response:
    """GET → {"commands": [spec]}: what the vehicle runs (its advertised set, docs/protocol.md
    §3), as the registry declares it: the web app offers exactly these."""
    vehicle = visible(request)
    names = await advertised(request.app[STORE], vehicle)
    return web.json_response({"commands": [REGISTRY[n].as_json() for n in names
                                           if n in REGISTRY]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/vehicles/{vehicle}/commands/offered", offered)
    app.router.add_post("/api/vehicles/{vehicle}/commands", send)
    app.router.add_get("/api/vehicles/{vehicle}/commands", list_commands)
    app.router.add_get("/api/commands/{id}", get)
