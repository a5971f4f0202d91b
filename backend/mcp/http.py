"""The streamable-HTTP MCP endpoint, mounted in the backend's aiohttp app at `/mcp`.

The SDK's endpoint is an ASGI (Starlette) app; aiohttp-asgi runs it inside our aiohttp app, so
requests pass the backend's own access middleware first: the resource's handler declares
`@requires(Role.VIEWER)`, a request without a valid Bearer token gets 401 there, and the
resolved principal travels to the tools in the ASGI scope. Tools check stricter roles
themselves (send_command, acknowledge_alert: dispatcher). Stateless JSON mode: each POST
stands alone, so no MCP session outlives its token's check.

The SDK and what it brings (pydantic, starlette: 1.7 s of imports on a 2-core host, tens of
seconds in an emulated VM, paid with the event loop blocked) load on the first request that
passed the access check, not when the backend starts: a fleet that never asks pays nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web
from aiohttp_asgi import ASGIResource
from aiohttp_asgi.resource import ASGIContext, ASGIMatchInfo

from ..authz import PRINCIPAL, Role, requires
from .tools import FleetTools

log = logging.getLogger("backend.mcp")

PATH = "/mcp"
SCOPE_KEY = "fleet.principal"  # where the principal travels to the tools in the ASGI scope
# Stateless JSON mode takes only POSTs (no SSE stream to GET, no session to DELETE).
METHODS = ("POST",)


def envelope_problem(body: bytes) -> str | None:
    """Why `body` is no JSON-RPC 2.0 request or notification (backend/openapi.yaml /mcp), or
    None. The SDK's own parser is laxer (it answers 202 to an object it cannot read), so the
    envelope is checked here and the SDK decides the rest."""
    try:
        message = json.loads(body)
    except ValueError:
        return "the body is not JSON"
    if not isinstance(message, dict):
        return "expected one JSON-RPC 2.0 message (an object)"
    if message.get("jsonrpc") != "2.0" or not isinstance(message.get("method"), str):
        return 'expected {"jsonrpc": "2.0", "method": …}'
    if "id" in message and (isinstance(message["id"], bool)
                            or not isinstance(message["id"], int | str)):
        return "id must be an integer or a string"
    if message.get("params") is not None and not isinstance(message["params"], dict):
        return "params must be an object"
    return None


class _Context(ASGIContext):
    def __init__(self, *args, body: bytes, **kwargs):
        super().__init__(*args, **kwargs)
        self._body = body

    @property
    def scope(self):
        scope = super().scope
        cast(dict, scope)[SCOPE_KEY] = self.request[PRINCIPAL]  # our key beside ASGI's own
        return scope

    async def on_receive(self):
        """The body, read and checked by `_handle` already, in one message."""
        return {"type": "http.request", "body": self._body, "more_body": False}


class LazyAsgi:
    """An ASGI app standing for the SDK's: the real one is built by `build` and started (its
    lifespan: the session manager) on the first request, and stopped with the backend if it
    was ever started. A start that fails (or whose request is cancelled meanwhile) leaves
    nothing behind: its lifespan task is cancelled and awaited, and the next request builds
    and starts afresh, on queues of its own."""

    def __init__(self, build: Callable[[], Any]):
        self._build = build
        self._app: Any = None
        self._lock = asyncio.Lock()
        self._receives: asyncio.Queue = asyncio.Queue()
        self._sends: asyncio.Queue = asyncio.Queue()
        self._task: asyncio.Task | None = None

    @property
    def started(self) -> bool:
        return self._app is not None

    async def __call__(self, scope, receive, send) -> None:
        if self._app is None:
            async with self._lock:
                if self._app is None:
                    await self._start()
        await self._app(scope, receive, send)

    async def _start(self) -> None:
        """Build the app and run its lifespan's startup; on failure, undo both and raise (the
        request is answered 500 and aiohttp logs the traceback)."""
        self._receives, self._sends = asyncio.Queue(), asyncio.Queue()
        try:
            app = self._build()
            self._task = asyncio.get_running_loop().create_task(
                app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                    self._receives.get, self._sends.put), name="mcp-lifespan")
            await self._lifespan("startup")
        except BaseException as exc:
            task, self._task = self._task, None
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            if not isinstance(exc, asyncio.CancelledError):
                log.error("the MCP app failed to start (%s); the next /mcp request tries "
                          "again", exc)
            raise
        self._app = app

    async def _lifespan(self, event: str) -> None:
        """Send lifespan.`event` and wait for its `.complete` (the ASGI lifespan protocol)."""
        assert self._task is not None
        await self._receives.put({"type": f"lifespan.{event}"})
        reply = asyncio.ensure_future(self._sends.get())
        try:
            await asyncio.wait((reply, self._task), return_when=asyncio.FIRST_COMPLETED)
        finally:
            answered = reply.done()
            if not answered:
                reply.cancel()  # no getter left behind on the queue
        if not answered:
            self._task.result()  # the app's own error, if it raised
            raise RuntimeError(f"the MCP app ended during {event}")
        message = reply.result()
        if message["type"] != f"lifespan.{event}.complete":
            raise RuntimeError(f"the MCP app's {event} failed: {message.get('message', '')}")

    async def close(self, _app: web.Application | None = None) -> None:
        if self._app is None or self._task is None:
            return
        try:
            await self._lifespan("shutdown")
            await asyncio.wait_for(self._task, 10)
        finally:
            self._app = None


class _Resource(ASGIResource):
    def raw_match(self, path: str) -> bool:
        return path == PATH or path.startswith(PATH + "/")

    async def resolve(self, request: web.Request):
        if not self.raw_match(request.path):
            return None, set()
        if request.method not in METHODS:  # aiohttp answers 405 with `Allow: POST`
            return None, set(METHODS)
        return ASGIMatchInfo(self._handle), set(METHODS)

    @requires(Role.VIEWER)
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.content_type != "application/json":
            return _refuse("send application/json")
        body = await request.read()  # bounded by the app's client_max_size (1 MiB)
        problem = envelope_problem(body)
        if problem is not None:
            return _refuse(problem)
        return await _Context(self._asgi_app, request, "", body=body).get_response()


def _refuse(text: str) -> web.Response:
    """A JSON-RPC "invalid request" error, as the SDK words its own (400)."""
    return web.json_response({"jsonrpc": "2.0", "id": None,
                              "error": {"code": -32600, "message": text}}, status=400)


def add_mcp_routes(app: web.Application, tools: FleetTools) -> LazyAsgi:
    """/mcp in `app`; the SDK loads on its first request (`LazyAsgi`)."""

    def build():
        from mcp.server.transport_security import TransportSecuritySettings

        from .server import build_server

        # DNS-rebinding protection guards servers that trust ambient credentials (cookies, a
        # loopback address); this endpoint trusts only the Bearer token, which a rebinding
        # page cannot know, and the backend may sit behind any host name.
        return build_server(tools).streamable_http_app(
            streamable_http_path=PATH, stateless_http=True, json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))

    lazy = LazyAsgi(build)
    app.router.register_resource(_Resource(lazy, root_path=PATH))
    app.on_cleanup.append(lazy.close)
    return lazy
