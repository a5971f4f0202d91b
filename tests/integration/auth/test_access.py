"""Access fails closed: the all-vehicles scope is explicit, a restricted user without a group
sees nothing (REST, the live hub, MCP), geofences belong to groups and dispatchers change only
theirs, and an upgrade from the schema before migration 0011 keeps what every user saw."""

from __future__ import annotations

import os
import sqlite3

import aiohttp
import psycopg
import pytest

import backend.store.postgres.db as pg_db
import backend.store.sqlite.db as sqlite_db
from backend.auth.middleware import token_principal
from backend.mcp.tools import FleetTools, Refused
from backend.store import open_store
from backend.store.base import StoredReading
from tests.authhelp import TEST_PASSWORD, _hash, add_user_token, bearer

T0 = 1_763_856_000_000
SQUARE = {"type": "Polygon", "coordinates": [[[7.9, 49.9], [8.1, 49.9], [8.1, 50.1],
                                               [7.9, 50.1], [7.9, 49.9]]]}


def _fence(name: str, **props) -> dict:
    return {"type": "Feature", "geometry": SQUARE, "properties": {"name": name, **props}}


async def _seed(store) -> None:
    for v in ("truck-1", "truck-2"):
        await store.add_vehicle(v)
    await store.write([StoredReading(vehicle_id=v, epoch=1, seq=1, time_ms=T0, kind="pos",
                                     lat=50.0, lon=8.0, speed_kmh=20.0, received_ms=T0)
                       for v in ("truck-1", "truck-2")], [])


async def test_a_new_restricted_user_sees_nothing_until_given_a_group(running):
    await _seed(running.store)
    admin = bearer(running.tokens["admin"])
    async with aiohttp.ClientSession(running.url) as http:
        async with http.post("/api/users", json={"name": "newbie", "role": "dispatcher"},
                             headers=admin) as r:
            assert r.status == 201 and (await r.json())["all_vehicles"] is False
        async with http.post("/api/users/newbie/tokens", json={"label": "t"},
                             headers=admin) as r:
            newbie = bearer((await r.json())["token"])
        async with http.get("/api/vehicles", headers=newbie) as r:
            assert (await r.json())["vehicles"] == []
        for path in ("/api/vehicles/truck-1", "/api/vehicles/truck-1/route",
                     "/api/vehicles/truck-1/trips?format=csv", "/api/vehicles/truck-1/commands"):
            async with http.get(path, headers=newbie) as r:
                assert r.status == 404, path
        async with http.get("/api/alerts", headers=newbie) as r:
            assert (await r.json())["alerts"] == []
        # the live hub: subscribing to everything delivers nothing of anybody's
        async with http.ws_connect("/ws", headers=newbie) as ws:
            await ws.send_json({"op": "subscribe", "topic": "vehicle:truck-1"})
            assert "error" in await ws.receive_json(timeout=5)
        # MCP, as the same principal
        who = await token_principal(running.store, (newbie["Authorization"]).split()[1])
        tools = FleetTools(running.store)
        assert (await tools.list_vehicles(who))["vehicles"] == []
        with pytest.raises(Refused):
            await tools.vehicle_state(who, "truck-1")
        # a group gives its vehicles; the explicit scope gives every vehicle
        async with http.post("/api/groups", json={"name": "north", "vehicles": ["truck-1"],
                                                  "members": ["newbie"]}, headers=admin) as r:
            assert r.status == 201
        async with http.get("/api/vehicles", headers=newbie) as r:
            assert [v["id"] for v in (await r.json())["vehicles"]] == ["truck-1"]
        async with http.patch("/api/users/newbie", json={"all_vehicles": True},
                              headers=admin) as r:
            assert r.status == 200 and (await r.json())["all_vehicles"] is True
        async with http.get("/api/vehicles", headers=newbie) as r:
            assert len((await r.json())["vehicles"]) == 2


