"""Dispatch planning over HTTP: plan a shift (a proposal), read it, approve it, cancel a plan.

The work is in backend/dispatch/planning.py; this module validates bodies and maps outcomes
to statuses: 201 a proposal, 429 a plan already running (Retry-After), 409 a stale approval
with the diff approving would make now, 422 a plan the data cannot make (a stop off the road
network, no vehicles), 503 when the backend runs without a planner.
"""

from __future__ import annotations

import math

from aiohttp import web

from ..authz import Role, requires
from ..dispatch.model import Actor, ActorKind, Shift
from ..dispatch.planner import MAX_PLAN_VEHICLES, PlanError
from ..dispatch.planning import PlanningError, ProposalStale, proposal_json, proposal_vehicles
from ..dispatch.service import DispatchError
from ..dispatch.snap import SnapError
from ..dispatch.solver_worker import PlanCancelled, PlannerBusy, PlanTimeout
from ..dispatch.storage import StaleVersion
from .common import audit, error, principal, read_json

PLANNING = web.AppKey("fleet.planning", object)
# The solver's time limit a request may ask for: long enough for 1,000 jobs, short enough
# that the dispatcher is still waiting for the answer.
MAX_TIME_LIMIT_S = 60.0
# What a 429 tells the client to wait before asking again (a plan takes up to ~15 s).
RETRY_AFTER_S = 15


def _service(request: web.Request):
    svc = request.app.get(PLANNING)
    if svc is None:
        raise error(web.HTTPServiceUnavailable, "this backend runs without a planner")
    return svc


def _plan_body(body) -> tuple[Shift, list[str] | None, float | None]:
    if not isinstance(body, dict) or set(body) - {"shift", "vehicles", "time_limit_s"}:
        raise ValueError("expected {shift: {start_ms, end_ms}, vehicles?, time_limit_s?}")
    shift = body.get("shift")
    if not isinstance(shift, dict) or set(shift) != {"start_ms", "end_ms"}:
        raise ValueError("shift: {start_ms, end_ms}")
    s = Shift(shift["start_ms"], shift["end_ms"])
    vehicles = body.get("vehicles")
    if vehicles is not None and (not isinstance(vehicles, list)
                                 or len(vehicles) > MAX_PLAN_VEHICLES
                                 or not all(isinstance(v, str) and 0 < len(v) <= 64
                                            for v in vehicles)):
        raise ValueError(f"vehicles: a list of at most {MAX_PLAN_VEHICLES} vehicle ids")
    limit = body.get("time_limit_s")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | float)
                              or not math.isfinite(limit) or not 1 <= limit <= MAX_TIME_LIMIT_S):
        raise ValueError(f"time_limit_s: 1 to {MAX_TIME_LIMIT_S:.0f}")
    return s, vehicles, None if limit is None else float(limit)


@requires(Role.DISPATCHER)
async def make_plan(request: web.Request) -> web.Response:
    svc = _service(request)
    try:
        shift, vehicles, limit = _plan_body(await read_json(request))
    except ValueError as exc:
        raise error(web.HTTPBadRequest, f"bad plan request: {exc}") from None
    who = principal(request)
    if who.vehicles is not None:  # a dispatcher of some vehicles plans only those
        vehicles = sorted(set(vehicles or who.vehicles) & who.vehicles)
    try:
        kept = await svc.plan(shift, who.name, vehicles, limit)
    except PlannerBusy as exc:
        raise web.HTTPTooManyRequests(
            text=f'{{"error": "{exc}"}}', content_type="application/json",
            headers={"Retry-After": str(RETRY_AFTER_S)}) from None
    except PlanCancelled as exc:
        raise error(web.HTTPConflict, str(exc)) from None
    except PlanTimeout as exc:
        raise error(web.HTTPGatewayTimeout, str(exc)) from None
    except (PlanningError, PlanError, SnapError) as exc:
        raise error(web.HTTPUnprocessableEntity, str(exc)) from None
    await audit(request, "dispatch.plan", kept.proposal.id,
                {"jobs": len(kept.plan.unassigned) + sum(len(r.stops) for r in kept.plan.routes),
                 "basis": kept.plan.basis})
    resp = web.json_response(proposal_json(kept), status=201)
    resp.headers["Location"] = f"/api/dispatch/proposals/{kept.proposal.id}"
    return resp


@requires(Role.DISPATCHER)
async def cancel_plan(request: web.Request) -> web.Response:
    if not _service(request).cancel():
        raise error(web.HTTPNotFound, "no plan is running or queued")
    await audit(request, "dispatch.plan.cancel", "fleet")
    return web.Response(status=204)


