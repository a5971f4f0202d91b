"""Vehicle groups: a user in groups sees only their vehicles, in REST, commands and the
WebSocket; commands sent are in the audit trail (running backend, both stores)."""

from __future__ import annotations

import asyncio

import aiohttp

from backend.hub import position_feature
from backend.store.base import StoredReading
from tests.authhelp import bearer

T0 = 1_763_856_000_000


async def _seed(running) -> None:
    store = running.store
    for v in ("truck-1", "truck-2"):
        await store.add_vehicle(v)
    await store.write([StoredReading(vehicle_id=v, epoch=1, seq=i, time_ms=T0 + i * 1000,
                                     kind="pos", lat=50 + i * 1e-4, lon=8.0, speed_kmh=20.0,
                                     received_ms=T0)
                       for v in ("truck-1", "truck-2") for i in range(1, 4)], [])
    await store.put_group("north", ["truck-1"], ["viewer", "dispatcher", "admin"])
    for user in ("viewer", "dispatcher"):  # their groups' vehicles only, not every vehicle
        await store.update_user(user, all_vehicles=False)


async def test_rest_and_commands_filtered_by_group(running):
    await _seed(running)
    viewer, dispatcher = bearer(running.tokens["viewer"]), bearer(running.tokens["dispatcher"])
    admin = bearer(running.tokens["admin"])
    async with aiohttp.ClientSession(running.url) as http:
        async def get(path, headers):
            async with http.get(path, headers=headers) as r:
                return r.status, await r.json()

        _, mine = await get("/api/vehicles", viewer)
        assert [v["id"] for v in mine["vehicles"]] == ["truck-1"]
        _, everything = await get("/api/vehicles", admin)  # admin sees all, groups or not
        assert [v["id"] for v in everything["vehicles"]] == ["truck-1", "truck-2"]
        window = f"from_ms={T0}&to_ms={T0 + 10_000}"
        assert (await get(f"/api/vehicles/truck-1/route?{window}", viewer))[0] == 200
        status, body = await get(f"/api/vehicles/truck-2/route?{window}", viewer)
        assert status == 404 and body == {"error": "unknown vehicle 'truck-2'"}
        assert (await get("/api/vehicles/truck-2/trips?day=2025-11-23", viewer))[0] == 404
        assert (await get("/api/vehicles/truck-2/trips?day=2025-11-23", admin))[0] == 200
        # commands: refused as unknown for a vehicle outside the groups, audited when sent
        async with http.post("/api/vehicles/truck-2/commands", json={"name": "ping"},
                             headers=dispatcher) as r:
            assert r.status == 404
        async with http.post("/api/vehicles/truck-1/commands", json={"name": "ping"},
                             headers=dispatcher) as r:
            assert r.status == 202
            mine_id = (await r.json())["id"]
        async with http.post("/api/vehicles/truck-2/commands", json={"name": "ping"},
                             headers=admin) as r:
            other_id = (await r.json())["id"]
        assert (await get(f"/api/commands/{mine_id}", viewer))[0] == 200
        assert (await get(f"/api/commands/{other_id}", viewer))[0] == 404
        _, trail = await get("/api/audit", admin)
    sent = [(e["user"], e["target"], e["detail"]["name"]) for e in trail["entries"]
            if e["action"] == "command.send"]
    assert sent == [("admin", "truck-2", "ping"), ("dispatcher", "truck-1", "ping")]
    # taken out of its last group, a restricted user sees nothing (access fails closed) ...
    await running.store.put_group("north", members=["dispatcher"])
    async with aiohttp.ClientSession(running.url, headers=viewer) as http:
        async with http.get("/api/vehicles") as r:
            assert (await r.json())["vehicles"] == []
        async with http.get(f"/api/vehicles/truck-1/route?{window}") as r:
            assert r.status == 404
        # ... and so does its dispatcher colleague once the group itself is deleted
    await running.store.delete_group("north")
    async with aiohttp.ClientSession(running.url, headers=dispatcher) as http:
        async with http.get("/api/vehicles") as r:
            assert (await r.json())["vehicles"] == []
        async with http.get(f"/api/commands/{mine_id}") as r:
            assert r.status == 404
    # the all-vehicles scope is explicit
    await running.store.update_user("viewer", all_vehicles=True)
    async with aiohttp.ClientSession(running.url, headers=viewer) as http:
        async with http.get("/api/vehicles") as r:
            assert len((await r.json())["vehicles"]) == 2


async def test_websocket_delivers_only_visible_vehicles(running):
    await _seed(running)
    hub = running.backend.hub
    async with aiohttp.ClientSession(running.url) as http:
        async with http.ws_connect("/ws", headers=bearer(running.tokens["viewer"])) as ws, \
                http.ws_connect("/ws", headers=bearer(running.tokens["admin"])) as ws_admin:
            await ws.send_json({"op": "subscribe", "topic": "vehicle:truck-2"})
            assert "error" in await ws.receive_json(timeout=5)
            for sock in (ws, ws_admin):
                await sock.send_json({"op": "subscribe", "topic": "live_updates:all"})
                assert (await sock.receive_json(timeout=5))["event"] == "subscribed"
            await asyncio.sleep(0.2)
            for i, v in enumerate(["truck-2", "truck-1", "truck-2", "truck-1"]):
                t = T0 + 100_000 + i
                hub.position(v, t, position_feature(v, t, 50.0, 8.0, 10.0, 0.0, 100 + i))
            got, got_admin = [], []
            # positions coalesce per vehicle (the latest wins): wait for each one's last
            while not {("truck-1", 103), ("truck-2", 102)} <= {
                    (f["properties"]["vehicle"], f["properties"]["seq"]) for f in got_admin}:
                got_admin.append((await ws_admin.receive_json(timeout=5))["feature"])
            await ws.send_json({"op": "subscribe", "topic": "alerts"})  # a marker after them
            while True:
                m = await ws.receive_json(timeout=5)
                if m.get("event") == "subscribed":
                    break
                got.append(m["feature"])
    assert {f["properties"]["vehicle"] for f in got} == {"truck-1"}
    assert got[-1]["properties"]["seq"] == 103
