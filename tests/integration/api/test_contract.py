"""The spec is the contract: the app serves exactly the spec's paths and methods, each handler
declares the role the spec states, and every operation's real answers validate."""

import hashlib
import hmac
import json
import re
import time

from aiohttp import web

from backend.alerts import AlertEngine
from backend.alerts.rules import RuleSet
from backend.api import spec
from backend.authz import access_of
from backend.store.base import StoredReading
from geostream.clock import wall_ms
from tests.authhelp import bearer
from tests.integration.api.apphelp import Api
from tests.integration.api.test_api import T0, seed

METHODS = {"get", "put", "post", "delete", "patch"}
# Spec paths not served by `make_app` (the check is exact both ways otherwise): /mcp is
# mounted on the same app by the running backend (backend/service.py), checked below.
NOT_YET_SERVED: set[tuple[str, str]] = set()
MOUNTED_BY_SERVICE = {("post", "/mcp")}


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
    assert set(ops) - set(routes) - NOT_YET_SERVED - MOUNTED_BY_SERVICE == set(), \
        "in the spec but not served"
    for key, handler in routes.items():
        if handler is None:  # static files: public, data-free
            assert ops[key]["x-fleet-role"] == "public"
            continue
        declared = access_of(handler)
        label = declared if isinstance(declared, str) else getattr(declared, "label", None)
        want = ops[key]["x-fleet-role"]
        assert label == ("public" if want == "metrics" else want), f"{key}: {label} ≠ {want}"


async def test_every_served_operation_is_exercised_and_validated(store_url):
    """One pass over the API as roles that may call each operation; apphelp validates each
    answer, and every served spec operation must have been called."""
    async with Api(store_url, metrics_token="scrape") as api:
        await seed(api)
        c = api.call
        square = {"type": "Feature", "properties": {"name": "Sq", "speed_limit_kmh": 30},
                  "geometry": {"type": "Polygon", "coordinates": [[[8, 50], [8.01, 50],
                                                                  [8.01, 50.01], [8, 50]]]}}
        await c("GET", "/", role=None, expect=200)
        await c("GET", "/healthz", role=None, expect=200)
        await c("GET", "/api/openapi.json", expect=200)
        await c("GET", "/api/status", role="admin", expect=200)
        await c("GET", "/metrics", role=None, headers={"Authorization": "Bearer scrape"},
                expect=200)
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
        await c("GET", "/api/vehicles/v1/commands/offered", expect=200)
        await c("POST", "/api/vehicles/v1/commands", role="dispatcher",
                body={"name": "restart"}, expect=409)  # v1 never advertised it
        await c("GET", f"/api/commands/{cmd['id']}", expect=200)
        await c("POST", "/api/vehicles/v1/services", role="dispatcher",
                body={"interval": "oil", "odometer_km": 1200, "work": "oil", "cost": 90},
                expect=201)
        await c("GET", "/api/vehicles/v1/services", expect=200)
        await c("GET", "/api/maintenance/due?state=all", expect=200)
        await c("GET", "/api/maintenance/dtcs", expect=200)
        await c("GET", "/api/maintenance/forecasts", expect=200)
        await c("GET", "/api/vehicles/v1/signals/EngSpeed?buckets=10", expect=200)
        await c("GET", "/api/driving/events?vehicle=v1", expect=200)
        await c("GET", "/api/driving/scorecards?format=csv", expect=200)
        await c("GET", "/api/fuel/consumption?by=day", expect=200)
        await c("GET", "/api/fuel/events?format=csv", expect=200)
        await c("GET", "/api/vehicles/v1/dtcs?format=csv", expect=200)
        _, made = await c("POST", "/api/notifications/subscriptions", role="dispatcher",
                          body={"events": ["alert"], "channel": "email",
                                "target": "ops@example.com"}, expect=201)
        sub = made["subscription"]["id"]
        await c("GET", "/api/notifications/subscriptions", role="dispatcher", expect=200)
        await c("GET", f"/api/notifications/subscriptions/{sub}/deliveries", role="dispatcher",
                expect=200)
        await c("DELETE", f"/api/notifications/subscriptions/{sub}", role="dispatcher",
                expect=204)
        # without a planner (tests/integration/api/test_planning.py mounts one): 503, as specified
        shift = {"shift": {"start_ms": T0, "end_ms": T0 + 3_600_000}}
        await c("POST", "/api/dispatch/plan", role="dispatcher", body=shift, expect=503)
        await c("DELETE", "/api/dispatch/plan", role="dispatcher", expect=503)
        await c("GET", "/api/dispatch/proposals", expect=503)
        await c("POST", "/api/jobs/j1/move", role="dispatcher", body={"route_id": "r1"},
                expect=503)
        await c("GET", "/api/dispatch/proposals/p1", expect=503)
        await c("POST", "/api/dispatch/proposals/p1/approve", role="dispatcher", expect=503)
        # dead letters of vehicle actions (test_action_letters_api.py mounts the applier)
        await c("GET", "/api/action-letters?state=dead", role="admin", expect=200)
        await c("POST", "/api/action-letters/v1/1/1/replay", role="admin", expect=503)
        async with api.client.get("/static/app/app.js") as resp:
            assert resp.status == 200
        api.checked.add(("get", "/static/{path}"))
        token = await api.token("viewer")
        async with api.client.ws_connect("/ws", headers=bearer(token)) as ws:
            await ws.send_json({"op": "subscribe", "topic": "live_updates:all"})
            assert (await ws.receive_json(timeout=5))["event"] == "subscribed"
        api.checked.add(("get", "/ws"))
        await exercise_accounts(api)
        await exercise_alerts_and_map(api)
        await exercise_dispatch(api)
        await exercise_driver(api)
        routes = served(api.app)
    missing = set(routes) - {(m, _shape(p)) for m, p in api.checked}
    assert missing == set(), f"served operations never exercised: {sorted(missing)}"


