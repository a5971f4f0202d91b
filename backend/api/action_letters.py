"""Dead letters of vehicle actions for admins (docs/operations.md "Dead letters of vehicle
actions"): the list, and a replay once the cause is fixed. The letters are the store's
(backend/driver/letters.py); a replay runs through the gateway's VehicleActions, the one path
an `act` reading takes, so it is applied exactly once."""

from __future__ import annotations

from aiohttp import web

from geostream.clock import wall_ms

from ..authz import Role, requires
from ..driver.letters import STATES
from ..store.sqlite.action_letters import MAX_LETTERS_LISTED
from .common import GATEWAY, STORE, VEHICLE_ID, audit, error, int_param

# Journal epochs and sequence numbers in a path: 64-bit unsigned on the wire, JavaScript's
# exact integers here (what an admin's browser can send back).
MAX_PATH_INT = 2**53 - 1


@requires(Role.ADMIN)
async def list_letters(request: web.Request) -> web.Response:
    q = request.query
    state = q.get("state")
    if state is not None and state not in STATES:
        raise error(web.HTTPBadRequest, f"state: one of {', '.join(STATES)}")
    vehicle = q.get("vehicle")
    if vehicle is not None and not VEHICLE_ID.fullmatch(vehicle):
        raise error(web.HTTPBadRequest, "vehicle: 1..64 of A-Z a-z 0-9 _ . : -")
    limit = int_param(q, "limit", lo=1, hi=MAX_LETTERS_LISTED) or MAX_LETTERS_LISTED
    rows = await request.app[STORE].action_letters(state, vehicle, limit)
    return web.json_response({"letters": rows})


@requires(Role.ADMIN)
async def replay_letter(request: web.Request) -> web.Response:
    m = request.match_info
    vehicle = m["vehicle"]
    if not VEHICLE_ID.fullmatch(vehicle) or not m["epoch"].isdigit() or not m["seq"].isdigit() \
            or int(m["epoch"]) > MAX_PATH_INT or int(m["seq"]) > MAX_PATH_INT:
        raise error(web.HTTPNotFound, "no such dead letter")
    epoch, seq = int(m["epoch"]), int(m["seq"])
    actions = getattr(request.app[GATEWAY], "driver_actions", None)
    if not hasattr(actions, "replay"):  # a backend that applies no vehicle actions
        raise error(web.HTTPServiceUnavailable, "this backend applies no vehicle actions")
    from ..vehicle_actions import NotReplayable

    try:
        letter = await actions.replay(vehicle, epoch, seq, wall_ms())
    except LookupError:
        raise error(web.HTTPNotFound, "no such dead letter") from None
    except NotReplayable as exc:
        raise error(web.HTTPConflict, str(exc)) from None
    except Exception as exc:  # the database away (only transient failures come out)
        if not actions.transient(exc):
            raise
        raise error(web.HTTPServiceUnavailable, "the store is unavailable; try again") \
            from None
    await audit(request, "action_letter.replay", vehicle,
                {"epoch": epoch, "seq": seq, "state": letter["state"]})
    return web.json_response({"letter": letter})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/action-letters", list_letters)
    app.router.add_post("/api/action-letters/{vehicle}/{epoch}/{seq}/replay", replay_letter)
