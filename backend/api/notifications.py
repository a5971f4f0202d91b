"""Notification subscriptions and their delivery log (docs/notifications.md): anyone logged in
subscribes for themself, an admin also for a vehicle group; a subscription is seen and deleted
by its owner and by admins (to others it does not exist: 404)."""

from __future__ import annotations

from aiohttp import web

from geostream.clock import wall_ms

from ..authz import Role, requires
from ..notify.egress import EgressPolicy
from ..notify.signing import new_secret
from ..notify.subscriptions import Subscription, SubscriptionError, body_of, parse_subscription
from .common import STORE, audit, error, int_param, principal, read_json

# the backend's Notifier (backend/notify/service.py), when it runs one: its egress rule
NOTIFIER = web.AppKey("fleet.notifier", object)
DEFAULT_LOG = 100
MAX_LOG = 1000  # one page of a delivery log
# Subscriptions one user may have: each costs a match per event.
MAX_PER_USER = 100


def _policy(request: web.Request) -> EgressPolicy:
    notifier = request.app.get(NOTIFIER)
    return notifier.settings.policy if notifier is not None else EgressPolicy()


async def _own(request: web.Request) -> Subscription:
    """The path's subscription if the caller owns it or is an admin, else 404."""
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise error(web.HTTPBadRequest, "id must be a number")
    row = await request.app[STORE].subscription(int(raw))
    who = principal(request)
    if row is None or (row["owner"] != who.name and not who.may(Role.ADMIN)):
        raise error(web.HTTPNotFound, f"no subscription {raw}")
    return Subscription.from_row(row)


@requires(Role.VIEWER)
async def list_subscriptions(request: web.Request) -> web.Response:
    who = principal(request)
    every = request.query.get("all", "false")
    if every not in ("true", "false"):
        raise error(web.HTTPBadRequest, "all must be true or false")
    owner = None if every == "true" and who.may(Role.ADMIN) else who.name
    rows = await request.app[STORE].subscriptions(owner)
    return web.json_response({"subscriptions": [Subscription.from_row(r).as_json()
                                                for r in rows]})


@requires(Role.VIEWER)
async def add_subscription(request: web.Request) -> web.Response:
    who = principal(request)
    try:
        sub = parse_subscription(await read_json(request), who.name, _policy(request))
    except SubscriptionError as exc:
        raise error(web.HTTPBadRequest, str(exc)) from None
    store = request.app[STORE]
    if sub.group is not None:
        if not who.may(Role.ADMIN):
            raise error(web.HTTPForbidden, "only an admin subscribes for a group")
        if sub.group not in {g["name"] for g in await store.groups()}:
            raise error(web.HTTPNotFound, f"no group {sub.group!r}")
    if len(await store.subscriptions(who.name)) >= MAX_PER_USER:
        raise error(web.HTTPBadRequest, f"at most {MAX_PER_USER} subscriptions per user")
    secret = new_secret() if sub.channel == "webhook" else ""
    sid = await store.add_subscription(who.name, sub.group, body_of(sub), secret, wall_ms())
    row = await store.subscription(sid)
    await audit(request, "notify.subscribe", str(sid),
                {"channel": sub.channel, "group": sub.group, "events": sorted(sub.events)})
    body: dict = {"subscription": Subscription.from_row(row).as_json()}
    if secret:
        body["secret"] = secret
    resp = web.json_response(body, status=201)
    resp.headers["Location"] = f"/api/notifications/subscriptions/{sid}"
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
