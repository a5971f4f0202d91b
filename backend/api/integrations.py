"""Inbound integrations over HTTP (docs/customers.md): admins manage the systems allowed to
send signed webhooks (`/api/integrations/{source}`: a secret, shown once); those systems post
events to `/api/integrations/{source}/events` (public: the HMAC signature is the credential);
REST clients send `Idempotency-Key` on the job calls (`idempotent`, used by
backend/api/dispatch.py). Every event and keyed request is done once."""

from __future__ import annotations

import functools
import json
import re
import secrets

from aiohttp import web

from geostream.clock import wall_ms

from ..auth.middleware import auth_state
from ..authz import Role, public, requires
from ..integrations import idempotency, signing
from ..integrations.apply import apply_event
from ..integrations.events import KEY_RE, MAX_EVENT_BYTES, parse_event
from .common import GATEWAY, STORE, audit, error, principal

SOURCE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# The webhook secret's random bytes: 256 bits, as API tokens.
SECRET_BYTES = 32
# Kept idempotency keys older than idempotency.KEEP_MS are removed at most this often.
PURGE_EVERY_MS = 3600 * 1000
_LAST_PURGE = web.AppKey("fleet.inbound_purged_ms", list)


def _answer(status: int, answer: dict, replayed: bool, location: str | None = None):
    headers = {REPLAYED_HEADER: "true"} if replayed else {}
    if location and status == 201:
        headers["Location"] = location
    return web.json_response(answer, status=status, headers=headers)


async def _purge(app: web.Application, now_ms: int) -> None:
    last = app[_LAST_PURGE]
    if now_ms - last[0] >= PURGE_EVERY_MS:
        last[0] = now_ms
        await app[STORE].purge_requests(now_ms - idempotency.KEEP_MS)


def idempotent(handler):
    """A job call done once per `Idempotency-Key` (per user): a repeat answers the first
    answer (with `Idempotent-Replayed: true`) and changes nothing; the key with another
    method, path or body answers 409. Without the header the call is as before."""

    @functools.wraps(handler)  # keeps the handler's declared role
    async def wrapper(request: web.Request) -> web.StreamResponse:
        key = request.headers.get(KEY_HEADER)
        if key is None:
            return await handler(request)
        if not KEY_RE.fullmatch(key):
            raise error(web.HTTPBadRequest, f"{KEY_HEADER}: 1–128 of A-Z a-z 0-9 _ . : -")
        body = await request.read()
        now = wall_ms()

        async def do() -> tuple[int, dict]:
            try:
                resp = await handler(request)
            except web.HTTPConflict as exc:  # refused as it stands: not kept, said as is
                return exc.status, json.loads(exc.text or "{}")
            return resp.status, json.loads(resp.body)

        try:
            status, answer, replayed = await idempotency.once(
                request.app[STORE], f"user:{principal(request).name}", key,
                idempotency.request_hash(request.method, request.path, body), now, do)
        except idempotency.KeyConflict as exc:
            raise error(web.HTTPConflict, str(exc)) from None
        await _purge(request.app, now)
        jid = answer.get("id") if isinstance(answer, dict) else None
        return _answer(status, answer, replayed, f"/api/jobs/{jid}" if jid else None)

    return wrapper


# --- sources (admins) ------------------------------------------------------------------------

def _source(request: web.Request) -> str:
    sid = request.match_info["source"]
    if not SOURCE_ID.fullmatch(sid):
        raise error(web.HTTPNotFound, f"unknown integration {sid[:64]!r}")
    return sid


@requires(Role.ADMIN)
async def put_source(request: web.Request) -> web.Response:
    """Create an integration or give it a new secret (the old one stops working)."""
    sid = _source(request)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    created = await request.app[STORE].put_inbound_source(sid, secret, wall_ms(),
                                                          principal(request).name)
    await audit(request, "integration.create" if created else "integration.new_secret", sid)
    return web.json_response({"id": sid, "secret": secret}, status=201 if created else 200)


@requires(Role.ADMIN)
async def list_sources(request: web.Request) -> web.Response:
    return web.json_response({"integrations": await request.app[STORE].inbound_sources()})


@requires(Role.ADMIN)
async def delete_source(request: web.Request) -> web.Response:
    sid = _source(request)
    if not await request.app[STORE].delete_inbound_source(sid):
        raise error(web.HTTPNotFound, f"unknown integration {sid!r}")
    await audit(request, "integration.delete", sid)
    return web.Response(status=204)


# --- events (the other systems) --------------------------------------------------------------

async def _bounded_body(request: web.Request) -> bytes:
    """The whole body, or 413 as soon as it passes MAX_EVENT_BYTES (never more in memory)."""
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_EVENT_BYTES:
            raise web.HTTPRequestEntityTooLarge(
                MAX_EVENT_BYTES, size, content_type="application/json",
                text=json.dumps({"error": f"body: at most {MAX_EVENT_BYTES} bytes"}))
        chunks.append(chunk)
    return b"".join(chunks)


@public  # the HMAC signature over the body is the credential (integrations/signing.py)
async def post_event(request: web.Request) -> web.Response:
    sid = request.match_info["source"]
    body = await _bounded_body(request)
    secret = await request.app[STORE].inbound_secret(sid) if SOURCE_ID.fullmatch(sid) else None
    why = signing.verify(secret or secrets.token_hex(16),  # an unknown source: no match
                         request.headers.get(signing.TIMESTAMP_HEADER),
                         request.headers.get(signing.SIGNATURE_HEADER), body,
                         auth_state(request).clock())
    if secret is None or why is not None:
        raise error(web.HTTPUnauthorized, why or "signature does not match")
    try:
        event = parse_event(body)
    except ValueError as exc:
        raise error(web.HTTPBadRequest, str(exc)) from None
    dispatch, store, now = request.app[GATEWAY].dispatch, request.app[STORE], wall_ms()
    try:
        status, answer, replayed = await idempotency.once(
            store, f"source:{sid}", event.id, idempotency.request_hash("POST", sid, body), now,
            lambda: apply_event(dispatch, store, sid, event, now))
    except idempotency.KeyConflict as exc:
        raise error(web.HTTPConflict, str(exc)) from None
    await _purge(request.app, now)
    if not replayed and status < 300:
        await audit(request, f"integration.{event.type.value}", event.job_id,
                    {"source": sid, "event": event.id})
    return _answer(status, answer, replayed, f"/api/jobs/{event.job_id}")


def add_routes(app: web.Application) -> None:
    app[_LAST_PURGE] = [0]
    r = app.router
    r.add_get("/api/integrations", list_sources)
    r.add_put("/api/integrations/{source}", put_source)
    r.add_delete("/api/integrations/{source}", delete_source)
    r.add_post("/api/integrations/{source}/events", post_event)
