"""HTTP edge: composes the app (web app shell, live hub /ws, REST API, alerts, map)."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from . import api, live, mapconfig, metrics, queries
from .alerts.routes import add_alert_routes
from .alerts.rules import RuleSet
from .audit import audit
from .auth import AUTH, AuthState, headers, setup
from .auth.middleware import is_secure
from .authz import PRINCIPAL, Role, public, requires
from .gateway import Gateway
from .hub import Hub
from .writer import BatchWriter

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
DEFAULT_ROUTE_HOURS = queries.DEFAULT_ROUTE_HOURS
# what the web bundle (web/, built by `make web` into static/app/) must hold to be served
BUNDLE_FILES = ("index.html", "login.html", "password.html")


def bundle_problem() -> str | None:
    """Why the web app cannot be served (one line for the operator), or None."""
    missing = [name for name in BUNDLE_FILES if not (STATIC / "app" / name).is_file()]
    if missing:
        return (f"the web app is not built ({STATIC / 'app'} has no {', '.join(missing)}): "
                "run `make web` first (the Debian package ships it built)")
    return None


def make_app(hub: Hub, store, status, auth: AuthState | None = None, gateway=None,
             alert_rules=None, map_files: tuple[str, str, str] = ("", "", ""),
             metrics_token: str = "", planning=None) -> web.Application:
    """The HTTP app: web app, live hub, REST API (backend/api/), alerts, map settings. Every
    route declares its access (backend/authz.py); the access middleware (backend/auth/)
    enforces it. Without a `gateway` (tests, tools) commands wait in the store for the
    vehicles' next connection; without `alert_rules`, the default rules are listed. /metrics
    answers only `Authorization: Bearer <metrics_token>` (none set: nobody)."""
    app = web.Application()
    setup(app, auth or AuthState(store=store))
    headers.install(app, is_secure, filter(None, [headers.origin_of(map_files[0])]))
    if gateway is None:
        gateway = Gateway(store, BatchWriter(store), hub)
    routes = web.RouteTableDef()

    @routes.get("/")
    @public  # the page shell holds no data; without a session it sends the browser to log in
    async def index(request):
        if request[PRINCIPAL] is None:
            raise web.HTTPFound("/login")
        if request[PRINCIPAL].must_change_password:
            raise web.HTTPFound("/password")
        if request[PRINCIPAL].is_driver:  # a driver login has the driver app only
            raise web.HTTPFound("/driver/")
        return web.FileResponse(STATIC / "app" / "index.html")

    @routes.get("/driver/")
    @public  # the driver app's shell: no data; it asks /api/driver/... with the session
    async def driver_app(request):
        if request[PRINCIPAL] is None:
            raise web.HTTPFound("/login?next=/driver/")
        return web.FileResponse(STATIC / "app" / "driver.html",
                                headers={"Cache-Control": "no-cache"})

    @routes.get("/driver/sw.js")
    @public  # the driver app's service worker: served from /driver/ so its scope is the app
    async def driver_worker(request):
        return web.FileResponse(STATIC / "app" / "driver-sw.js", headers={
            "Cache-Control": "no-cache", "Content-Type": "text/javascript"})

    @routes.get("/driver/manifest.webmanifest")
    @public
    async def driver_manifest(request):
        return web.FileResponse(STATIC / "app" / "driver.webmanifest", headers={
            "Content-Type": "application/manifest+json"})

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
    if planning is not None:  # dispatch planning (backend/api/planning.py); else its 503
        app[api.planning.PLANNING] = planning
    live.add_routes(app, hub)
    add_alert_routes(app, store, alert_rules or RuleSet(), hub.publish_alert, audit)
    mapconfig.add_routes(app, *map_files)
    metrics.add_routes(app, metrics.FleetCollector(gateway, hub, app[AUTH]), metrics_token)
    return app
