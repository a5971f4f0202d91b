"""The driver app over HTTP (docs/driver.md) and what dispatchers see of it.

Driver routes (`/api/driver/...`, `@for_driver`): only a driver login passes, and it sees only
the route and vehicle of its current shift (`store.driver_shift`). Actions go through the one
applier (backend/driver/applier.py). Dispatcher routes: the actions and conflicts of the
vehicles they may see, proof-of-delivery images, messages from a vehicle's panel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets

from aiohttp import web

from geostream.clock import wall_ms

from ..auth.middleware import origin_allowed, watch_session
from ..authz import Role, for_driver, requires
from ..dispatch import codec
from ..dispatch.storage import JobQuery, StaleState
from ..driver.actions import (
    FILE_ID_RE,
    MAX_MESSAGE_LEN,
    ActionRefused,
    KeyReused,
    parse_action,
)
from ..driver.applier import ActionApplier, FilesMissing, public_action, publish_message
from ..driver.images import MAX_UPLOAD_BYTES, ImageRefused, clean_image, file_id
from ..driver.storage import MAX_PAGE
from ..hub import driver_topic, route_topic
from .common import GATEWAY, HUB, STORE, audit, error, int_param, principal, read_json, visible

# An action's JSON: the largest (a proof of delivery with its notes) is ~3 KB.
MAX_ACTION_BYTES = 16 * 1024
# Images one driver may store for one stop: a signature, a proof's 4 photos and re-takes; a
# client that uploads more is not taking proofs of delivery (each is up to ~0.5 MB kept).
MAX_FILES_PER_STOP = 20
# A seq cursor (`after`): JavaScript's exact integers, what a browser can send back.
MAX_CURSOR = 2**53 - 1
APPLIER = web.AppKey("fleet.driver_applier", ActionApplier)


def _applier(request: web.Request) -> ActionApplier:
    return request.app[APPLIER]


async def _shift(request: web.Request):
    """The route of the caller's shift now (None: no shift)."""
    return await request.app[STORE].driver_shift(principal(request).driver_id, wall_ms())


def _too_large(text: str, limit: int, size: int = 0) -> web.HTTPError:
    """413 with the API's JSON body (aiohttp's exception needs the sizes)."""
    return web.HTTPRequestEntityTooLarge(limit, size, text=json.dumps({"error": text}),
                                         content_type="application/json")


def _json_error(status: type[web.HTTPError], text: str, **extra) -> web.HTTPError:
    return status(text=json.dumps({"error": text, **extra}), content_type="application/json")


# --- the driver's own routes ----------------------------------------------------------------

@for_driver
async def get_shift(request: web.Request) -> web.Response:
    """The driver, the shift's route and its stops in order (with each job's place, windows,
    notes, contact and state), or route null."""
    p = principal(request)
    drivers = {d.id: d for d in await request.app[STORE].catalogue("drivers")}
    me = drivers.get(p.driver_id)
    route = await _shift(request)
    body: dict = {"driver": None if me is None else codec.driver_to_dict(me),
                  "route": None, "stops": [], "now_ms": wall_ms()}
    if route is None:
        return web.json_response(body)
    records = {r.job.id: r for r in await request.app[STORE].jobs(
        JobQuery(route_id=route.id, limit=max(1, len(route.stops))))}
    stops = []
    for s in route.stops:
        rec = records.get(s.job_id) or await request.app[STORE].job(s.job_id)
        if rec is None:
            continue
        stops.append({**codec.record_to_dict(rec), "planned_arrival_ms": s.arrival_ms,
                      "planned_departure_ms": s.departure_ms})
    body.update(route=codec.route_to_dict(route), stops=stops)
    return web.json_response(body)


@for_driver
async def post_action(request: web.Request) -> web.Response:
    """One action, applied exactly once: 200 with the stored action (`replay` true for a
    re-send), 400 not an action, 409 its key or sequence number used for another action (or
    images to upload first)."""
    if (request.content_length or 0) > MAX_ACTION_BYTES:
        raise _too_large(f"an action is at most {MAX_ACTION_BYTES} bytes", MAX_ACTION_BYTES,
                         request.content_length or 0)
    try:
        action = parse_action(await read_json(request))
    except ActionRefused as exc:
        raise error(web.HTTPBadRequest, str(exc)) from None
    p = principal(request)
    try:
        row, new = await _applier(request).apply(p.driver_id, action, wall_ms())
    except KeyReused as exc:
        await audit(request, "driver.action.refused", action.key,
                    {"device_id": action.device_id, "device_seq": action.device_seq,
                     "why": str(exc)})
        raise _json_error(web.HTTPConflict, str(exc)) from None
    except FilesMissing as exc:
        raise _json_error(web.HTTPConflict, str(exc), missing_files=exc.ids) from None
    except StaleState:
        raise _json_error(web.HTTPServiceUnavailable, "the stop keeps changing; send the "
                          "action again") from None
    return web.json_response({"action": public_action(row), "replay": not new})