async def exercise_accounts(api: Api) -> None:
    """The auth side's routes (backend/auth/), as admin and then as a logged-in user."""
    c = api.call
    password = "a long enough passphrase"
    await c("GET", "/api/users", role="admin", expect=200)
    await c("POST", "/api/users", role="admin", expect=201,
            body={"name": "alice", "role": "viewer", "password": password})
    await c("PATCH", "/api/users/alice", role="admin", body={"role": "dispatcher"}, expect=200)
    _, tok = await c("POST", "/api/users/alice/tokens", role="admin", body={"label": "ci"},
                     expect=201)
    await c("DELETE", f"/api/users/alice/tokens/{tok['id']}", role="admin", expect=204)
    await c("GET", "/api/groups", role="admin", expect=200)
    await c("POST", "/api/groups", role="admin", body={"name": "north", "vehicles": ["v1"]},
            expect=201)
    await c("PUT", "/api/groups/north", role="admin", body={"vehicles": ["v1", "v2"],
                                                            "members": ["alice"]}, expect=200)
    await c("DELETE", "/api/groups/north", role="admin", expect=204)
    _, trail = await c("GET", "/api/audit", role="admin", expect=200)
    assert {"geofence.create", "command.send", "vehicle.create"} <= {
        e["action"] for e in trail["entries"]}
    await c("GET", "/login", role=None, expect=200)
    _, session = await c("POST", "/api/login", role=None, expect=200,
                         body={"username": "alice", "password": password})
    _, me = await c("GET", "/api/me", role=None, expect=200)  # the session cookie
    assert me["user"]["name"] == "alice" and me["user"]["role"] == "dispatcher"
    await c("GET", "/password", role=None, expect=200)
    _, session = await c("POST", "/api/me/password", role=None, expect=200,
                         headers={"X-CSRF-Token": session["csrf_token"]},
                         body={"current_password": password,
                               "new_password": "another long passphrase"})
    await c("POST", "/api/logout", role=None, expect=204,
            headers={"X-CSRF-Token": session["csrf_token"]})
    await c("GET", "/api/me", role=None, expect=401)


