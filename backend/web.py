"""HTTP edge: the dispatcher map, the live WebSocket hub, and REST queries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

from aiohttp import WSMsgType, web

from . import queries
from .api import spec
from .auth import AuthState, setup
from .auth.middleware import origin_allowed, watch_session
from .authz import PRINCIPAL, Principal, Role, public, requires
from .hub import Hub, Subscriber, valid_topic

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_WS_MESSAGE = 4096  # browsers only send small subscribe/unsubscribe requests
DEFAULT_ROUTE_HOURS = queries.DEFAULT_ROUTE_HOURS


def make_app(hub: Hub, store, status, auth: AuthState | None = None) -> web.Application:
    """The HTTP app; every route declares its access (backend/authz.py) and the access
    middleware (backend/auth/) enforces it."""
    app = web.Application()
    setup(app, auth or AuthState(store=store))
    routes = web.RouteTableDef()

    @routes.get("/")
    @public  # the page shell holds no data; without a session it sends the browser to log in
    async def index(request):
        if request[PRINCIPAL] is None:
            raise web.HTTPFound("/login")
        return web.FileResponse(STATIC / "app" / "index.html")

    @routes.get("/ws")
    @requires(Role.VIEWER)  # checked before the upgrade: 401 without a session or token
    async def ws_handler(request):
        principal: Principal = request[PRINCIPAL]
        if principal.via == "session" and not origin_allowed(request):
            return web.json_response({"error": "origin not allowed"}, status=403)
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=MAX_WS_MESSAGE)
        await ws.prepare(request)
        sub = Subscriber()
        hub.add(sub)
        sender = asyncio.get_running_loop().create_task(_send_loop(ws, sub, principal))
        checker = asyncio.get_running_loop().create_task(watch_session(ws, request))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                _handle_request(hub, sub, msg.data, principal)
        finally:
            hub.remove(sub)
            for task in (sender, checker):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return ws

    @routes.get("/api/vehicles")
    @requires(Role.VIEWER)
    async def vehicles(request):
        answer = await queries.last_positions(store)
        answer["features"] = [f for f in answer["features"]
                              if request[PRINCIPAL].may_see(f["properties"]["vehicle"])]
        return web.json_response(answer)

    @routes.get("/api/vehicles/{vehicle}/route")
    @requires(Role.VIEWER)
    async def route(request):
        _visible(request)
        q = request.query
        try:
            feature = await queries.route(
                store, request.match_info["vehicle"], *_window(q),
                step_ms=_int(q, "step_ms") or (_int(q, "step_s") or 0) * 1000 or None,
                max_points=_int(q, "max_points"))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"bad query: {exc}") from None
        return web.json_response(feature)

    @routes.get("/api/vehicles/{vehicle}/trips")
    @requires(Role.VIEWER)
    async def trips(request):
        _visible(request)
        try:
            day = queries.parse_day(request.query.get("day"))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"day must be YYYY-MM-DD: {exc}") from None
        return web.json_response(await queries.trips(store, request.match_info["vehicle"], day))

    @routes.get("/api/geofences")
    @requires(Role.VIEWER)
    async def geofences(request):
        return web.json_response(await store.geofences())

    @routes.get("/api/geofences/{geofence}/entries")
    @requires(Role.VIEWER)
    async def geofence_entries(request):
        q = request.query
        try:
            answer = await queries.geofence_entries(
                store, request.match_info["geofence"], *_window(q))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"bad query: {exc}") from None
        principal = request[PRINCIPAL]
        answer["entries"] = [e for e in answer["entries"] if principal.may_see(e["vehicle_id"])]
        answer["vehicles"] = [v for v in answer["vehicles"] if principal.may_see(v)]
        return web.json_response(answer)

    @routes.get("/healthz")
    @public  # for load balancers and probes: says only that the process answers
    async def healthz(request):
        return web.json_response({"ok": True})

    @routes.get("/api/status")
    @requires(Role.ADMIN)
    async def api_status(request):
        return web.json_response(status())

    routes.static("/static", STATIC)
    app.add_routes(routes)
    spec.add_routes(app)
    return app


def _visible(request: web.Request) -> None:
    """404 for a vehicle the principal may not see (as for one that does not exist)."""
    vehicle = request.match_info["vehicle"]
    if not request[PRINCIPAL].may_see(vehicle):
        raise web.HTTPNotFound(text=json.dumps({"error": f"unknown vehicle {vehicle!r}"}),
                               content_type="application/json")


def _int(query, key: str) -> int | None:
    value = query.get(key)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{key} must be an integer") from None


def _window(q) -> tuple[int | None, int | None]:
    """The (from, to) of a time-window query: `from_ms`/`to_ms`, or ISO 8601 `from`/`to`."""
    return (queries.parse_time(q.get("from_ms") or q.get("from")),
            queries.parse_time(q.get("to_ms") or q.get("to")))


def _handle_request(hub: Hub, sub: Subscriber, text: str, principal: Principal) -> None:
    try:
        req = json.loads(text)
        op, topic = req.get("op"), req.get("topic")
    except (ValueError, AttributeError):
        sub.put({"error": "expected a JSON object {op, topic}"})
        return
    if not valid_topic(topic) or (topic.startswith("vehicle:")
                                  and not principal.may_see(topic.removeprefix("vehicle:"))):
        sub.put({"error": f"unknown topic {str(topic)[:80]!r}"})
    elif op == "subscribe":
        hub.subscribe(sub, topic)
    elif op == "unsubscribe":
        hub.unsubscribe(sub, topic)
    else:
        sub.put({"error": f"unknown op {str(op)[:32]!r}"})


def _vehicle_of(message: dict) -> str | None:
    if "feature" in message:
        return message["feature"].get("properties", {}).get("vehicle")
    if "alert" in message:
        return message["alert"].get("vehicle")
    return None


async def _send_loop(ws: web.WebSocketResponse, sub: Subscriber, principal: Principal) -> None:
    # until the hub filters per subscriber (may_see), drop here what the principal may not see
    while not ws.closed:
        await sub.ready.wait()
        for message in sub.drain():
            vehicle = _vehicle_of(message)
            if vehicle is not None and not principal.may_see(vehicle):
                continue
            await ws.send_str(json.dumps(message, separators=(",", ":")))