@for_driver
async def list_my_actions(request: web.Request) -> web.Response:
    after = int_param(request.query, "after", lo=0, hi=MAX_CURSOR) or 0
    rows = await request.app[STORE].driver_actions(driver_id=principal(request).driver_id,
                                                   after=after)
    return web.json_response({"actions": [public_action(r) for r in rows]})


async def _read_limited(request: web.Request, limit: int) -> bytes:
    if (request.content_length or 0) > limit:
        raise _too_large(f"at most {limit // 1024 // 1024} MiB", limit,
                         request.content_length or 0)
    chunks, size = [], 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise _too_large(f"at most {limit // 1024 // 1024} MiB", limit, size)
        chunks.append(chunk)
    return b"".join(chunks)


@for_driver
async def post_file(request: web.Request) -> web.Response:
    """A proof-of-delivery image (the body: JPEG, PNG or WebP; `kind` photo or signature,
    `job` the stop): re-encoded without metadata and stored before the answer. 201 with its
    id (200 if it was stored before: uploading again is harmless)."""
    kind = request.query.get("kind", "")
    job_id = request.query.get("job", "")
    p = principal(request)
    route = await _shift(request)
    if route is None or job_id not in route.job_ids:
        raise error(web.HTTPNotFound, f"stop {job_id[:64]!r} is not on your route")
    if await request.app[STORE].driver_file_count(p.driver_id, job_id) >= MAX_FILES_PER_STOP:
        raise _too_large(f"at most {MAX_FILES_PER_STOP} images per stop", MAX_FILES_PER_STOP,
                         MAX_FILES_PER_STOP + 1)
    raw = await _read_limited(request, MAX_UPLOAD_BYTES)
    try:
        image = await asyncio.get_running_loop().run_in_executor(None, clean_image, raw, kind)
    except ImageRefused as exc:
        raise error(web.HTTPBadRequest, str(exc)) from None
    fid = file_id(p.driver_id, job_id, kind, image.data)
    new = await request.app[STORE].put_driver_file({
        "id": fid, "driver_id": p.driver_id, "vehicle_id": route.vehicle_id,
        "job_id": job_id, "kind": kind, "media_type": image.media_type, "data": image.data,
        "created_ms": wall_ms()})
    return web.json_response({"id": fid, "media_type": image.media_type,
                              "width": image.width, "height": image.height,
                              "bytes": len(image.data)}, status=201 if new else 200)


def _image(f: dict) -> web.Response:
    return web.Response(body=f["data"], content_type=f["media_type"], headers={
        "Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff",
        "Content-Disposition": "inline"})


@for_driver
async def get_my_file(request: web.Request) -> web.Response:
    fid = request.match_info["id"]
    f = await request.app[STORE].driver_file(fid) if FILE_ID_RE.fullmatch(fid) else None
    if f is None or f["driver_id"] != principal(request).driver_id:
        raise error(web.HTTPNotFound, "unknown image")
    return _image(f)


@for_driver
async def list_my_messages(request: web.Request) -> web.Response:
    after = int_param(request.query, "after", lo=0, hi=MAX_CURSOR) or 0
    rows = await request.app[STORE].driver_messages(driver_id=principal(request).driver_id,
                                                    after=after)
    return web.json_response({"messages": rows})


@for_driver
async def driver_live(request: web.Request) -> web.StreamResponse:
    """The driver app's live feed (WebSocket): its shift's route (`route:<id>`: changes,
    transitions, ETAs) and its own topic (`driver:<id>`: actions, messages). The server
    subscribes; what the client sends is ignored."""
    from ..live import HUB as LIVE_HUB
    from ..live import _send_loop, _watch

    p = principal(request)
    if p.via == "session" and not origin_allowed(request):
        return web.json_response({"error": "origin not allowed"}, status=403)
    hub = request.app[LIVE_HUB]
    route = await _shift(request)
    vehicle = route.vehicle_id if route is not None else None
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=1024, compress=False)
    await ws.prepare(request)
    sub = hub.new_subscriber(may_see=lambda v: v == vehicle, view=("driver", p.driver_id))
    sub.topics.add(driver_topic(p.driver_id))
    if route is not None:
        sub.topics.add(route_topic(route.id))
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(_send_loop(ws, sub, hub)),
             loop.create_task(_watch(ws, sub, hub, request)),
             loop.create_task(watch_session(ws, request))]
    try:
        async for _ in ws:
            pass
    finally:
        hub.remove(sub)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
    return ws


