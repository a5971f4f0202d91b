"""The streamable-HTTP MCP endpoint, mounted in the backend's aiohttp app at `/mcp`.

The SDK's endpoint is an ASGI (Starlette) app; aiohttp-asgi runs it inside our aiohttp app, so
requests pass the backend's own access middleware first: the resource's handler declares
`@requires(Role.VIEWER)`, a request without a valid Bearer token gets 401 there, and the
resolved principal travels to the tools in the ASGI scope. Tools check stricter roles
themselves (send_command, acknowledge_alert: dispatcher). Stateless JSON mode: each POST
stands alone, so no MCP session outlives its token's check.
"""

from __future__ import annotations

import json

from aiohttp import web
from aiohttp_asgi import ASGIResource
from aiohttp_asgi.resource import ASGIContext, ASGIMatchInfo
from mcp.server.transport_security import TransportSecuritySettings

from ..authz import PRINCIPAL, Role, requires
from .server import SCOPE_KEY, build_server
from .tools import FleetTools

PATH = "/mcp"
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
        scope[SCOPE_KEY] = self.request[PRINCIPAL]
        return scope

    async def on_receive(self):
        """The body, read and checked by `_handle` already, in one message."""
        return {"type": "http.request", "body": self._body, "more_body": False}


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


def add_mcp_routes(app: web.Application, tools: FleetTools) -> None:
    server = build_server(tools)
    # DNS-rebinding protection guards servers that trust ambient credentials (cookies, a
    # loopback address); this endpoint trusts only the Bearer token, which a rebinding page
    # cannot know, and the backend may sit behind any host name.
    asgi = server.streamable_http_app(
        streamable_http_path=PATH, stateless_http=True, json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
    resource = _Resource(asgi, root_path=PATH)
    app.router.register_resource(resource)
    resource.lifespan_mount(app)
