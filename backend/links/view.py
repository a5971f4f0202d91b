"""What a tracking link's customer sees (docs/customers.md): the stop's status timeline, its ETA
with a window, the driver's first name, the vehicle's position only while it is on its way to
this stop, and the proof of delivery once done. Pure: a `LinkContext` (read by feed.py) and
`now_ms` in, a JSON-ready dict out. Nothing else of the fleet is in it: no vehicle id, no
route, no other stop, no actor, no reason, no place but this stop's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..dispatch.model import JobRecord, JobState, Point, Route, RouteStatus, Transition
from .model import FINAL

S = JobState
# Routes whose vehicle is out driving them.
LIVE_ROUTES = (RouteStatus.DISPATCHED, RouteStatus.ACTIVE)
# States of this stop in which the vehicle may be on its way to it.
AWAITED = (S.ASSIGNED, S.EN_ROUTE)
# A position closer than this to the stop served just before is not shown: at the moment the
# vehicle sets off it stands at the previous customer's door, which is not this customer's
# business.
LEAVE_RADIUS_M = 300.0
# A position older than this is not "where the vehicle is" but where it was: not shown.
MAX_POSITION_AGE_MS = 10 * 60 * 1000
# Timeline entries shown at most (a job bounced between states keeps its newest).
MAX_TIMELINE = 50


@dataclass(frozen=True)
class Position:
    time_ms: int
    lat: float
    lon: float


@dataclass(frozen=True)
class Heading:
    """The vehicle is on its way to this stop: since when, and from which stop's place."""

    since_ms: int
    previous: Point | None  # the stop served just before (None: from the depot)


@dataclass
class LinkContext:
    """Everything one view is made of, as read from the store, the hub and the live ETAs."""

    job: JobRecord
    transitions: list[Transition]
    route: Route | None = None
    states: dict[str, JobState] = field(default_factory=dict)  # the route's jobs' states
    done_at: dict[str, int] = field(default_factory=dict)  # the route's done jobs: since when
    places: dict[str, Point] = field(default_factory=dict)  # the route's jobs' points
    eta: dict | None = None  # this stop's entry of the route's newest live ETA message
    eta_computed_ms: int | None = None
    position: Position | None = None  # the vehicle's newest known position
    driver_name: str | None = None
    proof: dict | None = None
    live_until_ms: int | None = None


def heading(job_id: str, route: Route | None, states: dict[str, JobState],
            done_at: dict[str, int], places: dict[str, Point]) -> Heading | None:
    """Whether the route's vehicle is on its way to `job_id` now: the route is out, this stop
    is still awaited, and every stop before it on the route is done."""
    if route is None or route.status not in LIVE_ROUTES or job_id not in route.job_ids:
        return None
    if states.get(job_id) not in AWAITED:
        return None
    since, previous = route.shift.start_ms, None
    for jid in route.job_ids:
        if jid == job_id:
            return Heading(since, previous)
        if states.get(jid) not in FINAL:
            return None  # an earlier stop is still ahead of it (or being served)
        if states[jid] is not S.CANCELLED:  # a cancelled stop was never driven to
            since = max(since, done_at.get(jid, since))
            previous = places.get(jid, previous)
    return None


def distance_m(a: Point, lat: float, lon: float) -> float:
    """Great-circle distance (haversine, mean Earth radius)."""
    p1, p2 = math.radians(a.lat), math.radians(lat)
    dp, dl = p2 - p1, math.radians(lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(min(1.0, math.sqrt(h)))


def visible_position(h: Heading | None, pos: Position | None, now_ms: int) -> Position | None:
    """The position the customer may see: only while heading here, only one taken after the
    vehicle set off here, away from the previous stop, and recent."""
    if h is None or pos is None:
        return None
    if pos.time_ms <= h.since_ms or now_ms - pos.time_ms > MAX_POSITION_AGE_MS:
        return None
    if h.previous is not None and distance_m(h.previous, pos.lat, pos.lon) < LEAVE_RADIUS_M:
        return None
    return pos


def timeline(transitions: list[Transition]) -> list[dict]:
    """The stop's states in order, without those a later transition corrected."""
    corrected = {t.corrects for t in transitions if t.corrects}
    out = [{"state": t.to_state.value, "at_ms": t.at_ms}
           for t in transitions if t.id not in corrected]
    return out[-MAX_TIMELINE:]


def first_name(display_name: str | None) -> str | None:
    words = (display_name or "").split()
    return words[0] if words else None


def customer_view(ctx: LinkContext, now_ms: int) -> dict:
    """The customer's view of the link's stop (the JSON of `GET /t/{token}/view` and of the
    live feed's `view` events; backend/openapi.yaml, TrackingView)."""
    rec, job = ctx.job, ctx.job.job
    h = heading(job.id, ctx.route, ctx.states, ctx.done_at, ctx.places)
    pos = visible_position(h, ctx.position, now_ms)
    eta = None
    if ctx.eta is not None and rec.state in (*AWAITED, S.ARRIVED) and ctx.route is not None \
            and ctx.route.status in LIVE_ROUTES:
        eta_ms, spread_ms = ctx.eta.get("eta_ms"), int(ctx.eta.get("spread_s") or 0) * 1000
        if isinstance(eta_ms, int):
            eta = {"eta_ms": eta_ms, "earliest_ms": eta_ms - spread_ms,
                   "latest_ms": eta_ms + spread_ms, "computed_ms": ctx.eta_computed_ms,
                   "late": bool(ctx.eta.get("late"))}
    on_route = ctx.route is not None and rec.state not in (S.UNASSIGNED, S.CANCELLED)
    return {
        "stop": {"name": job.name, "address": job.place.address,
                 "lat": job.place.point.lat, "lon": job.place.point.lon,
                 "windows": [{"start_ms": w.start_ms, "end_ms": w.end_ms}
                             for w in job.windows]},
        "state": rec.state.value,
        "timeline": timeline(ctx.transitions),
        "eta": eta,
        "driver": first_name(ctx.driver_name) if on_route else None,
        "heading_here": h is not None,
        "vehicle": None if pos is None else {"lat": pos.lat, "lon": pos.lon,
                                             "time_ms": pos.time_ms},
        "proof": ctx.proof if rec.state is S.COMPLETED else None,
        "live_until_ms": ctx.live_until_ms,
    }
