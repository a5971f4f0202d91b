"""HTTP routes of alerts (docs/alerts.md; backend/openapi.yaml):

GET /api/alerts (viewer), POST /api/alerts/{id}/ack (dispatcher), GET /api/alert-rules (viewer).
A principal that sees only some vehicles (groups) gets only their alerts; another vehicle's
alert is 404, so ids do not leak.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from geostream.clock import wall_ms

from ..authz import PRINCIPAL, Role, requires
from ..store.base import AlertQuery
from .rules import RuleSet

log = logging.getLogger(__name__)

# One page of alerts: a dispatcher's list view; scripts page with to_ms.
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
STATES = ("open", "closed", "retracted")


def _bad(text: str) -> web.Response:
    return web.json_response({"error": text}, status=400)


def _query(q, principal) -> AlertQuery:
    """The filters of GET /api/alerts; ValueError names the bad one."""
    def integer(key: str) -> int | None:
        value = q.get(key)
        if value in (None, ""):
            return None
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{key} must be an integer") from None

    state = q.get("state") or None
    if state is not None and state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}")
    ack = q.get("acknowledged") or None
    if ack is not None and ack not in ("true", "false"):
        raise ValueError("acknowledged must be true or false")
    limit = integer("limit")
    limit = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be within 1..{MAX_LIMIT}")
    vehicles = getattr(principal, "vehicles", None)
    return AlertQuery(vehicle=q.get("vehicle") or None, vehicles=vehicles,
                      rule=q.get("rule") or None, state=state,
                      acknowledged=None if ack is None else ack == "true",
                      from_ms=integer("from_ms"), to_ms=integer("to_ms"), limit=limit)


def _may_see(request: web.Request, vehicle: str) -> bool:
    principal = request.get(PRINCIPAL)
    return principal is None or principal.may_see(vehicle)


def add_alert_routes(app: web.Application, store, rules: RuleSet,
                     publish: Callable[[dict], None] | None = None,
                     audit: Callable[..., Awaitable[None]] | None = None) -> None:
    """`publish` pushes an acknowledged alert to the hub; `audit(request, action, target,
    detail)` records who acknowledged it (backend.audit.audit)."""

    @requires(Role.VIEWER)
    async def list_alerts(request: web.Request) -> web.Response:
        try:
            query = _query(request.query, request.get(PRINCIPAL))
        except ValueError as exc:
            return _bad(str(exc))
        if query.vehicle is not None and not _may_see(request, query.vehicle):
            return web.json_response({"error": "unknown vehicle"}, status=404)
        alerts = await store.list_alerts(query)
        return web.json_response({"alerts": [a.as_json() for a in alerts
                                             if _may_see(request, a.vehicle_id)]})

    @requires(Role.DISPATCHER)
    async def ack(request: web.Request) -> web.Response:
        try:
            alert_id = int(request.match_info["id"])
        except ValueError:
            return _bad("id must be an integer")
        alert = await store.alert(alert_id) if 0 <= alert_id < 2**63 else None
        if alert is None or not _may_see(request, alert.vehicle_id):
            return web.json_response({"error": "unknown alert"}, status=404)
        principal = request.get(PRINCIPAL)
        user = principal.name if principal is not None else "anonymous"
        first = alert.acknowledged_ms is None
        alert = await store.ack_alert(alert_id, user, wall_ms())
        if first and alert is not None:
            if audit is not None:  # AUDIT: the one place an acknowledgement is recorded
                await audit(request, "alert.ack", f"alert:{alert_id}",
                            {"rule": alert.rule, "vehicle": alert.vehicle_id})
            if publish is not None:
                publish(alert.as_json())
        return web.json_response(alert.as_json())

    @requires(Role.VIEWER)
    async def alert_rules(request: web.Request) -> web.Response:
        return web.json_response({"rules": rules.describe()})

    app.router.add_get("/api/alerts", list_alerts)
    app.router.add_post("/api/alerts/{id}/ack", ack)
    app.router.add_get("/api/alert-rules", alert_rules)