async def test_geofences_belong_to_groups(running):
    store = running.store
    await _seed(store)
    for name in ("dispatcher", "viewer"):
        await store.update_user(name, all_vehicles=False)
    await store.put_group("north", ["truck-1"], ["dispatcher", "viewer"])
    await store.put_group("south", ["truck-2"], [])
    admin, mine = bearer(running.tokens["admin"]), bearer(running.tokens["dispatcher"])
    viewer = bearer(running.tokens["viewer"])
    async with aiohttp.ClientSession(running.url) as http:
        for gid, group in (("gf-n", "north"), ("gf-s", "south"), ("gf-all", None)):
            async with http.put(f"/api/geofences/{gid}", json=_fence(gid, group=group),
                                headers=admin) as r:
                assert r.status == 200 and (await r.json())["properties"]["group"] == group
        async with http.get("/api/geofences", headers=mine) as r:
            assert [f["id"] for f in (await r.json())["features"]] == ["gf-n"]
        async with http.get("/api/geofences", headers=admin) as r:
            assert len((await r.json())["features"]) == 3
        # another group's geofence (and a fleet-wide one) does not exist for this dispatcher
        for gid in ("gf-s", "gf-all"):
            for method, path in (("GET", ""), ("DELETE", ""), ("GET", "/inside"),
                                 ("GET", "/entries")):
                async with http.request(method, f"/api/geofences/{gid}{path}",
                                        headers=mine) as r:
                    assert r.status == 404, (method, gid, path)
            async with http.put(f"/api/geofences/{gid}", json=_fence("taken over"),
                                headers=mine) as r:
                assert r.status == 404
        async with http.get("/api/vehicles/truck-1/geofence-entries", headers=mine,
                            params={"from_ms": T0 - 1000, "to_ms": T0 + 1000}) as r:
            assert {e["geofence_id"] for e in (await r.json())["entries"]} <= {"gf-n"}
        # its own group's: changed, and the group stays; another group may not be named
        async with http.put("/api/geofences/gf-n", json=_fence("North gate"),
                            headers=mine) as r:
            body = await r.json()
            assert r.status == 200 and body["properties"]["group"] == "north"
        for group in ("south", None):
            async with http.post("/api/geofences", json=_fence("x", group=group),
                                 headers=mine) as r:
                assert r.status == 403, group
        async with http.post("/api/geofences", json=_fence("Yard"), headers=mine) as r:
            assert r.status == 201 and (await r.json())["properties"]["group"] == "north"
        async with http.delete("/api/geofences/gf-n", headers=viewer) as r:
            assert r.status == 403  # a viewer changes nothing
        async with http.delete("/api/geofences/gf-n", headers=mine) as r:
            assert r.status == 204
        async with http.get("/api/geofences/gf-s", headers=admin) as r:
            assert (await r.json())["properties"]["name"] == "gf-s"  # untouched
    who = await token_principal(store, running.tokens["dispatcher"])
    tools = FleetTools(store)
    assert [g["id"] for g in (await tools.geofences(who))["geofences"]] != []
    assert {g["group"] for g in (await tools.geofences(who))["geofences"]} == {"north"}
    with pytest.raises(Refused):
        await tools.who_was_in_geofence(who, "gf-s")


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgres",
                                                            marks=pytest.mark.postgres)])
async def test_upgrade_keeps_what_every_user_saw(dialect, tmp_path, monkeypatch, request):
    """A database made with the schema before 0011 (users in groups, users in none, an
    admin), then upgraded: the ones in no group keep every vehicle, explicitly."""
    if dialect == "sqlite":
        url = f"sqlite://{tmp_path / 'fleet.db'}"
        module = sqlite_db
    else:
        server = request.getfixturevalue("pg_server")
        url = server.create_database(f"upgrade_{os.getpid()}")
        module = pg_db
    before = module.pending_migrations
    with monkeypatch.context() as m:
        m.setattr(module, "pending_migrations",
                  lambda d, done: [f for f in before(d, done) if f.stem < "0011"])
        old = open_store(url)
        await old.open()
        await old.close()
    hashed = _hash(TEST_PASSWORD)
    users = [("boss", "admin"), ("anna", "dispatcher"), ("ben", "viewer"), ("carl", "viewer")]
    members = "SELECT 'north', id FROM users WHERE name IN ('boss', 'ben')"
    if dialect == "sqlite":
        with sqlite3.connect(tmp_path / "fleet.db") as db:
            db.executemany("INSERT INTO users (name, role, password_hash, created_ms) "
                           "VALUES (?, ?, ?, 0)", [(n, r, hashed) for n, r in users])
            db.execute("INSERT INTO groups VALUES ('north', 0)")
            db.execute("INSERT INTO group_vehicles VALUES ('north', 'truck-1')")
            db.execute(f"INSERT INTO group_members {members}")
    else:
        with psycopg.connect(url) as conn:
            for n, r in users:
                conn.execute("INSERT INTO users (name, role, password_hash) VALUES (%s, %s, %s)",
                             (n, r, hashed))
            conn.execute("INSERT INTO groups (name) VALUES ('north')")
            conn.execute("INSERT INTO group_vehicles VALUES ('north', 'truck-1')")
            conn.execute(f"INSERT INTO group_members {members}")
    store = open_store(url)
    await store.open()  # applies 0011 (and whatever follows)
    try:
        seen = {n: (await store.account((await store.user(n))["id"]))["vehicles"]
                for n, _ in users}
        assert seen == {"boss": None, "anna": None, "ben": ["truck-1"], "carl": None}
        scope = {u["name"]: u["all_vehicles"] for u in await store.users()}
        assert scope == {"boss": True, "anna": True, "ben": False, "carl": True}
        # afterwards the scope is explicit: ben, out of his last group, sees nothing
        await store.put_group("north", members=[])
        ben = await store.account((await store.user("ben"))["id"])
        assert ben["vehicles"] == [] and ben["all_vehicles"] is False
        await add_user_token(store, "dora", "viewer", all_vehicles=False)
        assert (await store.account((await store.user("dora"))["id"]))["vehicles"] == []
    finally:
        await store.close()
