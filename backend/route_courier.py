"""Delivers each dispatched route to its vehicle's agent (docs/protocol.md §3 `route.set`): the
vehicle is the driver's mailbox, so the driver's day reaches the cab through tunnels the same
way commands do — stored, sent at every welcome until the agent answers.

`driver_copy` (pure) makes the vehicle's copy of a route: its stops with what the driver needs
(place, windows, notes, contact), within `MAX_ROUTE_BYTES`. `RouteCourier` turns a saved
route into a `route.set` (or `route.clear` when it is done, cancelled or left the vehicle)
through the downlink, once per route version (the command's idempotency key).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import cbor2

from geostream.arrivals import DEFAULT_DWELL_S
from geostream.commands import MAX_ROUTE_BYTES

from .dispatch import codec
from .dispatch.model import Job, RouteStatus

log = logging.getLogger(__name__)

# Routes the driver works from; a draft is not theirs yet, done/cancelled ones are cleared.
DELIVERED = frozenset({RouteStatus.DISPATCHED.value, RouteStatus.ACTIVE.value})
# When a route does not fit MAX_ROUTE_BYTES, notes are cut to this first (the rest stays in
# the driver app over HTTP), then stops from the end are left out and `more` says how many.
NOTES_WHEN_LARGE = 160


def _stop(stop: dict, job: Job | None, notes: int | None) -> dict:
    out = {"job_id": stop["job_id"], "arrival_ms": stop.get("arrival_ms")}
    if job is not None:
        j = codec.job_to_dict(job)
        place = j["place"]
        out.update(name=j["name"], kind=j["kind"], address=place["address"],
                   lat=place["lat"], lon=place["lon"], windows=j["windows"],
                   service_s=j["service_s"], notes=j["notes"][:notes] if notes else j["notes"],
                   contact=j["contact"])
        if not place["geofence_id"]:  # the vehicle's detector takes circles (agent/stops.py)
            out["radius_m"] = place["radius_m"]
    return out


def driver_copy(route: dict, jobs: dict[str, Job], dwell_s: float = DEFAULT_DWELL_S) -> dict:
    """The `route` argument of route.set for a route as `codec.route_to_dict` gives it;
    `dwell_s`: the backend's arrival dwell, so the vehicle's detector decides as its own."""
    base = {"route_id": route["id"], "version": route["version"], "status": route["status"],
            "shift": route["shift"], "driver_id": route.get("driver_id"), "dwell_s": dwell_s}
    stops = route["stops"]
    for notes in (None, NOTES_WHEN_LARGE):
        body = {**base, "stops": [_stop(s, jobs.get(s["job_id"]), notes) for s in stops]}
        if len(cbor2.dumps({"route": body})) <= MAX_ROUTE_BYTES:
            return body
    kept = body["stops"]
    while kept and len(cbor2.dumps({"route": {**body, "stops": kept, "more": 0}})) \
            > MAX_ROUTE_BYTES:
        kept = kept[:max(0, len(kept) * 9 // 10)]
    return {**body, "stops": kept, "more": len(stops) - len(kept)}


class RouteCourier:
    """Hooked to the dispatcher's publications (`published`); `downlink()` is the gateway's
    CommandDownlink (it refuses vehicles that do not run route.set: nothing is stored)."""

    def __init__(self, store, downlink: Callable[[], object]):
        self.store = store
        self._downlink = downlink
        self._vehicle_of: dict[str, str] = {}  # route → the vehicle that last got it
        self._tasks: set[asyncio.Task] = set()
        self.delivered = 0
        self.dwell_s = DEFAULT_DWELL_S  # the dispatcher's arrival dwell (backend/service.py)

    def published(self, field: str, payload: dict, vehicle: str | None,
                  route_id: str | None = None) -> None:
        """The dispatcher's publish hook: a saved route goes to its vehicle."""
        if field != "route" or vehicle is None:
            return
        task = asyncio.get_running_loop().create_task(self.deliver(payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def deliver(self, route: dict) -> None:
        from .downlink import CommandRefused

        downlink, rid, vehicle = self._downlink(), route["id"], route["vehicle_id"]
        try:
            previous = self._vehicle_of.get(rid)
            if previous is not None and previous != vehicle:
                await downlink.send(previous, "route.clear", {"route_id": rid},
                                    request_key=f"route.clear:{rid}:v{route['version']}")
            if route["status"] not in DELIVERED:
                if previous is not None or route["status"] != RouteStatus.DRAFT.value:
                    await downlink.send(vehicle, "route.clear", {"route_id": rid},
                                        request_key=f"route.clear:{rid}:v{route['version']}")
                self._vehicle_of.pop(rid, None)
                return
            jobs = {}
            for stop in route["stops"]:
                rec = await self.store.job(stop["job_id"])
                if rec is not None:
                    jobs[stop["job_id"]] = rec.job
            body = driver_copy(route, jobs, self.dwell_s)
            await downlink.send(vehicle, "route.set", {"route": body},
                                request_key=f"route.set:{rid}:v{route['version']}")
            self._vehicle_of[rid] = vehicle
            self.delivered += 1
        except CommandRefused as exc:  # an agent without route.set: the driver app's HTTP
            log.info("route %s not sent to %s: %s", rid, vehicle, exc)
        except Exception as exc:  # the route is saved; the next change delivers it
            log.warning("route %s not sent to %s: %s", rid, vehicle, exc)

    async def close(self) -> None:
        for t in list(self._tasks):
            await asyncio.gather(t, return_exceptions=True)
