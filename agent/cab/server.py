"""The cab server: the driver app and its API over HTTPS on the vehicle's own network
(docs/protocol.md §11, docs/driver.md "The in-cab tablet"). A thin aiohttp edge around the
pure parts (pairing.py, actions.py, shift.py); the records go through the command runner's
database thread (records.py), actions into the journal through `Agent.take_action`, the same
way the status socket hands them over.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import ssl
import time
from pathlib import Path

from aiohttp import web

from geostream.clock import wall_ms
from geostream.image_parts import split

from ..mailbox import Mailbox
from . import records, tls
from .actions import MAX_ACTION_BYTES, KeyUsed, NotAnAction, check, decide, named_images
from .capped import CappedSite, ConnectionCap
from .pairing import Paired, Pairing, Refused, csrf_token, shown, token_hash
from .shift import shift_answer

log = logging.getLogger(__name__)

VERSION = 1  # cab/1 (docs/protocol.md §11)
STATIC = Path(__file__).resolve().parent.parent / "cab_static"
# What the app needs from the bundle (`make web` copies it here); without it the cab stays off.
BUNDLE = ("driver.html", "driver.js", "driver.css", "driver-sw.js", "driver.webmanifest",
          "driver-icon.svg", "cab-pair.html", "cab-pair.js")
COOKIE = "cab_token"
# Browsers keep a cookie at most 400 days (RFC 6265bis); a re-pair after that is fair.
COOKIE_MAX_AGE_S = 400 * 86400
# A pairing request: a code and a label.
MAX_PAIR_BYTES = 1024
MAX_LABEL_CHARS = 64
# A proof-of-delivery image as uploaded: the backend's bound (backend/driver/images.py).
MAX_FILE_BYTES = 12 * 1024 * 1024
# The magic bytes of what cameras and canvases make (JPEG, PNG, WebP): nothing else is kept.
MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"))
# The live feed checks the mailbox this often (a route.set lands there from the downlink).
LIVE_POLL_S = 2.0
# Live sockets at once: a cab has one or two tablets; each holds a poll loop.
MAX_LIVE = 4
# aiohttp's own bound on a request body, above every route's own.
CLIENT_MAX_SIZE = MAX_FILE_BYTES + 1024
CSP = "; ".join(["default-src 'self'", "script-src 'self'", "style-src 'self'",
                 "img-src 'self' data: blob:", "connect-src 'self'", "worker-src 'self'",
                 "object-src 'none'", "base-uri 'none'", "form-action 'self'",
                 "frame-ancestors 'none'"])
FILES = {"/driver/": ("driver.html", "text/html"), "/login": ("cab-pair.html", "text/html"),
         "/pair": ("cab-pair.html", "text/html"),
         "/driver/sw.js": ("driver-sw.js", "text/javascript"),
         "/driver/manifest.webmanifest": ("driver.webmanifest", "application/manifest+json"),
         "/static/app/driver.js": ("driver.js", "text/javascript"),
         "/static/app/driver.css": ("driver.css", "text/css"),
         "/static/app/driver-icon.svg": ("driver-icon.svg", "image/svg+xml"),
         "/static/app/cab-pair.js": ("cab-pair.js", "text/javascript")}


def bundle_problem(static: Path = STATIC) -> str | None:
    missing = [n for n in BUNDLE if not (static / n).is_file()]
    if missing:
        return f"the driver app is not built ({static} has no {', '.join(missing)}): `make web`"
    return None


def tls_files(config, journal_path: str) -> tls.CabFiles:
    base = Path(config.tls_dir or Path(journal_path).parent)
    return tls.CabFiles(base / "cab-ca.pem", base / "cab-ca.key", base / "cab.pem",
                        base / "cab.key")


def _error(status: type[web.HTTPException], text: str, **headers) -> web.HTTPException:
    return status(text=json.dumps({"error": text}), content_type="application/json",
                  headers=headers or None)


def _bounded(size: int | None, limit: int, what: str) -> int:
    """411 without a Content-Length, 413 over `limit`: before anything is read."""
    text = json.dumps({"error": f"{what} of at most {limit} bytes"})
    if size is None:
        raise web.HTTPLengthRequired(text=text, content_type="application/json")
    if size > limit:
        raise web.HTTPRequestEntityTooLarge(limit, size, text=text,
                                            content_type="application/json")
    return size


def _image_type(body: bytes) -> str | None:
    for magic, kind in MAGIC:
        if body.startswith(magic):
            return kind
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return "image/webp"
    return None


class CabServer:
    def __init__(self, config, agent):
        self.config = config
        self.agent = agent  # take_action, runner.db, config.vehicle_id
        self.vehicle = agent.config.vehicle_id
        self.files = tls_files(config, agent.config.journal.path)
        self.pairing = Pairing()
        self._devices: dict[str, str] = {}  # token hash → device id (a cache of cab_devices)
        self._actions = asyncio.Lock()  # one action at a time: check, journal, record
        self._live: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None
        self.cap = ConnectionCap()  # connections at once (capped.py)
        self.origin = f"https://{self._host()}:{config.port}"
        self.origins = {self.origin}  # the listen address's and [cab] names' (start())

    def _host(self) -> str:
        return f"[{self.config.listen}]" if ":" in self.config.listen else self.config.listen

    # --- start and stop ---------------------------------------------------------------------

    async def start(self) -> bool:
        """Listen on [cab] listen:port; False (logged) when it cannot: the agent runs on."""
        problem = bundle_problem()
        if problem:
            log.error("cab server off: %s", problem)
            return False
        try:
            made = await asyncio.to_thread(
                tls.ensure, self.files, self.vehicle, (self.config.listen, *self.config.names),
                dt.datetime.now(dt.UTC))
            if made:
                log.warning("cab: made %s in %s (pin %s)", ", ".join(made),
                            self.files.cert.parent, self.pin())
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(self.files.cert, self.files.key)
            app = web.Application(client_max_size=CLIENT_MAX_SIZE,
                                  middlewares=[self._headers])
            self._routes(app)
            self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await self._runner.setup()
            site = CappedSite(self._runner, self.config.listen, self.config.port, ctx,
                              self.cap)
            await site.start()
            port = self._runner.addresses[0][1]  # [cab] port 0: the kernel's choice
            self.origin = f"https://{self._host()}:{port}"
            self.origins = {self.origin, *(f"https://{n}:{port}" for n in self.config.names)}
        except (OSError, ValueError, ssl.SSLError) as exc:
            log.error("cab server on %s:%d: %s", self.config.listen, self.config.port, exc)
            await self.close()
            return False
        log.info("cab server: %s/driver/ (pin sha256/%s)", self.origin, self.pin())
        return True

    async def close(self) -> None:
        for ws in list(self._live):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def status(self) -> dict:
        """For `fleet-agent status`: running or not, where, how many apps are live."""
        return {"running": self._runner is not None, "origin": self.origin,
                "live": len(self._live), "connections": self.cap.open,
                "refused": self.cap.refused}

    def pin(self) -> str:
        return tls.spki_pin(self.files.cert.read_bytes())

    # --- the status socket's `cab` requests (fleet-agent cab ...) -----------------------------

    async def control(self, request: object) -> dict:
        """{"op": "pair"} → a code; {"op": "unpair", "device": id or null}; {"op": "devices"}."""
        op = request.get("op") if isinstance(request, dict) else None
        if op == "pair" and self._runner is None:
            return {"ok": False, "error": "the cab server is not running (the agent's log "
                    "says why)"}
        if op == "pair":
            code, ttl = self.pairing.issue(time.monotonic())
            return {"ok": True, "code": shown(code), "valid_s": ttl, "vehicle": self.vehicle,
                    "url": f"{self.origin}/pair?code={shown(code)}", "pin": self.pin(),
                    "ca_file": str(self.files.ca_cert)}
        if op == "unpair":
            device = request.get("device")
            if device is not None and not isinstance(device, str):
                return {"ok": False, "error": "device: a device id"}
            gone = await self.agent.runner.db(lambda c: records.remove_devices(c, device))
            self._devices.clear()
            return {"ok": True, "removed": gone}
        if op == "devices":
            return {"ok": True, "devices": await self.agent.runner.db(records.devices),
                    "origin": self.origin, "live": len(self._live)}
        return {"ok": False, "error": "op: pair, unpair or devices"}

    # --- the edge ---------------------------------------------------------------------------

    @web.middleware
    async def _headers(self, request: web.Request, handler):
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        if not isinstance(response, web.WebSocketResponse):
            response.headers.update({
                "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                "Strict-Transport-Security": "max-age=31536000"})
        if isinstance(response, web.HTTPException):
            raise response
        return response

    async def _device(self, request: web.Request) -> tuple[str, str] | None:
        """(device id, token) of a paired device, else None."""
        token = request.cookies.get(COOKIE, "")
        auth = request.headers.get("Authorization", "")
        if not token and auth.startswith("Bearer "):
            token = auth[7:]
        if not token or len(token) > 128:
            return None
        digest = token_hash(token)
        device = self._devices.get(digest)
        if device is None:
            def look_up(db):
                found = records.device_of(db, digest)
                if found is not None:
                    records.seen(db, found, wall_ms())
                return found
            device = await self.agent.runner.db(look_up)
            if device is None:
                return None
            self._devices[digest] = device
        return device, token

    async def _paired(self, request: web.Request, write: bool = False) -> tuple[str, str]:
        """(device id, token), or 401; a write also needs the CSRF header and our Origin
        (403)."""
        found = await self._device(request)
        if found is None:
            raise _error(web.HTTPUnauthorized, "this tablet is not paired with the vehicle")
        device, token = found
        if write:
            origin = request.headers.get("Origin")
            if request.headers.get("X-CSRF-Token") != csrf_token(token) or (
                    origin is not None and origin not in self.origins):
                raise _error(web.HTTPForbidden, "missing or wrong X-CSRF-Token or Origin")
        return device, token

    async def _json(self, request: web.Request, limit: int) -> object:
        size = _bounded(request.content_length, limit, "a JSON body")
        try:
            return json.loads(await request.content.readexactly(size))
        except (ValueError, asyncio.IncompleteReadError):
            raise _error(web.HTTPBadRequest, "the body is not JSON") from None

    def _routes(self, app: web.Application) -> None:
        r = app.router
        for path in FILES:
            r.add_get(path, self.static)
        r.add_post("/api/cab/pair", self.pair)
        r.add_get("/api/me", self.me)
        r.add_get("/api/driver/shift", self.shift)
        r.add_post("/api/driver/actions", self.action)
        r.add_post("/api/driver/files", self.upload)
        r.add_get("/api/driver/messages", self.messages)
        r.add_get("/api/driver/live", self.live)
        r.add_post("/api/logout", self.logout)

    async def static(self, request: web.Request) -> web.StreamResponse:
        name, kind = FILES[request.path]
        if request.path == "/driver/" and await self._device(request) is None:
            raise web.HTTPFound("/login?next=/driver/")
        return web.FileResponse(STATIC / name, headers={
            "Content-Type": kind, "Cache-Control": "no-cache"})

    async def pair(self, request: web.Request) -> web.Response:
        body = await self._json(request, MAX_PAIR_BYTES)
        code = body.get("code") if isinstance(body, dict) else None
        label = body.get("label") if isinstance(body, dict) else None
        label = "".join(ch for ch in label if ch.isprintable())[:MAX_LABEL_CHARS] \
            if isinstance(label, str) else ""
        outcome = self.pairing.redeem(code, time.monotonic())
        if isinstance(outcome, Refused):
            log.warning("cab: pairing refused for %s: %s", request.remote, outcome.reason)
            raise _error(web.HTTPForbidden, outcome.reason)
        if not isinstance(outcome, Paired):
            log.warning("cab: pairing from %s: %s", request.remote, outcome.reason)
            raise _error(web.HTTPTooManyRequests, outcome.reason,
                         **{"Retry-After": str(max(1, round(outcome.retry_after_s)))})
        device = "tab-" + outcome.token_hash[:12]
        try:
            await self.agent.runner.db(lambda c: records.add_device(
                c, device, outcome.token_hash, label or device, wall_ms()))
        except records.TooManyDevices as exc:
            raise _error(web.HTTPConflict, str(exc)) from None
        log.warning("cab: paired device %s (%s) from %s", device, label, request.remote)
        response = web.json_response({"device": device, "vehicle": self.vehicle})
        response.set_cookie(COOKIE, outcome.token, max_age=COOKIE_MAX_AGE_S, path="/",
                            secure=True, httponly=True, samesite="Strict")
        return response

    async def me(self, request: web.Request) -> web.Response:
        device, token = await self._paired(request)
        return web.json_response({
            "user": {"name": f"vehicle {self.vehicle}", "role": "driver"},
            "csrf_token": csrf_token(token),
            "cab": {"version": VERSION, "vehicle": self.vehicle, "device": device}})

    async def shift(self, request: web.Request) -> web.Response:
        await self._paired(request)

        def read(db):
            return Mailbox(db).routes(), records.job_states(db)
        routes, states = await self.agent.runner.db(read)
        return web.json_response(shift_answer(routes, states, self.vehicle, wall_ms()))

    async def action(self, request: web.Request) -> web.Response:
        await self._paired(request, write=True)
        body = await self._json(request, MAX_ACTION_BYTES)
        try:
            checked = check(body)
        except NotAnAction as exc:
            raise _error(web.HTTPBadRequest, str(exc)) from None
        async with self._actions:  # the check, the journal and the record in one order
            recorded = await self.agent.runner.db(lambda c: records.recorded_action(
                c, checked.key, checked.device_id, checked.device_seq))
            try:
                new = decide(checked, recorded)
            except KeyUsed as exc:
                log.warning("cab: action %s refused: %s", checked.key, exc)
                raise _error(web.HTTPConflict, str(exc)) from None
            if new:
                # its images travel before it (docs/protocol.md §4 "Images"): one the vehicle
                # does not keep would never reach the backend, as the backend's API says
                ids = named_images(checked.journaled)
                missing = [i for i in ids if not await self.agent.runner.db(
                    lambda c, i=i: records.has_file(c, i))]
                if missing:
                    raise web.HTTPConflict(text=json.dumps({
                        "error": f"upload these images first: {', '.join(missing)}",
                        "missing_files": missing}), content_type="application/json")
                answer = await self.agent.take_action(checked.journaled)
                if not answer.get("ok"):
                    status = (web.HTTPServiceUnavailable if "cannot store" in
                              str(answer.get("error")) else web.HTTPBadRequest)
                    raise _error(status, str(answer.get("error")))
                row = {"key": checked.key, "device_id": checked.device_id,
                       "device_seq": checked.device_seq, "digest": checked.digest,
                       "kind": checked.kind, "job_id": checked.job_id, "q": answer["seq"],
                       "received_ms": wall_ms()}
                text = checked.journaled.get("text")  # journaled: ≤ 2000 characters
                text = text if checked.kind == "message" and isinstance(text, str) else None
                await self.agent.runner.db(lambda c: records.record_action(c, row, text))
                recorded = row
        return web.json_response({"action": {
            "key": checked.key, "device_id": checked.device_id,
            "device_seq": checked.device_seq, "kind": checked.kind, "job_id": checked.job_id,
            "route_id": body.get("route_id"), "outcome": "journaled", "q": recorded["q"],
            "detail": "saved on the vehicle; it reaches dispatch when the link allows"},
            "replay": not new})

    async def upload(self, request: web.Request) -> web.Response:
        device, _ = await self._paired(request, write=True)
        kind, job = request.query.get("kind"), request.query.get("job") or None
        if kind not in ("photo", "signature") or (job is not None and len(job) > 64):
            raise _error(web.HTTPBadRequest, "kind: photo or signature; job: a job id")
        size = _bounded(request.content_length, MAX_FILE_BYTES, "an image")
        try:
            body = await request.content.readexactly(size)
        except asyncio.IncompleteReadError:
            raise _error(web.HTTPBadRequest, "the image was cut short") from None
        if _image_type(body) is None:
            raise _error(web.HTTPUnsupportedMediaType, "JPEG, PNG or WebP only")
        file_id = "f" + hashlib.sha256(b"\0".join(
            (device.encode(), kind.encode(), (job or "").encode(), body))).hexdigest()[:40]
        async with self._actions:  # journaled before any action that names it
            if await self.agent.runner.db(lambda c: records.has_file(c, file_id)):
                return web.json_response({"id": file_id, "kind": kind})
            # "saved" means journaled: its parts in one transaction (docs/protocol.md §4
            # "Images"); a kill -9 before the record below journals the same parts again on
            # the app's retry, which the backend takes as re-sends
            answer = await self.agent.take_image(split(file_id, kind, job, body, device))
            if not answer.get("ok"):
                raise _error(web.HTTPServiceUnavailable, str(answer.get("error")))
            await self.agent.runner.db(
                lambda c: records.keep_file(c, file_id, kind, job, body, wall_ms()))
        return web.json_response({"id": file_id, "kind": kind}, status=201)

    async def messages(self, request: web.Request) -> web.Response:
        await self._paired(request)
        try:
            after = int(request.query.get("after", "0"))
        except ValueError:
            raise _error(web.HTTPBadRequest, "after: a whole number") from None
        shown = await self.agent.runner.db(lambda c: records.shown_messages(c, after))
        return web.json_response({"messages": shown})

    async def live(self, request: web.Request) -> web.StreamResponse:
        """The mailbox's changes: `{"route": {}}` when a route arrives or goes (the app reads
        its shift again), `{"message": M}` for a new message."""
        await self._paired(request)
        if len(self._live) >= MAX_LIVE:
            raise _error(web.HTTPServiceUnavailable, "too many live connections")
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=1024)
        await ws.prepare(request)
        self._live.add(ws)

        def marks(db):
            return (db.execute("SELECT count(*), max(received_ms) FROM mailbox_routes")
                    .fetchone(), records.last_shown(db))
        try:
            routes, last = await self.agent.runner.db(marks)
            reader = asyncio.ensure_future(ws.receive())
            while not ws.closed:
                done, _ = await asyncio.wait({reader}, timeout=LIVE_POLL_S)
                if done:  # the app sends nothing; a close (or anything) ends it
                    break
                now_routes, now_last = await self.agent.runner.db(marks)
                if now_routes != routes:
                    await ws.send_json({"topic": "cab", "route": {}})
                    routes = now_routes
                if now_last > last:
                    for m in await self.agent.runner.db(
                            lambda c, after=last: records.shown_messages(c, after)):
                        await ws.send_json({"topic": "cab", "message": m})
                    last = now_last
            reader.cancel()
        finally:
            self._live.discard(ws)
            with contextlib.suppress(Exception):
                await ws.close()
        return ws

    async def logout(self, request: web.Request) -> web.Response:
        await self._paired(request, write=True)
        return web.Response(status=204)
