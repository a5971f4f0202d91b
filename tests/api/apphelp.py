"""A real backend HTTP app on a real store, called as a given role, with every answer checked
against backend/openapi.yaml by openapi-core."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest as SpecRequest  # plain data holders, no mocking
from openapi_core.testing import MockResponse as SpecResponse

from backend.api import spec
from backend.authz import PRINCIPAL, PUBLIC, Principal, Role, access_of
from backend.hub import Hub
from backend.store import open_store
from backend.web import make_app

_OPENAPI = OpenAPI.from_dict(spec.document())


def principal_middleware():
    """Stand-in for backend/auth's access middleware: the principal comes from test headers.
    It applies the same rule (401 anonymous, 403 below the declared role, deny undeclared)."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        need = access_of(handler)
        role = request.headers.get("X-Test-Role")
        vehicles = request.headers.get("X-Test-Vehicles")
        p = None if role is None else Principal(
            1, "t", Role.parse(role),
            None if vehicles is None else frozenset(filter(None, vehicles.split(","))), "token")
        request[PRINCIPAL] = p
        if need is None and request.match_info.route.resource is not None and not str(
                request.path).startswith("/static/"):
            return web.json_response({"error": "undeclared"}, status=403)
        if need not in (None, PUBLIC):
            if p is None:
                return web.json_response({"error": "authentication required"}, status=401)
            if not p.may(need):
                return web.json_response({"error": "forbidden"}, status=403)
        return await handler(request)

    return middleware


class Api:
    """`await api.call(method, path, role=…)` → (status, body); validates against the spec."""

    def __init__(self, url: str):
        self.url = url
        self.store = open_store(url)
        self.hub = Hub()
        self.client: TestClient | None = None
        self.checked: set[tuple[str, str]] = set()  # (method, spec path) validated

    async def __aenter__(self) -> Api:
        await self.store.open()
        app = make_app(self.hub, self.store, lambda: {"gateway": {}, "vehicles_connected": [],
                                                       "writer": {}, "hub": {}})
        app.middlewares.append(principal_middleware())
        self.app = app
        self.client = TestClient(TestServer(app))
        await self.client.start_server()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.close()
        await self.store.close()

    async def call(self, method: str, path: str, role: str | None = "viewer",
                   vehicles: list[str] | None = None, body=None, expect: int | None = None,
                   raw: bool = False):
        headers = {}
        if role is not None:
            headers["X-Test-Role"] = role
        if vehicles is not None:
            headers["X-Test-Vehicles"] = ",".join(vehicles)
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.client.request(method, path, data=data, headers=headers) as resp:
            payload = await resp.read()
            status, ctype = resp.status, resp.content_type
            resp_headers = dict(resp.headers)
        self.validate(method, path, data, status, ctype, payload, resp_headers)
        if expect is not None:
            assert status == expect, f"{method} {path}: {status} {payload[:300]!r}"
        if raw or not payload:
            return status, payload.decode()
        return status, json.loads(payload) if ctype.endswith("json") else payload.decode()

    def validate(self, method, path, data, status, ctype, payload, headers) -> None:
        parts = urlsplit(path)
        req = SpecRequest("http://127.0.0.1", method, parts.path,
                          args=dict(parse_qsl(parts.query)), data=data,
                          content_type="application/json")
        text = ctype.startswith("text/")  # openapi-core reads text bodies as str
        res = SpecResponse(payload.decode() if text else payload, status_code=status,
                           headers=headers, content_type=ctype or "application/json")
        result = _OPENAPI.unmarshal_response(req, res)
        if result.errors:
            raise AssertionError(f"{method} {path} → {status}: {result.errors!r} "
                                 f"{[repr(e.__cause__) for e in result.errors]}"
                                 f" {payload[:300]!r}")
        self.checked.add((method.lower(), spec_path(parts.path)))


def spec_path(path: str) -> str:
    """The spec path template a concrete path falls under."""
    p = path.strip("/").split("/")
    for template in spec.document()["paths"]:
        t = template.strip("/").split("/")
        if len(t) == len(p) and all(a == b or a.startswith("{")
                                    for a, b in zip(t, p, strict=True)):
            return template
    return path