async def exercise_alerts_and_map(api: Api) -> None:
    """Alerts (backend/alerts/: a real engine raises an overspeed) and the map settings."""
    engine = AlertEngine(api.store, RuleSet(), api.hub.publish_alert)
    await engine.start(T0)
    fast = [StoredReading(vehicle_id="v2", epoch=2, seq=i, time_ms=T0 + 3_600_000 + i * 1000,
                          kind="pos", lat=50.0, lon=8.0 + i * 1e-4, speed_kmh=140.0,
                          received_ms=T0) for i in range(30)]
    await api.store.write(fast, [])
    await engine.on_committed(fast, T0 + 3_700_000)
    _, alerts = await api.call("GET", "/api/alerts?state=open", expect=200)
    assert [(a["rule"], a["vehicle"]) for a in alerts["alerts"]] == [("overspeed", "v2")]
    _, v2 = await api.call("GET", "/api/vehicles/v2", expect=200)
    assert v2["open_alerts"] == 1
    await api.call("POST", f"/api/alerts/{alerts['alerts'][0]['id']}/ack", role="dispatcher",
                   expect=200)
    await api.call("GET", "/api/alert-rules", expect=200)
    await api.call("GET", "/api/map/config", expect=200)
    # no overlay or PMTiles configured here: both answer 404
    await api.call("GET", "/api/map/overlay.geojson", expect=404)
    await api.call("GET", "/api/map/basemap.pmtiles", expect=404)


async def exercise_driver(api: Api) -> None:
    """The driver app and what dispatchers see of it (tests/integration/api/test_driver_api.py
    checks their behaviour)."""
    import io

    from PIL import Image

    c, d = api.call, "dispatcher"
    drv = bearer(await api.driver_token("dx"))
    now = wall_ms()
    await c("POST", "/api/jobs", role=d, body={"id": "jx", "place": {"lat": 50, "lon": 8}},
            expect=201)
    await c("PUT", "/api/routes/rx", role=d, expect=201, body={
        "vehicle_id": "v1", "shift": {"start_ms": now - 3_600_000, "end_ms": now + 3_600_000},
        "start_depot": "dep", "stops": [{"job_id": "jx"}], "status": "dispatched",
        "driver_id": "dx"})
    await c("GET", "/driver/", role=None, headers=drv, expect=200)
    await c("GET", "/driver/sw.js", role=None, expect=200)
    await c("GET", "/driver/manifest.webmanifest", role=None, expect=200)
    await c("GET", "/api/driver/shift", role=None, headers=drv, expect=200)
    png = io.BytesIO()
    Image.new("L", (40, 20), 255).save(png, "PNG")
    _, f = await c("POST", "/api/driver/files?kind=signature&job=jx", role=None,
                   body=png.getvalue(), headers={**drv, "Content-Type": "image/png"},
                   expect=201)
    await c("GET", f"/api/driver/files/{f['id']}", role=None, headers=drv, expect=200)
    await c("GET", f"/api/pod-files/{f['id']}", expect=200)
    await c("POST", "/api/driver/actions", role=None, headers=drv, expect=200, body={
        "key": "contract-1", "device_id": "contract-dev", "device_seq": 1,
        "kind": "complete", "job_id": "jx", "route_id": "rx",
        "pod": {"recipient": "A", "signature": f["id"]}})
    await c("GET", "/api/driver/actions", role=None, headers=drv, expect=200)
    await c("GET", "/api/driver/messages", role=None, headers=drv, expect=200)
    await c("GET", "/api/driver-actions?conflicts=false", expect=200)
    await c("POST", "/api/vehicles/v1/messages", role=d, body={"text": "hello"}, expect=201)
    await c("GET", "/api/vehicles/v1/messages", expect=200)
    async with api.client.ws_connect("/api/driver/live", headers=drv):
        pass
    api.checked.add(("get", "/api/driver/live"))


