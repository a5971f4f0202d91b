"""GET /api/alerts, POST /api/alerts/{id}/ack, GET /api/alert-rules behind the real access
middleware, with real users and tokens; group filtering; the audit entry of an ack."""

import asyncio

from aiohttp.test_utils import TestClient, TestServer

from backend.alerts import parse_rules
from backend.alerts.evaluate import Episode
from backend.alerts.routes import add_alert_routes
from backend.audit import audit
from backend.hub import ALERTS, Hub, Subscriber
from backend.web import make_app
from tests.authhelp import add_user_token, bearer


async def _client(store, hub):
    app = make_app(hub, store, lambda: {})
    add_alert_routes(app, store, parse_rules({}), hub.publish_alert, audit)
    return TestClient(TestServer(app))


async def _seed(store):
    eps = [Episode("overspeed", "truck-1", 1000, None, "", 101.0, 53.5, 9.9, {}, 11000),
           Episode("overspeed", "truck-2", 2000, 9000, "", 99.0, 53.5, 9.9, {}, 12000),
           Episode("dtc", "truck-2", 3000, None, "P0301", None, None, None, {"code": "P0301"},
                   3000)]
    return {a.vehicle_id + a.rule: a for a, _ in await store.save_alerts(eps, [], 1)}


async def test_roles_filters_groups_ack_and_audit(any_store):
    hub = Hub()
    sub = Subscriber()
    hub.add(sub)
    hub.subscribe(sub, ALERTS)
    sub.drain()
    alerts = await _seed(any_store)
    viewer = bearer(await add_user_token(any_store, "vera", "viewer"))
    dispatcher = bearer(await add_user_token(any_store, "dana", "dispatcher"))
    grouped = bearer(await add_user_token(any_store, "gus", "viewer", all_vehicles=False))
    await any_store.put_group("north", vehicles=["truck-2"], members=["gus"])
    async with await _client(any_store, hub) as c:
        assert (await c.get("/api/alerts")).status == 401
        assert (await c.get("/api/alert-rules")).status == 401
        body = await (await c.get("/api/alerts", headers=viewer)).json()
        assert [a["vehicle"] for a in body["alerts"]] == ["truck-2", "truck-2", "truck-1"]
        got = await (await c.get("/api/alerts?state=open&rule=overspeed", headers=viewer)).json()
        assert [a["id"] for a in got["alerts"]] == [alerts["truck-1overspeed"].id]
        got = await (await c.get("/api/alerts?vehicle=truck-2&limit=1", headers=viewer)).json()
        assert [a["rule"] for a in got["alerts"]] == ["dtc"]
        got = await (await c.get("/api/alerts?from_ms=9500&to_ms=2500", headers=viewer)).json()
        assert [a["vehicle"] for a in got["alerts"]] == ["truck-1"]
        for bad in ("state=gone", "acknowledged=maybe", "limit=0", "from_ms=x"):
            r = await c.get(f"/api/alerts?{bad}", headers=viewer)
            assert r.status == 400 and "error" in await r.json()
        # a user in a group sees only that group's vehicles; another's alert is 404
        got = await (await c.get("/api/alerts", headers=grouped)).json()
        assert {a["vehicle"] for a in got["alerts"]} == {"truck-2"}
        assert (await c.get("/api/alerts?vehicle=truck-1", headers=grouped)).status == 404
        target = alerts["truck-1overspeed"].id
        assert (await c.post(f"/api/alerts/{target}/ack", headers=viewer)).status == 403
        assert (await c.post("/api/alerts/999999/ack", headers=dispatcher)).status == 404
        r = await c.post(f"/api/alerts/{target}/ack", headers=dispatcher)
        acked = await r.json()
        assert r.status == 200 and acked["acknowledged_by"] == "dana"
        assert acked["acknowledged_ms"] > 0 and acked["state"] == "open"
        r2 = await c.post(f"/api/alerts/{target}/ack", headers=dispatcher)
        assert (await r2.json())["acknowledged_ms"] == acked["acknowledged_ms"]
        got = await (await c.get("/api/alerts?acknowledged=true", headers=viewer)).json()
        assert [a["id"] for a in got["alerts"]] == [target]
        rules = await (await c.get("/api/alert-rules", headers=viewer)).json()
        assert {"overspeed", "stale", "offline", "geofence-enter"} <= {
            r["name"] for r in rules["rules"]}
    entries = await any_store.audit_entries(0, 4_000_000_000_000, 10)
    assert [(e["user"], e["action"], e["target"]) for e in entries] == [
        ("dana", "alert.ack", f"alert:{target}")]
    pushed = sub.drain()
    assert [(m["topic"], m["alert"]["id"], m["alert"]["acknowledged_by"]) for m in pushed] == [
        ("alerts", target, "dana")]


async def test_websocket_alerts_topic_only_for_visible_vehicles(any_store):
    hub = Hub()
    alerts = await _seed(any_store)
    grouped = bearer(await add_user_token(any_store, "gus", "viewer", all_vehicles=False))
    await any_store.put_group("north", vehicles=["truck-2"], members=["gus"])
    async with await _client(any_store, hub) as c:
        ws = await c.ws_connect("/ws", headers=grouped)
        await ws.send_json({"op": "subscribe", "topic": "alerts"})
        assert (await ws.receive_json(timeout=5))["event"] == "subscribed"
        while not any(ALERTS in s.topics for s in hub.subscribers):
            await asyncio.sleep(0.01)
        hub.publish_alert(alerts["truck-1overspeed"].as_json())  # not in gus's groups
        hub.publish_alert(alerts["truck-2dtc"].as_json())
        got = await ws.receive_json(timeout=5)
        assert (got["topic"], got["alert"]["id"]) == (ALERTS, alerts["truck-2dtc"].id)
        await ws.close()
