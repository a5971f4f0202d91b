"""Every route of the running backend, anonymously and as each role (SQLite and PostgreSQL).

Routes come from `app.router.routes()` of the app `python -m backend` serves, so a route added
later is covered without touching this file: it must declare its access, anonymous callers
get 401 unless it is one of the few public ones, and a role below the declared one gets 403.
"""

from __future__ import annotations

import re

import aiohttp
from aiohttp import web

from backend.authz import DRIVER, PUBLIC, SIGNED_IN, Role, access_of, requires
from backend.hub import Hub
from backend.web import make_app
from tests.authhelp import add_user_token, bearer

# the only routes open without a login: they hold no data
ALLOWED_PUBLIC = {"/", "/login", "/api/login", "/healthz", "/static", "/password", "/driver/",
                  "/driver/sw.js", "/driver/manifest.webmanifest"}
# public to the middleware, but checking a secret of their own: no user credential opens
# them, and without it they answer 401
SELF_AUTHENTICATED = {
    "/metrics",  # the scraper's metrics_token
    "/api/integrations/{source}/events",  # the HMAC signature over the body (docs/customers.md)
}
# a customer's tracking link (docs/customers.md): the random token in the path is the
# credential, so a token that names no link answers 404, with or without a login
TOKEN_IN_PATH = {"/t/{token}", "/t/{token}/view", "/t/{token}/events", "/t/{token}/pod/{file}"}
# declarations this helper's routes must keep (other routes: whatever they declare, enforced)
EXPECTED = {
    ("GET", "/api/vehicles"): Role.VIEWER,
    ("GET", "/api/vehicles/{vehicle}/route"): Role.VIEWER,
    ("GET", "/api/vehicles/{vehicle}/trips"): Role.VIEWER,
    ("GET", "/api/geofences"): Role.VIEWER,
    ("GET", "/ws"): Role.VIEWER,
    ("POST", "/api/vehicles/{vehicle}/commands"): Role.DISPATCHER,
    ("GET", "/api/commands/{id}"): Role.VIEWER,
    ("GET", "/api/status"): Role.ADMIN,
    ("GET", "/api/me"): SIGNED_IN,
    ("POST", "/api/logout"): SIGNED_IN,
    ("GET", "/api/users"): Role.ADMIN,
    ("POST", "/api/users"): Role.ADMIN,
    ("PATCH", "/api/users/{name}"): Role.ADMIN,
    ("POST", "/api/users/{name}/tokens"): Role.ADMIN,
    ("DELETE", "/api/users/{name}/tokens/{id}"): Role.ADMIN,
    ("GET", "/api/groups"): Role.ADMIN,
    ("POST", "/api/groups"): Role.ADMIN,
    ("PUT", "/api/groups/{name}"): Role.ADMIN,
    ("DELETE", "/api/groups/{name}"): Role.ADMIN,
    ("GET", "/api/audit"): Role.ADMIN,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/login"): PUBLIC,
    ("POST", "/api/login"): PUBLIC,
    ("GET", "/"): PUBLIC,
    ("GET", "/password"): PUBLIC,  # the page: its form needs a session and the password
    ("POST", "/api/me/password"): SIGNED_IN,
    ("GET", "/api/driver/shift"): DRIVER,
    ("POST", "/api/driver/actions"): DRIVER,
}


def _routes(app: web.Application) -> list[tuple[str, str, object]]:
    """(method, path template, declared access) of every route but HEAD (served as GET)."""
    out = []
    for route in app.router.routes():
        if route.method in ("HEAD", "*"):
            continue
        resource = route.resource
        if isinstance(resource, web.StaticResource):
            out.append((route.method, resource.canonical, PUBLIC))
        else:
            out.append((route.method, resource.canonical, access_of(route.handler)))
    return out


def _concrete(method: str, template: str) -> str:
    if template == "/static":
        return "/static/map.js"
    return re.sub(r"\{[^}]+\}", lambda m: "1" if "id" in m.group(0) else "nobody", template)


async def _status(http, method: str, path: str, headers: dict | None = None) -> int:
    body = None if method in ("GET", "DELETE") else {}
    async with http.request(method, path, json=body, headers=headers or {},
                            allow_redirects=False) as r:
        return r.status


