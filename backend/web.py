"""HTTP edge: the dispatcher map, the live WebSocket hub, and REST queries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path

from aiohttp import WSMsgType, web

from .hub import Hub, Subscriber, position_feature, valid_topic

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_WS_MESSAGE = 4096  # browsers only send small subscribe/unsubscribe requests
DEFAULT_ROUTE_HOURS = 48


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
        rows = await store.last_positions()
        return web.json_response({"type": "FeatureCollection", "features": [
            position_feature(r["vehicle_id"], r["time_ms"], r["lat"], r["lon"], r["speed_kmh"],
                             r["course"], r["seq"]) for r in rows]})

    @routes.get("/api/vehicles/{vehicle}/route")
    async def route(request):
        now = time.time_ns() // 1_000_000
        try:
            end = int(request.query.get("to_ms", now))
            start = int(request.query.get("from_ms", end - DEFAULT_ROUTE_HOURS * 3600_000))
        except ValueError:
            raise web.HTTPBadRequest(text="from_ms/to_ms must be integers") from None
        points = await store.route(request.match_info["vehicle"], start, end)
        return web.json_response({
            "type": "Feature",
            "geometry": {"type": "LineString",
                         "coordinates": [[p["lon"], p["lat"]] for p in points]},
            "properties": {"vehicle": request.match_info["vehicle"], "points": len(points),
                           "from_ms": start, "to_ms": end},
        })

    @routes.get("/healthz")
    async def healthz(request):
        return web.json_response(status())

    routes.static("/static", STATIC)
    app.add_routes(routes)
    return app


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
