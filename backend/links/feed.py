"""Tracking links, the async edge: finding a link by its token, reading what its customer
view is made of (store, the hub's last positions, the live ETAs), and the live feed of one
link (server-sent events), fed by the hub's `dispatch` topic and, only while the vehicle is on
its way to the link's stop, its `vehicle:` topic. The decisions are in model.py and view.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from geostream.clock import wall_ms

from ..dispatch.model import JobState
from ..dispatch.storage import JobQuery
from ..hub import DISPATCH, Hub, vehicle_topic
from . import view as views
from .model import TOKEN_RE, LinkState, TrackingLink, hash_token, link_state, live_until_ms

log = logging.getLogger(__name__)

# A quiet feed sends a comment this often: proxies keep it open, and the link's expiry and
# revocation are checked at least this often.
KEEPALIVE_S = 15.0
# A feed ends after this (the browser reconnects at once): every stream is bounded and
# re-reads everything when it starts again.
MAX_STREAM_S = 15 * 60.0
# Feeds open at once, in all and per link: a link posted publicly cannot hold the server's
# memory and the store's attention.
MAX_STREAMS = 1000
MAX_STREAMS_PER_LINK = 5
# The browser waits this long before reconnecting a dropped feed.
RETRY_MS = 3000


class LinkUnknown(Exception):
    """No such link (404)."""


class LinkGone(Exception):
    """The link expired or was revoked (410)."""

    def __init__(self, state: LinkState):
        super().__init__(f"this tracking link has {state.value}" if state is LinkState.EXPIRED
                         else "this tracking link was revoked")
        self.state = state


class TooMany(Exception):
    """Too many live feeds (429)."""


def _position(hub: Hub, vehicle: str | None) -> views.Position | None:
    feature = hub.last_feature(vehicle) if vehicle else None
    if feature is None:
        return None
    lon, lat = feature["geometry"]["coordinates"][:2]
    return views.Position(hub.last[vehicle][0], lat, lon)


async def proof_of_delivery(store, job_id: str) -> dict | None:
    """The job's newest applied proof of delivery from the driver app (backend/driver/), as
    the customer may see it: who took it, the driver's note, when, and the ids of its images
    (served by `/t/{token}/pod/{id}` only while they belong to this proof)."""
    rows = await store.driver_actions(job_id=job_id)
    pods = [r for r in rows if r["outcome"] == "applied" and (r["body"] or {}).get("pod")]
    if not pods:
        return None
    last = max(pods, key=lambda r: r["seq"])
    pod = last["body"]["pod"]
    return {"received_by": pod.get("recipient") or "", "note": pod.get("notes") or "",
            "at_ms": last["body"].get("done_ms") or last["received_ms"],
            "signature": pod.get("signature"), "photos": list(pod.get("photos") or ())}


class LinkService:
    """`dispatch`: the backend's Dispatcher (for its live ETAs), or None; `proof_of(store,
    job_id)`: the job's proof of delivery as the customer may see it, or None."""

    def __init__(self, store, hub: Hub, dispatch=None,
                 clock: Callable[[], int] = wall_ms, proof_of=proof_of_delivery):
        self.store, self.hub, self.dispatch, self.clock = store, hub, dispatch, clock
        self.proof_of = proof_of
        self.streams: dict[str, int] = {}  # link id → feeds open

    async def open(self, token: str) -> tuple[TrackingLink, object]:
        """The live link of `token` and its job's record; LinkUnknown or LinkGone."""
        if not TOKEN_RE.fullmatch(token):
            raise LinkUnknown()
        link = await self.store.link_by_hash(hash_token(token))
        if link is None:
            raise LinkUnknown()
        return await self.check(link)

    async def check(self, link: TrackingLink | None) -> tuple[TrackingLink, object]:
        """The link, if it still answers now, and its job's record; else LinkGone."""
        if link is None:  # deleted meanwhile
            raise LinkGone(LinkState.REVOKED)
        rec = await self.store.job(link.job_id)
        state = link_state(link, rec.state if rec else None, rec.updated_ms if rec else None,
                           self.clock())
        if state is not LinkState.LIVE:
            raise LinkGone(state)
        return link, rec

    async def context(self, link: TrackingLink, rec) -> views.LinkContext:
        ctx = views.LinkContext(rec, await self.store.transitions(rec.job.id))
        ctx.live_until_ms = live_until_ms(link, rec.state, rec.updated_ms)
        if rec.route_id is not None:
            route = await self.store.dispatch_route(rec.route_id)
            ctx.route = route
        if ctx.route is not None:
            on_route = await self.store.jobs(JobQuery(route_id=ctx.route.id,
                                                      limit=len(ctx.route.stops) or 1))
            ctx.states = {r.job.id: r.state for r in on_route}
            ctx.done_at = {r.job.id: r.updated_ms for r in on_route if r.state.terminal}
            ctx.places = {r.job.id: r.job.place.point for r in on_route}
            ctx.position = _position(self.hub, ctx.route.vehicle_id)
            ctx.driver_name = await self._driver_name(ctx.route.driver_id)
            self._eta_from_tracker(ctx)
        if rec.state is JobState.COMPLETED and self.proof_of is not None:
            ctx.proof = await self.proof_of(self.store, rec.job.id)
        return ctx

    async def _driver_name(self, driver_id: str | None) -> str | None:
        if driver_id is None:
            return None
        for d in await self.store.catalogue("drivers"):
            if d.id == driver_id:
                return d.display_name
        return None

    def _eta_from_tracker(self, ctx: views.LinkContext) -> None:
        etas = getattr(self.dispatch, "etas", None)
        tr = etas.tracker(ctx.route.vehicle_id) if etas is not None else None
        if tr is not None and tr.route_id == ctx.route.id and tr.last is not None:
            set_eta(ctx, tr.last.message())

    async def view(self, token: str) -> dict:
        link, rec = await self.open(token)
        return views.customer_view(await self.context(link, rec), self.clock())

    async def feed(self, link: TrackingLink, rec) -> AsyncIterator[str]:
        """The link's live feed as server-sent events: `view` (the whole customer view, when
        it changed), `gone` (expired or revoked; then it ends), comments as keepalives."""
        if sum(self.streams.values()) >= MAX_STREAMS \
                or self.streams.get(link.id, 0) >= MAX_STREAMS_PER_LINK:
            raise TooMany()
        self.streams[link.id] = self.streams.get(link.id, 0) + 1
        sub = self.hub.new_subscriber()  # filtered here: only this stop's changes are used
        try:
            self.hub.subscribe(sub, DISPATCH)
            sub.drain()
            ctx = await self.context(link, rec)
            watched: str | None = None
            sent = None
            loop = asyncio.get_running_loop()
            ends = loop.time() + MAX_STREAM_S
            yield f"retry: {RETRY_MS}\n\n"
            while loop.time() < ends:
                now = self.clock()
                v = views.customer_view(ctx, now)
                watched = self._watch(sub, watched, ctx, v["heading_here"])
                if v != sent:
                    sent = v
                    yield event("view", v)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(KEEPALIVE_S):
                        await sub.ready.wait()
                if sub.reason is not None:
                    return  # too slow: the browser reconnects and starts afresh
                messages = sub.drain()
                relevant = False
                for m in messages:
                    relevant |= self._apply(ctx, m)
                if relevant or not messages:  # a change, or a quiet while: expired? revoked?
                    try:
                        link, rec = await self.check(await self.store.link(link.id))
                    except LinkGone as exc:
                        yield event("gone", {"error": str(exc)})
                        return
                if relevant:
                    ctx = await self.context(link, rec)
                if not messages:
                    yield ": keepalive\n\n"
        finally:
            self.hub.remove(sub)
            self.streams[link.id] -= 1
            if not self.streams[link.id]:
                del self.streams[link.id]

    def _watch(self, sub, watched: str | None, ctx: views.LinkContext,
               heading: bool) -> str | None:
        """Hold the vehicle's topic only while it heads to this stop."""
        want = vehicle_topic(ctx.route.vehicle_id) if heading and ctx.route else None
        if want != watched:
            if watched is not None:
                self.hub.unsubscribe(sub, watched)
            if want is not None:
                self.hub.subscribe(sub, want)
        return want

    def _apply(self, ctx: views.LinkContext, m: dict) -> bool:
        """Take one hub message into the context; True if the store must be read again."""
        route_id = ctx.route.id if ctx.route is not None else None
        job_id = ctx.job.job.id
        if "feature" in m:
            f = m["feature"]
            if ctx.route is not None and f["properties"]["vehicle"] == ctx.route.vehicle_id:
                lon, lat = f["geometry"]["coordinates"][:2]
                t = ctx.position.time_ms if ctx.position else None
                newest = _feature_ms(f)
                if newest is not None and (t is None or newest > t):
                    ctx.position = views.Position(newest, lat, lon)
            return False
        if "eta" in m:
            if m["eta"].get("route_id") == route_id:
                set_eta(ctx, m["eta"])
            return False
        for field in ("transition", "job", "route"):
            p = m.get(field)
            if not isinstance(p, dict):
                continue
            ids = {p.get("job_id"), p.get("id") if field == "job" else None}
            routes = {p.get("route_id"), p.get("id") if field == "route" else None}
            if job_id in ids or (route_id is not None and route_id in routes):
                return True
        return False


def _feature_ms(f: dict) -> int | None:
    t = f["properties"].get("time")
    try:
        return round(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000)
    except (AttributeError, ValueError):
        return None


def set_eta(ctx: views.LinkContext, message: dict) -> None:
    for s in message.get("stops", ()):
        if s.get("job_id") == ctx.job.job.id:
            ctx.eta, ctx.eta_computed_ms = s, message.get("computed_ms")
            return
    ctx.eta = None


def event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