# --- what dispatchers see -------------------------------------------------------------------

@requires(Role.VIEWER)
async def list_driver_actions(request: web.Request) -> web.Response:
    """Driver actions of the vehicles the caller may see, in the order applied (`conflicts`:
    only those kept as conflicts; `job`: one stop's)."""
    q = request.query
    after = int_param(q, "after", lo=0, hi=MAX_CURSOR) or 0
    limit = int_param(q, "limit", lo=1, hi=MAX_PAGE) or MAX_PAGE
    if q.get("conflicts", "false") not in ("true", "false"):
        raise error(web.HTTPBadRequest, "conflicts: true or false")
    rows = await request.app[STORE].driver_actions(
        job_id=q.get("job") or None, conflicts=q.get("conflicts") == "true",
        vehicles=principal(request).vehicles, after=after, limit=limit)
    return web.json_response({"actions": [public_action(r) for r in rows]})


@requires(Role.VIEWER)
async def get_pod_file(request: web.Request) -> web.Response:
    fid = request.match_info["id"]
    f = await request.app[STORE].driver_file(fid) if FILE_ID_RE.fullmatch(fid) else None
    if f is None or f["vehicle_id"] is None or not principal(request).may_see(f["vehicle_id"]):
        raise error(web.HTTPNotFound, "unknown image")
    return _image(f)


@requires(Role.VIEWER)
async def list_vehicle_messages(request: web.Request) -> web.Response:
    vehicle = visible(request)
    after = int_param(request.query, "after", lo=0, hi=MAX_CURSOR) or 0
    rows = await request.app[STORE].driver_messages(vehicle_id=vehicle, after=after)
    return web.json_response({"messages": rows})


@requires(Role.DISPATCHER)
async def post_vehicle_message(request: web.Request) -> web.Response:
    """A dispatcher's message to whoever drives the vehicle now (`id`: an idempotency key, so
    a re-sent request stores one message). 201 new, 200 stored before."""
    vehicle = visible(request)
    body = await read_json(request)
    if not isinstance(body, dict) or not set(body) <= {"text", "id"}:
        raise error(web.HTTPBadRequest, "expected {text, id?}")
    text = body.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_MESSAGE_LEN:
        raise error(web.HTTPBadRequest, f"text: 1–{MAX_MESSAGE_LEN} characters")
    mid = body.get("id", "m" + secrets.token_hex(12))
    if not isinstance(mid, str) or not 8 <= len(mid) <= 64 or not mid.isascii() \
            or not mid.isprintable():
        raise error(web.HTTPBadRequest, "id: 8–64 printable ASCII characters")
    now = wall_ms()
    driver = await request.app[STORE].driver_of(vehicle, now)
    row, new = await request.app[STORE].add_driver_message({
        "id": mid, "vehicle_id": vehicle, "driver_id": driver, "direction": "to_driver",
        "author": principal(request).name, "text": text, "sent_ms": now})
    if new:
        await audit(request, "driver.message", vehicle, {"id": mid, "driver_id": driver})
        publish_message(request.app[HUB], row)
    return web.json_response({"message": row}, status=201 if new else 200)


def add_routes(app: web.Application) -> None:
    # made before the app starts: a started application's state is frozen (aiohttp warns)
    app[APPLIER] = ActionApplier(app[STORE], getattr(app[GATEWAY], "dispatch", None), app[HUB])
    r = app.router
    r.add_get("/api/driver/shift", get_shift)
    r.add_post("/api/driver/actions", post_action)
    r.add_get("/api/driver/actions", list_my_actions)
    r.add_post("/api/driver/files", post_file)
    r.add_get("/api/driver/files/{id}", get_my_file)
    r.add_get("/api/driver/messages", list_my_messages)
    r.add_get("/api/driver/live", driver_live)
    r.add_get("/api/driver-actions", list_driver_actions)
    r.add_get("/api/pod-files/{id}", get_pod_file)
    r.add_get("/api/vehicles/{vehicle}/messages", list_vehicle_messages)
    r.add_post("/api/vehicles/{vehicle}/messages", post_vehicle_message)

