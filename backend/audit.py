"""The audit trail: one call for every route module that changes something.

    from backend.audit import audit
    await audit(request, "command.send", vehicle_id, {"name": name, "id": cid})

The principal is the request's (backend/authz.py); the row goes to the store's `audit` table
(time, user, action, target, detail) and is read back by `GET /api/audit` (admin). Actions are
dotted `noun.verb` names: command.send, geofence.create|update|delete, alert.ack,
user.create|update, token.create|delete, group.put|delete, vehicle.create|revoke.
"""

from __future__ import annotations

import logging

from aiohttp import web

from geostream.clock import wall_ms

from .authz import PRINCIPAL

log = logging.getLogger(__name__)

STORE = web.AppKey("fleet.audit_store", object)


async def audit(request: web.Request, action: str, target: str,
                detail: dict | None = None) -> None:
    """Record that the request's principal did `action` to `target`. Never logs secrets: pass
    no password or token in `detail`."""
    principal = request.get(PRINCIPAL)
    who = principal.name if principal is not None else "-"
    await request.app[STORE].add_audit(wall_ms(), who, action, str(target),
                                       detail)
    log.info("audit: %s %s %s", who, action, target)
