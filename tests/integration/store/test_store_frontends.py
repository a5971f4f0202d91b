"""REST and CLI give the same answers (they share backend/queries.py), on both stores."""

import asyncio
import json

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from backend.cli import main
from backend.hub import Hub
from backend.store import open_store
from backend.store.base import StoredReading
from backend.web import make_app
from tests.authhelp import add_user_token, bearer

T0 = 1_763_856_000_000  # 2025-11-23T00:00:00Z
SQUARE = {"type": "Polygon", "coordinates": [[[8, 50], [8.01, 50], [8.01, 50.01], [8, 50.01],
                                              [8, 50]]]}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    if request.param == "postgres":
        return request.getfixturevalue("_pg_url")
    return f"sqlite://{tmp_path / 'fleet.db'}"


async def seed(url):
    store = open_store(url)
    await store.open()
    try:
        await store.put_geofence("sq", "Square", SQUARE)
        rows = [StoredReading(vehicle_id="v1", epoch=1, seq=i, time_ms=T0 + i * 60_000,
                              kind="pos", lat=50.005, lon=7.9905 + i * 0.001, speed_kmh=30.0,
                              received_ms=T0) for i in range(1, 40)]
        await store.write(rows, [])
    finally:
        await store.close()


async def rest(url, paths):
    store = open_store(url)
    await store.open()
    headers = bearer(await add_user_token(store, role="viewer"))
    server = TestServer(make_app(Hub(), store, lambda: {}))
    await server.start_server()
    try:
        async with ClientSession(headers=headers) as http:
            out = []
            for path in paths:
                async with http.get(server.make_url(path)) as resp:
                    assert resp.status == 200, await resp.text()
                    out.append(await resp.json())
            return out
    finally:
        await server.close()
        await store.close()


def cli(capsys, url, *args):
    assert main(["--db", url, "--log-level", "WARNING", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_rest_and_cli_agree(url, capsys):
    assert main(["--db", url, "--log-level", "WARNING", "migrate"]) == 0
    first = capsys.readouterr().out
    if url.startswith("sqlite"):  # a new file (the PostgreSQL test database is pre-migrated)
        assert "0001_init" in first and "none pending" not in first
    assert main(["--db", url, "--log-level", "WARNING", "migrate"]) == 0
    assert capsys.readouterr().out.strip() == "migrations applied: none pending"
    asyncio.run(seed(url))
    start, end = T0, T0 + 3_600_000
    r_route, r_route_ds, r_entries, r_trips, r_last = asyncio.run(rest(url, [
        f"/api/vehicles/v1/route?from_ms={start}&to_ms={end}",
        f"/api/vehicles/v1/route?from_ms={start}&to_ms={end}&step_s=600",
        "/api/geofences/sq/entries?from=2025-11-23T00:00:00Z&to=2025-11-24T00:00:00Z",
        "/api/vehicles/v1/trips?day=2025-11-23",
        "/api/vehicles"]))
    assert r_route == cli(capsys, url, "query", "route", "v1", "--from", str(start),
                          "--to", str(end))
    assert r_route["properties"]["points"] == 39
    assert r_route_ds == cli(capsys, url, "query", "route", "v1", "--from", str(start),
                             "--to", str(end), "--step-s", "600")
    assert r_route_ds["properties"]["points"] == 4  # minutes 1-39 in 10-min buckets
    assert r_entries == cli(capsys, url, "query", "entered", "sq", "--from", "2025-11-23",
                            "--to", "2025-11-24")
    assert r_entries["vehicles"] == ["v1"] and [e["seq"] for e in r_entries["entries"]] == [10]
    assert r_trips == cli(capsys, url, "query", "trips", "v1", "--day", "2025-11-23")
    assert len(r_trips["trips"]) == 1 and r_trips["stops"] == []
    last = cli(capsys, url, "query", "last")["features"]
    assert [(v["id"], v["position"]["seq"], [v["position"]["lon"], v["position"]["lat"]],
             v["position"]["time"]) for v in r_last["vehicles"]] == [
        (f["id"], f["properties"]["seq"], f["geometry"]["coordinates"], f["properties"]["time"])
        for f in last]
    assert r_last["vehicles"][0]["position"]["seq"] == 39
    assert cli(capsys, url, "query", "geofences")[0]["geofence_id"] == "sq"


def test_bad_query_is_a_400(url):
    asyncio.run(seed(url))

    async def go():
        store = open_store(url)
        await store.open()
        headers = bearer(await add_user_token(store, role="viewer"))
        server = TestServer(make_app(Hub(), store, lambda: {}))
        await server.start_server()
        try:
            async with ClientSession(headers=headers) as http:
                async with http.get(server.make_url("/api/vehicles/v1/route?from_ms=x")) as r:
                    return r.status
        finally:
            await server.close()
            await store.close()

    assert asyncio.run(go()) == 400
