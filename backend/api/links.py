"""Tracking links over HTTP (docs/customers.md). Dispatchers make, list and revoke a job's links
(`/api/jobs/{job}/links`, `/api/links/{id}`); the customer's side is public and needs only the
token: its page `/t/{token}` (its own bundle, static/track/, and its own CSP,
backend/auth/headers.py), its view `/t/{token}/view` and its live feed `/t/{token}/events`
(server-sent events). Unknown token → 404, expired or revoked → 410, too many requests from
one address → 429.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from aiohttp import web

from geostream.clock import wall_ms

from ..auth.middleware import auth_state, client_of, is_secure
from ..authz import Role, public, requires
from ..dispatch.model import JobState
from ..links.feed import LinkGone, LinkService, LinkUnknown, TooMany
from ..links.limits import LinkLimiter
from ..links.model import (
    DEFAULT_GRACE_S,
    MAX_LINKS_PER_JOB,
    TrackingLink,
    hash_token,
    new_link_id,
    new_token,
)
from .common import GATEWAY, HUB, STORE, audit, error, principal, read_json
from .dispatch import _visible_job, _visible_route

LINKS = web.AppKey("fleet.links", LinkService)
LIMITER = web.AppKey("fleet.link_limiter", LinkLimiter)
PAGE = Path(__file__).resolve().parent.parent / "static" / "track" / "index.html"
CREATE_FIELDS = {"grace_s", "expires_ms"}
# What the customer's browser gets instead of the page (no script, no style: the CSP allows
# neither inline).
_GONE_PAGE = ("<!doctype html><html lang=en><meta charset=utf-8><title>Tracking link</title>"
              "<meta name=viewport content='width=device-width'><link rel=icon href='data:,'>"
              "<h1>{}</h1></html>")


def link_url(request: web.Request, token: str) -> str:
    scheme = "https" if is_secure(request) else "http"
    return f"{scheme}://{request.host}/t/{token}"


def qr_svg(text: str) -> str:
    """`text` as a QR code, an SVG document (qrcode's path image: no image library)."""
    import qrcode
    import qrcode.image.svg

    out = io.BytesIO()
    qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage).save(out)
    return out.getvalue().decode()


# --- dispatchers --------------------------------------------------------------------------

@requires(Role.DISPATCHER)
async def create_link(request: web.Request) -> web.Response:
    """A new link for the job: its token (here only, never again), URL and QR code."""
    rec = await _visible_job(request, request.match_info["job"])
    body = await read_json(request) if request.can_read_body else {}
    if not isinstance(body, dict):
        raise error(web.HTTPBadRequest, "the body must be a JSON object")
    unknown = sorted(set(body) - CREATE_FIELDS)
    if unknown:
        raise error(web.HTTPBadRequest, f"unknown field {unknown[0]!r}")
    token, now = new_token(), wall_ms()
    try:
        link = TrackingLink(new_link_id(), hash_token(token), rec.job.id, now,
                            principal(request).name, body.get("grace_s", DEFAULT_GRACE_S),
                            body.get("expires_ms"))
    except ValueError as exc:
        raise error(web.HTTPBadRequest, str(exc)) from None
    if not await request.app[STORE].add_link(link, MAX_LINKS_PER_JOB):
        raise error(web.HTTPConflict, f"job {rec.job.id} has {MAX_LINKS_PER_JOB} live links: "
                    "revoke one first")
    await audit(request, "link.create", link.id, {"job": rec.job.id})
    url = link_url(request, token)
    return web.json_response({**link.as_dict(), "token": token, "url": url,
                              "qr_svg": qr_svg(url)}, status=201)


@requires(Role.VIEWER)
async def list_links(request: web.Request) -> web.Response:
    rec = await _visible_job(request, request.match_info["job"])
    links = await request.app[STORE].job_links(rec.job.id)
    return web.json_response({"links": [lk.as_dict() for lk in links]})


