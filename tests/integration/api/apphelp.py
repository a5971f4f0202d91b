"""A real backend HTTP app on a real store, called as a real user of a given role (an API token
through the real access middleware; optionally in a group that sees only some vehicles), with
every answer checked against backend/openapi.yaml by openapi-core."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

from aiohttp.test_utils import TestClient, TestServer
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest as SpecRequest  # plain data holders, no mocking
from openapi_core.testing import MockResponse as SpecResponse

from backend.api import spec
from backend.hub import Hub
from backend.store import open_store
from backend.web import make_app
from tests.authhelp import add_user_token, bearer

# GeoJSON answers (the export) are JSON: validated as such
_OPENAPI = OpenAPI.from_dict(spec.document(), config=Config(
    extra_media_type_deserializers={"application/geo+json": json.loads}))


class Api:
    """`await api.call(method, path, role=…)` → (status, body); validates against the spec."""

    def __init__(self, url: str, hub: Hub | None = None, metrics_token: str = "",
                 mount=None):
        self.url = url
        self.mount = mount  # callable(app, store): more routes, as the running backend adds
        self.metrics_token = metrics_token
        self.store = open_store(url)
        self.hub = hub or Hub()
        self.client: TestClient | None = None
        self.checked: set[tuple[str, str]] = set()  # (method, spec path) validated
        self._tokens: dict[tuple[str, tuple[str, ...] | None], str] = {}

    async def __aenter__(self) -> Api:
        await self.store.open()
        app = make_app(self.hub, self.store, lambda: {"gateway": {}, "vehicles_connected": [],
                                                       "writer": {}, "hub": {}},
                       metrics_token=self.metrics_token)
        self.app = app
        if self.mount is not None:
            self.mount(app, self.store)
        self.client = TestClient(TestServer(app))
        await self.client.start_server()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.close()
        await self.store.close()

    async def token(self, role: str, vehicles: list[str] | None = None) -> str:
        """An API token of a user with `role`; with `vehicles`, the user is the only member of
        a group of exactly those vehicles (so sees no others)."""
        key = (role, None if vehicles is None else tuple(sorted(vehicles)))
        if key not in self._tokens:
            name = f"{role}{len(self._tokens)}"
            self._tokens[key] = await add_user_token(self.store, name, role,
                                                     all_vehicles=vehicles is None)
            if vehicles is not None:
                await self.store.put_group(f"g-{name}", vehicles=list(vehicles), members=[name])
        return self._tokens[key]

    async def driver_token(self, driver_id: str, name: str | None = None,
                           role: str = "viewer") -> str:
        """An API token of a driver login: the account `name` (default `drv-<id>`), linked
        from the drivers row `driver_id` (created if missing)."""
        from backend.dispatch.model import Driver

        name = name or f"drv-{driver_id}"
        token = await add_user_token(self.store, name, role)
        known = {d.id: d for d in await self.store.catalogue("drivers")}
        d = known.get(driver_id) or Driver(driver_id, f"Driver {driver_id}")
        if d.account_id != name:
            await self.store.put_catalogue(Driver(d.id, d.display_name, name, d.phone,
                                                  d.skills, d.active), 0)
        return token

    async def call(self, method: str, path: str, role: str | None = "viewer",
                   vehicles: list[str] | None = None, body=None, expect: int | None = None,
                   raw: bool = False, headers: dict | None = None, csv: str | None = None):
        """`csv`: a text/csv body instead of JSON `body`."""
        headers = {**(headers or {}),
                   **({} if role is None else bearer(await self.token(role, vehicles)))}
        data = body if isinstance(body, bytes) else None
        if data is not None:  # raw bytes (an image), its type in `headers`
            body = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if csv is not None:
            data = csv.encode()
            headers["Content-Type"] = "text/csv"
        async with self.client.request(method, path, data=data, headers=headers) as resp:
            payload = await resp.read()
            status, ctype = resp.status, resp.content_type
            resp_headers = dict(resp.headers)
        self.validate(method, path, data, status, ctype, payload, resp_headers,
                      headers.get("Content-Type", "application/json"))
        if expect is not None:
            assert status == expect, f"{method} {path}: {status} {payload[:300]!r}"
        if ctype.startswith("image/"):
            return status, payload
        if raw or not payload:
            return status, payload.decode()
        return status, json.loads(payload) if ctype.endswith("json") else payload.decode()

    def validate(self, method, path, data, status, ctype, payload, headers,
                 req_ctype: str = "application/json") -> None:
        parts = urlsplit(path)
        req = SpecRequest("http://127.0.0.1", method, parts.path,
                          args=dict(parse_qsl(parts.query)), data=data,
                          content_type=req_ctype)
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
