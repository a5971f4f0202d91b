"""HTTP routes of alerts (docs/alerts.md; backend/openapi.yaml):

GET /api/alerts (viewer), POST /api/alerts/{id}/ack (dispatcher), GET /api/alert-rules (viewer).
A principal that sees only some vehicles (groups) gets only their alerts; another vehicle's
alert is 404, so ids do not leak.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from geostream.clock import wall_ms

from ..api.common import INTEGER, MAX_TIME_MS, VEHICLE_ID
from ..authz import PRINCIPAL, Role, requires
from ..store.base import AlertQuery
from .rules import RuleSet

log = logging.getLogger(__name__)

# One page of alerts: a dispatcher's list view; scripts page with to_ms.
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
STATES = ("open", "closed", "retracted")
ALERT_ID = re.compile(r"[0-9]{1,18}")  # ids are signed 64-bit in both stores


def _bad(text: str) -> web.Response:
    return web.json_response({"error": text}, status=400)


def _query(q, principal) -> AlertQuery:
    """The filters of GET /api/alerts; ValueError names the bad one."""
    def integer(key: str, lo: int, hi: int) -> int | None:
        value = q.get(key)
        if value is None:
            return None
        if not INTEGER.fullmatch(value) or not lo <= int(value) <= hi:
            raise ValueError(f"{key} must be an integer within {lo}..{hi}")
        return int(value)

    state = q.get("state") or None
    if state is not None and state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}")
    ack = q.get("acknowledged") or None
    if ack is not None and ack not in ("true", "false"):
        raise ValueError("acknowledged must be true or false")
    limit = integer("limit", 1, MAX_LIMIT)
    limit = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be within 1..{MAX_LIMIT}")
    vehicle = q.get("vehicle")
    if vehicle is not None and not VEHICLE_ID.fullmatch(vehicle):
        raise ValueError("vehicle must be a vehicle id (1..64 of A-Z a-z 0-9 _ . : -)")
    vehicles = getattr(principal, "vehicles", None)
    return AlertQuery(vehicle=vehicle, vehicles=vehicles,
                      rule=q.get("rule") or None, state=state,
                      acknowledged=None if ack is None else ack == "true",
                      from_ms=integer("from_ms", 0, MAX_TIME_MS),
                      to_ms=integer("to_ms", 0, MAX_TIME_MS), limit=limit)


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
        if not ALERT_ID.fullmatch(request.match_info["id"]):
            return _bad("id must be a number")
        alert_id = int(request.match_info["id"])
        alert = await store.alert(alert_id)
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
