"""The spec is the contract: the app serves exactly the spec's paths and methods, each handler
declares the role the spec states, and every operation's real answers validate."""

import re

from aiohttp import web

from backend.api import spec
from backend.authz import PUBLIC, access_of

from .apphelp import Api
from .test_api import seed

METHODS = {"get", "put", "post", "delete", "patch"}
# Spec paths whose routes other parts of issue 12 add (auth, alerts, metrics): listed here
# until they are on main, so the check stays exact for everything else.
NOT_YET_SERVED = {
    ("get", "/login"), ("post", "/api/login"), ("post", "/api/logout"), ("get", "/api/me"),
    ("get", "/api/users"), ("post", "/api/users"), ("patch", "/api/users/{}"),
    ("post", "/api/users/{}/tokens"), ("delete", "/api/users/{}/tokens/{}"),
    ("get", "/api/groups"), ("post", "/api/groups"), ("put", "/api/groups/{}"),
    ("delete", "/api/groups/{}"), ("get", "/api/audit"),
    ("get", "/api/alerts"), ("post", "/api/alerts/{}/ack"), ("get", "/api/alert-rules"),
    ("get", "/metrics"),
}


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def served(app: web.Application) -> dict[tuple[str, str], object]:
    out = {}
    for resource in app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter") or ""
        if isinstance(resource, web.StaticResource):
            out[("get", _shape(info["prefix"] + "/{path}"))] = None
            continue
        for route in resource:
            if route.method.lower() in METHODS:
                out[(route.method.lower(), _shape(path))] = route.handler
    return out


def specified() -> dict[tuple[str, str], dict]:
    return {(m, _shape(p)): op for p, item in spec.document()["paths"].items()
            for m, op in item.items() if m in METHODS}


async def test_served_routes_are_the_spec_and_roles_match(tmp_path):
    async with Api(f"sqlite://{tmp_path / 'f.db'}") as api:
        routes = served(api.app)
    ops = specified()
    assert set(routes) - set(ops) == set(), "served but not in backend/openapi.yaml"
    assert set(ops) - set(routes) - NOT_YET_SERVED == set(), "in the spec but not served"
    for key, handler in routes.items():
        if handler is None:  # static files: public, data-free
            assert ops[key]["x-fleet-role"] == "public"
            continue
        declared = access_of(handler)
        label = "public" if declared == PUBLIC else getattr(declared, "label", None)
        want = ops[key]["x-fleet-role"]
        assert label == ("public" if want == "metrics" else want), f"{key}: {label} ≠ {want}"


async def test_every_served_operation_is_exercised_and_validated(tmp_path):
    """One pass over the API as roles that may call each operation; apphelp validates each
    answer, and every served spec operation must have been called."""
    async with Api(f"sqlite://{tmp_path / 'f.db'}") as api:
        await seed(api)
        c = api.call
        square = {"type": "Feature", "properties": {"name": "Sq", "speed_limit_kmh": 30},
                  "geometry": {"type": "Polygon", "coordinates": [[[8, 50], [8.01, 50],
                                                                  [8.01, 50.01], [8, 50]]]}}
        await c("GET", "/", role=None, expect=200)
        await c("GET", "/healthz", role=None, expect=200)
        await c("GET", "/api/openapi.json", expect=200)
        await c("GET", "/api/status", role="admin", expect=200)
        await c("GET", "/api/vehicles", expect=200)
        await c("POST", "/api/vehicles", role="admin", body={"id": "v9"}, expect=201)
        await c("GET", "/api/vehicles/v1", expect=200)
        await c("POST", "/api/vehicles/v9/revoke", role="admin", expect=200)
        await c("GET", "/api/vehicles/v1/route", expect=200)
        await c("GET", "/api/vehicles/v1/trips?day=2025-11-23", expect=200)
        await c("GET", "/api/vehicles/v1/geofence-entries", expect=200)
        await c("GET", "/api/geofences", expect=200)
        _, g = await c("POST", "/api/geofences", role="dispatcher", body=square, expect=201)
        await c("GET", f"/api/geofences/{g['id']}", expect=200)
        await c("PUT", f"/api/geofences/{g['id']}", role="dispatcher", body=square, expect=200)
        await c("GET", f"/api/geofences/{g['id']}/entries", expect=200)
        await c("GET", f"/api/geofences/{g['id']}/inside", expect=200)
        await c("DELETE", f"/api/geofences/{g['id']}", role="dispatcher", expect=204)
        _, cmd = await c("POST", "/api/vehicles/v1/commands", role="dispatcher",
                         body={"name": "ping"}, expect=202)
        await c("GET", "/api/vehicles/v1/commands", expect=200)
        await c("GET", f"/api/commands/{cmd['id']}", expect=200)
        async with api.client.get("/static/map.js") as resp:
            assert resp.status == 200
        api.checked.add(("get", "/static/{path}"))
        async with api.client.ws_connect("/ws", headers={"X-Test-Role": "viewer"}) as ws:
            await ws.send_json({"op": "subscribe", "topic": "live_updates:all"})
            assert (await ws.receive_json(timeout=5))["event"] == "subscribed"
        api.checked.add(("get", "/ws"))
        routes = served(api.app)
    missing = set(routes) - {(m, _shape(p)) for m, p in api.checked}
    assert missing == set(), f"served operations never exercised: {sorted(missing)}"
