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
from .hub import Hub, Subscriber, valid_topic

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_WS_MESSAGE = 4096  # browsers only send small subscribe/unsubscribe requests
DEFAULT_ROUTE_HOURS = queries.DEFAULT_ROUTE_HOURS


def make_app(hub: Hub, store, status) -> web.Application:
    app = web.Application()
    routes = web.RouteTableDef()

    @routes.get("/")
    async def index(request):
        return web.FileResponse(STATIC / "index.html")

    @routes.get("/ws")
    async def ws_handler(request):
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=MAX_WS_MESSAGE)
        await ws.prepare(request)
        sub = Subscriber()
        hub.add(sub)
        sender = asyncio.get_running_loop().create_task(_send_loop(ws, sub))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                _handle_request(hub, sub, msg.data)
        finally:
            hub.remove(sub)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        return ws

    @routes.get("/api/vehicles")
    async def vehicles(request):
        return web.json_response(await queries.last_positions(store))

    @routes.get("/api/vehicles/{vehicle}/route")
    async def route(request):
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
    async def trips(request):
        try:
            day = queries.parse_day(request.query.get("day"))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"day must be YYYY-MM-DD: {exc}") from None
        return web.json_response(await queries.trips(store, request.match_info["vehicle"], day))

    @routes.get("/api/geofences")
    async def geofences(request):
        return web.json_response(await store.geofences())

    @routes.get("/api/geofences/{geofence}/entries")
    async def geofence_entries(request):
        q = request.query
        try:
            answer = await queries.geofence_entries(
                store, request.match_info["geofence"], *_window(q))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"bad query: {exc}") from None
        return web.json_response(answer)

    @routes.get("/healthz")
    async def healthz(request):
        return web.json_response(status())

    routes.static("/static", STATIC)
    app.add_routes(routes)
    spec.add_routes(app)
    return app


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


def _handle_request(hub: Hub, sub: Subscriber, text: str) -> None:
    try:
        req = json.loads(text)
        op, topic = req.get("op"), req.get("topic")
    except (ValueError, AttributeError):
        sub.put({"error": "expected a JSON object {op, topic}"})
        return
    if not valid_topic(topic):
        sub.put({"error": f"unknown topic {str(topic)[:80]!r}"})
    elif op == "subscribe":
        hub.subscribe(sub, topic)
    elif op == "unsubscribe":
        hub.unsubscribe(sub, topic)
    else:
        sub.put({"error": f"unknown op {str(op)[:32]!r}"})


async def _send_loop(ws: web.WebSocketResponse, sub: Subscriber) -> None:
    while not ws.closed:
        await sub.ready.wait()
        for message in sub.drain():
            await ws.send_str(json.dumps(message, separators=(",", ":")))