async def test_every_route_anonymously_and_as_each_role(running):
    routes = _routes(running.backend.app)
    assert len(routes) >= len(EXPECTED)
    undeclared = [(m, p) for m, p, a in routes if a is None]
    assert undeclared == [], f"routes without @requires/@public: {undeclared}"
    public = {p for _, p, a in routes if a == PUBLIC}
    assert public <= ALLOWED_PUBLIC | SELF_AUTHENTICATED | TOKEN_IN_PATH, \
        f"public beyond the data-free: {public}"
    declared = {(m, p): a for m, p, a in routes}
    for key, want in EXPECTED.items():
        assert declared.get(key) == want, f"{key}: declares {declared.get(key)}, want {want}"
    from backend.dispatch.model import Driver

    token = await add_user_token(running.backend.store, "drv", "admin")
    await running.backend.store.put_catalogue(Driver("d1", "D", "drv"), 0)
    driver = bearer(token)  # an admin account linked as a driver: a driver login only
    async with aiohttp.ClientSession(running.url) as http:
        for method, template, access in routes:
            path = _concrete(method, template)
            anonymous = await _status(http, method, path)
            if template in SELF_AUTHENTICATED:
                assert anonymous == 401, f"{method} {path}: {anonymous}"
                for role in Role:
                    got = await _status(http, method, path, bearer(running.tokens[role.label]))
                    assert got == 401, f"{role.label} {method} {path}: {got}"
                continue
            if template in TOKEN_IN_PATH:
                # one try anonymously, one as admin: the link limiter allows 10 unknown tokens
                assert anonymous == 404, f"{method} {path}: {anonymous}"
                got = await _status(http, method, path, bearer(running.tokens["admin"]))
                assert got == 404, f"admin {method} {path}: {got}"
                continue
            if access == PUBLIC:
                assert anonymous not in (401, 403), f"{method} {path}: {anonymous}"
                continue
            assert anonymous == 401, f"anonymous {method} {path}: {anonymous}"
            # a wrong token is no better than none
            assert await _status(http, method, path, bearer("not-a-token")) == 401
            for role in Role:
                got = await _status(http, method, path, bearer(running.tokens[role.label]))
                if access == DRIVER or (access != SIGNED_IN and role < access):
                    assert got == 403, f"{role.label} {method} {path}: {got}"
                else:
                    assert got not in (401, 403), f"{role.label} {method} {path}: {got}"
            # a driver login: its own app and login only, 403 everywhere else
            got = await _status(http, method, path, driver)
            if access in (DRIVER, SIGNED_IN):
                assert got not in (401, 403), f"driver {method} {path}: {got}"
            else:
                assert got == 403, f"driver {method} {path}: {got}"


async def test_unknown_paths_say_401_to_strangers_and_404_to_users(running):
    async with aiohttp.ClientSession(running.url) as http:
        assert await _status(http, "GET", "/api/nothing-here") == 401
        assert await _status(http, "GET", "/api/nothing-here",
                             bearer(running.tokens["viewer"])) == 404


async def test_a_handler_that_declares_nothing_is_refused(tmp_path):
    """Deny by default: even an admin gets 403 from an undeclared handler."""
    from aiohttp.test_utils import TestClient, TestServer

    from backend.store import open_store

    store = open_store(f"sqlite://{tmp_path / 'f.db'}")
    await store.open()
    app = make_app(Hub(), store, lambda: {})

    async def forgotten(request):
        return web.json_response({"secret": 42})

    @requires(Role.VIEWER)
    async def declared(request):
        return web.json_response({"ok": True})

    app.router.add_get("/api/forgotten", forgotten)
    app.router.add_get("/api/declared", declared)
    token = await add_user_token(store, "root", "admin")
    try:
        async with TestClient(TestServer(app)) as client:
            assert (await client.get("/api/forgotten")).status == 401
            r = await client.get("/api/forgotten", headers=bearer(token))
            assert r.status == 403 and "secret" not in await r.text()
            assert (await client.get("/api/declared", headers=bearer(token))).status == 200
    finally:
        await store.close()
