"""HTTP edge: the dispatcher map, the live WebSocket hub, and REST queries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

from aiohttp import WSMsgType, web

from . import api, mapconfig, queries
from .alerts.routes import add_alert_routes
from .alerts.rules import RuleSet
from .audit import audit
from .auth import AuthState, setup
from .auth.middleware import origin_allowed
from .authz import PRINCIPAL, Principal, Role, public, requires
from .gateway import Gateway
from .hub import Hub, Subscriber, valid_topic
from .writer import BatchWriter

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_WS_MESSAGE = 4096  # browsers only send small subscribe/unsubscribe requests
DEFAULT_ROUTE_HOURS = queries.DEFAULT_ROUTE_HOURS


def make_app(hub: Hub, store, status, auth: AuthState | None = None, gateway=None,
             alert_rules=None, map_files: tuple[str, str, str] = ("", "", "")
             ) -> web.Application:
    """The HTTP app: web app, live hub, REST API (backend/api/), alerts, map settings. Every
    route declares its access (backend/authz.py); the access middleware (backend/auth/)
    enforces it. Without a `gateway` (tests, tools) commands wait in the store for the
    vehicles' next connection; without `alert_rules`, the default rules are listed."""
    app = web.Application()
    setup(app, auth or AuthState(store=store))
    if gateway is None:
        gateway = Gateway(store, BatchWriter(store), hub)
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
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                _handle_request(hub, sub, msg.data, principal)
        finally:
            hub.remove(sub)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        return ws

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
    api.add_routes(app, store, hub, gateway)
    add_alert_routes(app, store, alert_rules or RuleSet(), hub.publish_alert, audit)
    mapconfig.add_routes(app, *map_files)
    return app


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