PROPOSAL_STATUSES = ("open", "approved", "dropped", "all")


def _may_see(request: web.Request, kept) -> bool:
    """A caller limited to some vehicles sees (and approves) only proposals that touch no
    other vehicle's route."""
    mine = principal(request).vehicles
    return mine is None or proposal_vehicles(kept) <= mine


@requires(Role.VIEWER)
async def list_proposals(request: web.Request) -> web.Response:
    status = request.query.get("status", "open")
    if status not in PROPOSAL_STATUSES:
        raise error(web.HTTPBadRequest, f"status: one of {', '.join(PROPOSAL_STATUSES)}")
    kept = await _service(request).list(None if status == "all" else status)
    return web.json_response({"proposals": [proposal_json(k) for k in kept
                                            if _may_see(request, k)]})


@requires(Role.VIEWER)
async def get_proposal(request: web.Request) -> web.Response:
    kept = await _service(request).get(request.match_info["proposal"])
    if kept is None or not _may_see(request, kept):
        raise error(web.HTTPNotFound, f"unknown proposal {request.match_info['proposal']!r}")
    return web.json_response(proposal_json(kept))


@requires(Role.DISPATCHER)
async def approve_proposal(request: web.Request) -> web.Response:
    svc = _service(request)
    pid = request.match_info["proposal"]
    who = principal(request)
    kept = await svc.get(pid)
    if kept is not None and not _may_see(request, kept):
        raise error(web.HTTPNotFound, f"unknown proposal {pid!r}")
    try:
        result = await svc.approve(pid, Actor(ActorKind.PERSON, who.name))
    except PlanningError as exc:
        raise error(web.HTTPNotFound if exc.status == 404 else web.HTTPConflict,
                    str(exc)) from None
    except ProposalStale as exc:
        s = exc.stale
        raise web.HTTPConflict(text=web.json_response({
            "error": s.message, "based_on_version": s.based_on_version,
            "current_version": s.current_version, "since": list(s.since),
            "diff": s.diff.as_json()}).text, content_type="application/json") from None
    except (StaleVersion, DispatchError) as exc:  # the state moved while it was written
        raise error(web.HTTPConflict, f"{exc}: re-plan") from None
    await audit(request, "dispatch.approve", pid, {"routes": len(result["routes"])})
    return web.json_response(result)


@requires(Role.DISPATCHER)
async def move_job(request: web.Request) -> web.Response:
    """Move a job onto another route in one action, re-sequenced by the solver."""
    svc = _service(request)
    jid = request.match_info["job"]
    body = await read_json(request)
    if not isinstance(body, dict) or set(body) != {"route_id"} \
            or not isinstance(body["route_id"], str) or not 0 < len(body["route_id"]) <= 64:
        raise error(web.HTTPBadRequest, "expected {route_id}")
    rid = body["route_id"]
    who = principal(request)
    if who.vehicles is not None:  # both routes' vehicles must be the caller's
        job = await svc.store.job(jid)
        for route_id in (rid, job.route_id if job else None):
            route = await svc.store.dispatch_route(route_id) if route_id else None
            if route is not None and route.vehicle_id not in who.vehicles:
                raise error(web.HTTPNotFound, f"unknown route {route_id!r}")
    try:
        result = await svc.move(jid, rid, Actor(ActorKind.PERSON, who.name))
    except PlannerBusy as exc:
        raise web.HTTPTooManyRequests(
            text=f'{{"error": "{exc}"}}', content_type="application/json",
            headers={"Retry-After": str(RETRY_AFTER_S)}) from None
    except PlanningError as exc:
        kind = {404: web.HTTPNotFound, 422: web.HTTPUnprocessableEntity}.get(
            exc.status, web.HTTPConflict)
        raise error(kind, str(exc)) from None
    except (PlanError, SnapError) as exc:
        raise error(web.HTTPUnprocessableEntity, str(exc)) from None
    except (PlanCancelled, PlanTimeout) as exc:
        raise error(web.HTTPConflict, str(exc)) from None
    except (StaleVersion, DispatchError) as exc:
        raise error(web.HTTPConflict, f"{exc}: try again") from None
    await audit(request, "job.move", jid, {"route": rid})
    return web.json_response(result)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/dispatch/plan", make_plan)
    app.router.add_delete("/api/dispatch/plan", cancel_plan)
    app.router.add_post("/api/jobs/{job}/move", move_job)
    app.router.add_get("/api/dispatch/proposals", list_proposals)
    app.router.add_get("/api/dispatch/proposals/{proposal}", get_proposal)
    app.router.add_post("/api/dispatch/proposals/{proposal}/approve", approve_proposal)
