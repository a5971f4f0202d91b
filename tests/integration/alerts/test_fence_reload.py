"""A geofence created, moved or deleted through the HTTP API takes effect in this process's
alert engine at once, not at its next 30 s re-read. SQLite and PostgreSQL."""

from aiohttp.test_utils import TestClient, TestServer

from backend.alerts import AlertEngine, parse_rules
from backend.gateway import Gateway
from backend.hub import Hub
from backend.store.base import AlertQuery
from backend.web import make_app
from backend.writer import BatchWriter
from tests.authhelp import add_user_token, bearer
from tests.integration.alerts.helpers import pos

RULES = parse_rules({"geofence": {"dwell_s": 5}})
NOW = 10**13  # the engine's clock stays here: its 30 s re-read never comes due in the test


def square(lon0: float) -> dict:
    return {"type": "Feature", "properties": {"name": "Depot"}, "geometry": {
        "type": "Polygon", "coordinates": [[[lon0, 53.54], [lon0 + 0.02, 53.54],
                                            [lon0 + 0.02, 53.56], [lon0, 53.56],
                                            [lon0, 53.54]]]}}


async def spans(store) -> set:
    return {(a.rule, a.subject, a.start_ms // 1000)
            for a in await store.list_alerts(AlertQuery(limit=100))}


async def drive(store, engine, seq0: int, t0: int, inside_lon: float) -> None:
    """30 s outside, 30 s at `inside_lon`, 30 s outside again (one position a second)."""
    rows = [pos(seq0 + i, t0 + i, 30.0, 53.55, inside_lon if 30 <= i < 60 else 9.5)
            for i in range(90)]
    await store.write(rows, [])
    await engine.on_committed(rows, NOW)


async def test_api_geofence_changes_reach_the_engine_at_once(any_store):
    hub = Hub()
    engine = AlertEngine(any_store, RULES, hub.publish_alert)
    await engine.start(NOW)
    assert engine.fences == []
    gateway = Gateway(any_store, BatchWriter(any_store), hub, alerts=engine)
    dispatcher = bearer(await add_user_token(any_store, "dana", "dispatcher"))
    async with TestClient(TestServer(make_app(hub, any_store, lambda: {},
                                              gateway=gateway))) as c:
        r = await c.put("/api/geofences/depot", json=square(9.98), headers=dispatcher)
        assert r.status == 200, await r.text()
        await drive(any_store, engine, 1, 1000, 9.99)
        assert await spans(any_store) == {("geofence-enter", "depot", 1030),
                                          ("geofence-exit", "depot", 1060)}
        # moved east: a pass through the old place no longer counts, one through the new does
        r = await c.put("/api/geofences/depot", json=square(10.5), headers=dispatcher)
        assert r.status == 200
        await drive(any_store, engine, 100, 2000, 9.99)
        await drive(any_store, engine, 200, 3000, 10.51)
        assert ("geofence-enter", "depot", 2030) not in await spans(any_store)
        assert ("geofence-enter", "depot", 3030) in await spans(any_store)
        assert (await c.delete("/api/geofences/depot", headers=dispatcher)).status == 204
        await drive(any_store, engine, 300, 4000, 10.51)
        assert not {s for s in await spans(any_store) if s[2] >= 4000}
    assert engine.stats["fence_reloads"] == 3