@requires(Role.DISPATCHER)
async def revoke_link(request: web.Request) -> web.Response:
    link_id = request.match_info["link"]
    link = await request.app[STORE].link(link_id)
    if link is not None:
        rec = await request.app[STORE].job(link.job_id)
        if rec is not None and rec.route_id is not None:
            try:
                await _visible_route(request, rec.route_id)
            except web.HTTPNotFound:
                link = None
    if link is None:
        raise error(web.HTTPNotFound, f"unknown link {link_id!r}")
    revoked = await request.app[STORE].revoke_link(link_id, wall_ms())
    await audit(request, "link.revoke", link_id, {"job": link.job_id})
    return web.json_response(revoked.as_dict())


# --- the customer's side (public: the token is the credential) ----------------------------

def _limit(request: web.Request) -> None:
    wait = request.app[LIMITER].admit(client_of(request), auth_state(request).clock())
    if wait:
        raise web.HTTPTooManyRequests(text=json.dumps({"error": "too many requests"}),
                                      content_type="application/json",
                                      headers={"Retry-After": str(max(1, round(wait)))})


async def _open(request: web.Request, html: bool = False):
    _limit(request)
    try:
        return await request.app[LINKS].open(request.match_info["token"])
    except LinkUnknown:
        request.app[LIMITER].missed(client_of(request), auth_state(request).clock())
        text = "unknown tracking link"
        if html:
            raise web.HTTPNotFound(text=_GONE_PAGE.format("This tracking link does not "
                                                          "exist."),
                                   content_type="text/html") from None
        raise error(web.HTTPNotFound, text) from None
    except LinkGone as exc:
        if html:
            raise web.HTTPGone(text=_GONE_PAGE.format("This tracking link has expired."),
                               content_type="text/html") from None
        raise error(web.HTTPGone, str(exc)) from None


@public  # the token in the path is the credential; the page itself holds no data
async def track_page(request: web.Request) -> web.StreamResponse:
    await _open(request, html=True)
    return web.FileResponse(PAGE)


@public  # the token in the path is the credential
async def track_view(request: web.Request) -> web.Response:
    link, rec = await _open(request)
    service = request.app[LINKS]
    from ..links.view import customer_view

    return web.json_response(customer_view(await service.context(link, rec), service.clock()))


@public  # the token in the path is the credential
async def track_events(request: web.Request) -> web.StreamResponse:
    link, rec = await _open(request)
    stream = request.app[LINKS].feed(link, rec)
    try:
        first = await anext(stream)
    except TooMany:
        raise error(web.HTTPTooManyRequests, "too many live views of this link") from None
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    try:
        await resp.write(first.encode())
        async for chunk in stream:
            await resp.write(chunk.encode())
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        await stream.aclose()
    return resp


@public  # the token in the path is the credential; only this stop's proof's images
async def track_pod_file(request: web.Request) -> web.Response:
    link, rec = await _open(request)
    service, fid = request.app[LINKS], request.match_info["file"]
    proof = await service.proof_of(service.store, rec.job.id) \
        if rec.state is JobState.COMPLETED else None
    files = [proof["signature"], *proof["photos"]] if proof else []
    f = await service.store.driver_file(fid) if fid in files else None
    if f is None:
        raise error(web.HTTPNotFound, "unknown image")
    return web.Response(body=f["data"], content_type=f["media_type"], headers={
        "Cache-Control": "private, max-age=3600", "Content-Disposition": "inline"})


def add_routes(app: web.Application) -> None:
    gateway = app[GATEWAY]
    app[LINKS] = LinkService(app[STORE], app[HUB], getattr(gateway, "dispatch", None))
    app[LIMITER] = LinkLimiter()
    r = app.router
    r.add_post("/api/jobs/{job}/links", create_link)
    r.add_get("/api/jobs/{job}/links", list_links)
    r.add_delete("/api/links/{link}", revoke_link)
    r.add_get("/t/{token}", track_page)
    r.add_get("/t/{token}/view", track_view)
    r.add_get("/t/{token}/events", track_events)
    r.add_get("/t/{token}/pod/{file}", track_pod_file)