async def exercise_dispatch(api: Api) -> None:
    """Jobs, catalogues and routes (backend/api/dispatch.py; tests/integration/dispatch/test_api.py
    checks their behaviour)."""
    c = api.call
    d = "dispatcher"
    place = {"lat": 50.005, "lon": 8.005}
    await c("PUT", "/api/vehicle-types/van", role=d, body={"name": "Van",
            "capacity": {"kg": 800}, "skills": ["fridge"]}, expect=201)
    await c("GET", "/api/vehicle-types", expect=200)
    await c("DELETE", "/api/vehicle-types/van", role=d, expect=204)
    await c("PUT", "/api/drivers/d1", role=d, body={"display_name": "Aino"}, expect=201)
    await c("GET", "/api/drivers", expect=200)
    await c("DELETE", "/api/drivers/d1", role=d, expect=204)
    await c("PUT", "/api/depots/dep", role=d, body={"name": "Depot", "place": place},
            expect=201)
    await c("GET", "/api/depots", expect=200)
    await c("DELETE", "/api/depots/dep", role=d, expect=204)
    await c("PUT", "/api/dispatch-vehicles/v1", role=d, body={"type_id": "van"}, expect=200)
    await c("GET", "/api/dispatch-vehicles", expect=200)
    await c("POST", "/api/jobs", role=d, body={"id": "j1", "place": place}, expect=201)
    await c("POST", "/api/jobs/import", role=d, csv="id,lat,lon\nj2,50.0,8.0\n", expect=200)
    await c("POST", "/api/jobs/import", role=d, csv="id,lat,lon\nj3,95,8.0\n", expect=400)
    await c("GET", "/api/jobs?state=unassigned", expect=200)
    await c("GET", "/api/jobs/j1", expect=200)
    await c("PUT", "/api/jobs/j1", role=d, body={"place": place, "service_s": 60},
            expect=200)
    route = {"vehicle_id": "v1", "shift": {"start_ms": T0, "end_ms": T0 + 8 * 3_600_000},
             "start_depot": "dep", "stops": [{"job_id": "j1"}]}
    await c("PUT", "/api/routes/r1", role=d, body=route, expect=201)
    await c("GET", "/api/routes", expect=200)
    await c("GET", "/api/routes/r1", expect=200)
    await c("POST", "/api/jobs/j1/transitions", role=d, body={"to": "en_route"}, expect=200)
    _, link = await c("POST", "/api/jobs/j1/links", role=d, body={"grace_s": 60}, expect=201)
    await c("GET", "/api/jobs/j1/links", expect=200)
    await c("GET", f"/t/{link['token']}", role=None, expect=200)
    await c("GET", f"/t/{link['token']}/view", role=None, expect=200)
    await c("GET", f"/t/{link['token']}/pod/f{'0' * 40}", role=None, expect=404)
    await c("DELETE", f"/api/links/{link['id']}", role=d, expect=200)
    await c("GET", f"/t/{link['token']}/events", role=None, expect=410)
    _, src = await c("PUT", "/api/integrations/erp", role="admin", expect=201)
    await c("GET", "/api/integrations", role="admin", expect=200)
    event = {"id": "ev1", "type": "job.create", "job": {"id": "j9", "place": place}}
    await c("POST", "/api/integrations/erp/events", role=None, body=event, expect=201,
            headers=signed(src["secret"], json.dumps(event).encode()))
    await c("DELETE", "/api/integrations/erp", role="admin", expect=204)
    now = int(time.time() * 1000)
    await c("GET", f"/api/export/jobs?from_ms={now - 3_600_000}&to_ms={now + 60_000}"
            "&format=geojson", expect=200)
    await c("GET", "/api/jobs/j1/transitions", expect=200)
    await c("POST", "/api/jobs/j2/cancel", role=d, expect=200)


def signed(secret: str, body: bytes) -> dict:
    """A webhook's signature headers, as docs/customers.md tells a sender to make them."""
    ts = str(int(time.time()))
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Fleet-Timestamp": ts, "X-Fleet-Signature": f"v1={mac}"}


def _mount_mcp(app, store) -> None:
    from backend.config import BackendConfig
    from backend.mcp.http import add_mcp_routes
    from backend.mcp.tools import FleetTools

    add_mcp_routes(app, FleetTools(store, RuleSet(), BackendConfig().maintenance_config()))


async def test_mcp_is_served_as_the_spec_says(tmp_path):
    """/mcp (mounted by the running backend on the same app) declares the spec's role, and
    its answers (401, a JSON-RPC answer) validate against the spec."""
    from backend.mcp.http import PATH, _Resource

    [op] = [specified()[key] for key in MOUNTED_BY_SERVICE]
    assert PATH == "/mcp" and access_of(_Resource._handle).label == op["x-fleet-role"]
    async with Api(f"sqlite://{tmp_path / 'f.db'}", mount=_mount_mcp) as api:
        body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "contract-test", "version": "1"}}}
        accept = {"Accept": "application/json, text/event-stream"}
        await api.call("POST", "/mcp", role=None, body=body, headers=accept, expect=401)
        _, answer = await api.call("POST", "/mcp", body=body, headers=accept, expect=200)
        assert answer["id"] == 1 and "serverInfo" in answer["result"], answer
    assert ("post", "/mcp") in api.checked
