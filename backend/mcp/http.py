"""The streamable-HTTP MCP endpoint, mounted in the backend's aiohttp app at `/mcp`.

The SDK's endpoint is an ASGI (Starlette) app; aiohttp-asgi runs it inside our aiohttp app, so
requests pass the backend's own access middleware first: the resource's handler declares
`@requires(Role.VIEWER)`, a request without a valid Bearer token gets 401 there, and the
resolved principal travels to the tools in the ASGI scope. Tools check stricter roles
themselves (send_command, acknowledge_alert: dispatcher). Stateless JSON mode: each POST
stands alone, so no MCP session outlives its token's check.
"""

from __future__ import annotations

from aiohttp import ClientRequest, web
from aiohttp_asgi import ASGIResource
from aiohttp_asgi.resource import ASGIContext, ASGIMatchInfo
from mcp.server.transport_security import TransportSecuritySettings

from ..authz import PRINCIPAL, Role, requires
from .server import SCOPE_KEY, build_server
from .tools import FleetTools

PATH = "/mcp"


class _Context(ASGIContext):
    @property
    def scope(self):
        scope = super().scope
        scope[SCOPE_KEY] = self.request[PRINCIPAL]
        return scope


class _Resource(ASGIResource):
    def raw_match(self, path: str) -> bool:
        return path == PATH or path.startswith(PATH + "/")

    async def resolve(self, request: web.Request):
        if not self.raw_match(request.path):
            return None, set()
        return ASGIMatchInfo(self._handle), ClientRequest.ALL_METHODS

    @requires(Role.VIEWER)
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        return await _Context(self._asgi_app, request, "").get_response()


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
