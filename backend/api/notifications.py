"""Notification subscriptions and their delivery log (docs/notifications.md): anyone logged in
subscribes for themself, an admin also for a vehicle group; a subscription is seen and deleted
by its owner and by admins (to others it does not exist: 404)."""

from __future__ import annotations

from aiohttp import web

from geostream.clock import wall_ms

from ..authz import Role, requires
from ..notify import manage
from ..notify.settings import NotifySettings
from ..notify.subscriptions import Subscription
from .common import STORE, audit, error, int_param, principal, read_json

# the backend's Notifier (backend/notify/service.py), when it runs one: its settings
NOTIFIER = web.AppKey("fleet.notifier", object)
DEFAULT_LOG = 100
MAX_LOG = 1000  # one page of a delivery log
_STATUS = {400: web.HTTPBadRequest, 403: web.HTTPForbidden, 404: web.HTTPNotFound}


def _settings(request: web.Request) -> NotifySettings | None:
    notifier = request.app.get(NOTIFIER)
    return notifier.settings if notifier is not None else None


def _refused(exc: manage.Refused) -> web.HTTPError:
    return error(_STATUS[exc.status], str(exc))


async def _own(request: web.Request) -> Subscription:
    """The path's subscription if the caller owns it or is an admin, else 404."""
    try:
        return await manage.owned(request.app[STORE], principal(request),
                                  request.match_info["id"])
    except manage.Refused as exc:
        raise _refused(exc) from None


@requires(Role.VIEWER)
async def list_subscriptions(request: web.Request) -> web.Response:
    every = request.query.get("all", "false")
    if every not in ("true", "false"):
        raise error(web.HTTPBadRequest, "all must be true or false")
    subs = await manage.list_subscriptions(request.app[STORE], principal(request),
                                           every == "true")
    return web.json_response({"subscriptions": subs})


@requires(Role.VIEWER)
async def add_subscription(request: web.Request) -> web.Response:
    try:
        sub, secret = await manage.subscribe(request.app[STORE], principal(request),
                                             await read_json(request), _settings(request),
                                             wall_ms())
    except manage.Refused as exc:
        raise _refused(exc) from None
    await audit(request, "notify.subscribe", str(sub["id"]),
                {"channel": sub["channel"], "group": sub["group"], "events": sub["events"]})
    body: dict = {"subscription": sub}
    if secret:
        body["secret"] = secret
    resp = web.json_response(body, status=201)
    resp.headers["Location"] = f"/api/notifications/subscriptions/{sub['id']}"
    return resp


@requires(Role.VIEWER)
async def delete_subscription(request: web.Request) -> web.Response:
    sub = await _own(request)
    await request.app[STORE].delete_subscription(sub.id)
    await audit(request, "notify.unsubscribe", str(sub.id), None)
    return web.Response(status=204)


@requires(Role.VIEWER)
async def list_deliveries(request: web.Request) -> web.Response:
    sub = await _own(request)
    limit = int_param(request.query, "limit", lo=1, hi=MAX_LOG) or DEFAULT_LOG
    return web.json_response(
        {"deliveries": await request.app[STORE].delivery_log(sub.id, limit)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/notifications/subscriptions", list_subscriptions)
    app.router.add_post("/api/notifications/subscriptions", add_subscription)
    app.router.add_delete("/api/notifications/subscriptions/{id}", delete_subscription)
    app.router.add_get("/api/notifications/subscriptions/{id}/deliveries", list_deliveries)
