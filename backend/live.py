"""WebSocket edge of the live hub (`GET /ws`, docs/protocol.md §9): moves JSON between a
browser and its `Subscriber`, and closes a client the hub gave up on, with the reason."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from aiohttp import WSCloseCode, WSMsgType, web

from .auth.middleware import origin_allowed, watch_session
from .authz import PRINCIPAL, Principal, Role, requires
from .hub import TICK_S, Hub, Subscriber, valid_topic

log = logging.getLogger(__name__)

HUB = web.AppKey("fleet.live_hub", Hub)
MAX_WS_MESSAGE = 4096  # browsers only send small subscribe/unsubscribe requests
HEARTBEAT_S = 20  # pings keep NAT/proxy mappings open and find dead peers
# How often a quiet connection re-checks whether it has become hopeless (hub.HOPELESS_S).
CHECK_EVERY_S = 1.0
# A client that cannot even take the close frame is cut off after this.
CLOSE_TIMEOUT_S = 2.0


@requires(Role.VIEWER)  # checked before the upgrade: 401 without a session or token
async def ws_handler(request: web.Request) -> web.StreamResponse:
    principal: Principal = request[PRINCIPAL]
    if principal.via == "session" and not origin_allowed(request):
        return web.json_response({"error": "origin not allowed"}, status=403)
    hub = request.app[HUB]
    # compress=False: permessage-deflate compresses every client's copy of every frame on its
    # own (bench/bench_webapp.py, 10,000 vehicles × 100 clients: p99 4.7 s); a client asks for
    # deflated batch frames instead (`"deflate": true`), compressed once per view
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_WS_MESSAGE,
                               compress=False)
    await ws.prepare(request)
    # subscribers seeing the same vehicles share batch frames
    sub = hub.new_subscriber(may_see=principal.may_see, view=_view(principal))
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(_send_loop(ws, sub, hub)),
             loop.create_task(_watch(ws, sub, hub, request)),
             # logout, expiry, revocation; a change of groups or role re-filters the feed
             loop.create_task(watch_session(
                 ws, request, lambda p: sub.refilter(p.may_see, hub.clock(), _view(p))))]
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                _handle_request(hub, sub, msg.data)
    finally:
        hub.remove(sub)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
    return ws


def _view(principal: Principal) -> tuple:
    """What a principal sees, as a hashable key (None: everything)."""
    return ("vehicles", principal.vehicles)


def _handle_request(hub: Hub, sub: Subscriber, text: str) -> None:
    now = hub.clock()
    try:
        req = json.loads(text)
        op, topic = req.get("op"), req.get("topic")
        batch, deflate = req.get("batch", False), req.get("deflate", False)
    except (ValueError, AttributeError):
        sub.put({"error": "expected a JSON object {op, topic}"}, now)
        return
    if not valid_topic(topic):
        sub.put({"error": f"unknown topic {str(topic)[:80]!r}"}, now)
    elif op == "subscribe" and not isinstance(batch, bool):
        sub.put({"error": "batch must be true or false"}, now)
    elif op == "subscribe" and not isinstance(deflate, bool):
        sub.put({"error": "deflate must be true or false"}, now)
    elif op == "subscribe":
        # refuses a vehicle the principal may not see
        hub.subscribe(sub, topic, batch=batch, deflate=deflate)
    elif op == "unsubscribe":
        hub.unsubscribe(sub, topic)
    else:
        sub.put({"error": f"unknown op {str(op)[:32]!r}"}, now)


async def _send_loop(ws: web.WebSocketResponse, sub: Subscriber, hub: Hub) -> None:
    while not ws.closed and sub.reason is None:
        await sub.ready.wait()
        try:
            for message in sub.drain(hub.clock()):
                data = sub.wire(message)
                # blocks while the client does not read (the transport's buffer is full)
                await (ws.send_bytes(data) if isinstance(data, bytes) else ws.send_str(data))
        except ConnectionResetError:  # the client went away mid-send: the handler ends it
            return


async def _watch(ws: web.WebSocketResponse, sub: Subscriber, hub: Hub,
                 request: web.Request) -> None:
    """Close the connection once the hub gives up on the subscriber."""
    while not sub.hopeless.is_set():
        try:
            async with asyncio.timeout(CHECK_EVERY_S):
                await sub.hopeless.wait()
        except TimeoutError:
            sub.check(hub.clock())
    log.info("live client %s disconnected: %s", request.remote, sub.reason)
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=sub.reason.encode()[:120])
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()


async def _ticker(hub: Hub) -> None:
    """Send the batch frames every `TICK_S` (hub.TICK_S gives the reason)."""
    while True:
        await asyncio.sleep(TICK_S)
        hub.flush()


def add_routes(app: web.Application, hub: Hub) -> None:
    app[HUB] = hub
    app.router.add_get("/ws", ws_handler)

    async def ticking(app: web.Application):
        task = asyncio.get_running_loop().create_task(_ticker(hub))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(ticking)
