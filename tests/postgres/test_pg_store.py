"""PostgresStore against a real PostgreSQL 15 + PostGIS: schema, exactly-once, last position,
dead letters, partitions."""

import asyncio

import asyncpg
import pytest

from backend.store.base import DeadLetter, StoredReading
from backend.store.postgres import DAY_MS, PostgresStore

pytestmark = pytest.mark.postgres

T0 = 1_763_900_000_000  # 2025-11-23


def pos(seq, t, vehicle="v1", epoch=7, lat=52.0, lon=13.0, **kw):
    return StoredReading(vehicle_id=vehicle, epoch=epoch, seq=seq, time_ms=t, kind="pos",
                         lat=lat, lon=lon, speed_kmh=kw.get("speed", 10.0), course=90.0,
                         fix=1, sats=kw.get("sats", 8), received_ms=t + 5)


@pytest.fixture
async def store(pg_url):
    s = PostgresStore(pg_url, maintain_every_s=0)  # partition job off: tests call maintain()
    await s.open()
    yield s
    await s.close()


async def test_migrate_fresh_database_then_idempotent(pg_server):
    url = pg_server.create_database("migrate_fresh")
    s = PostgresStore(url)
    await s.open(migrate=False)
    try:
        assert await s.migrate() == ["0001_init", "0002_commands"]
        assert await s.migrate() == []
        conn = await asyncpg.connect(url)
        try:
            idx = {r[0]: r[1] for r in await conn.fetch(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename='vehicle_telemetry'")}
            kind = await conn.fetchval(
                "SELECT relkind::text FROM pg_class WHERE relname='vehicle_telemetry'")
        finally:
            await conn.close()
        assert kind == "p"  # native partitioned table (no Timescale here)
        assert any("gist (location)" in d for d in idx.values())
        assert any("(vehicle_id, \"time\" DESC)" in d for d in idx.values())
        assert any("UNIQUE" in d and "(vehicle_id, epoch, seq, \"time\")" in d
                   for d in idx.values())
    finally:
        await s.close()


async def test_duplicate_batches_store_each_reading_once(store):
    batch = [pos(i, T0 + i * 1000) for i in range(1, 101)]
    await store.write(batch, [])
    await store.write(batch, [])            # the whole batch again (lost ack)
    await store.write(batch[40:60] + [pos(101, T0 + 101_000)], [])  # overlap + one new
    assert await store.count_readings("v1") == 101
    route = await store.route("v1", T0, T0 + 200_000)
    assert [p["seq"] for p in route] == list(range(1, 102))
    assert route[0]["time_ms"] == T0 + 1000 and route[0]["lat"] == 52.0


async def test_last_position_never_moves_backwards(store):
    await store.write([pos(10, T0 + 10_000, lat=1.0)], [])
    await store.write([pos(3, T0 + 3_000, lat=2.0), pos(4, T0 + 4_000, lat=3.0)], [])  # backfill
    [last] = await store.last_positions()
    assert (last["seq"], last["lat"], last["time_ms"]) == (10, 1.0, T0 + 10_000)
    await store.write([pos(11, T0 + 11_000, lat=4.0), pos(5, T0 + 5_000, lat=5.0)], [])
    [last] = await store.last_positions()
    assert (last["seq"], last["lat"]) == (11, 4.0)


async def test_readings_on_many_days_get_partitions(store):
    days = [T0 - 40 * DAY_MS, T0, T0 + 2 * DAY_MS]
    await store.write([pos(i + 1, t) for i, t in enumerate(days)], [])
    parts = await store.partitions()
    assert len(parts) == 3 and all(p.startswith("vehicle_telemetry_p") for p in parts)
    assert await store.count_readings() == 3


async def test_maintenance_creates_ahead_and_drops_by_retention(store):
    await store.write([pos(1, T0 - 30 * DAY_MS), pos(2, T0 - 5 * DAY_MS), pos(3, T0)], [])
    await store.set_policy(retention_days=10, premake_days=2)
    result = await store.maintain(T0)
    assert result["created"] == 2          # tomorrow and the day after
    assert len(result["dropped"]) == 1     # the partition 30 days back
    assert await store.count_readings() == 2
    # a late reading for a dropped day still lands (partition re-created on demand)
    await store.write([pos(4, T0 - 30 * DAY_MS + 1)], [])
    assert await store.count_readings() == 3


async def test_dead_letters_and_signals(store):
    can = StoredReading(vehicle_id="v1", epoch=7, seq=5, time_ms=T0, kind="can",
                        data={"bus": "can0", "rpm": 1800}, received_ms=T0)
    dead = DeadLetter("v1", 7, 6, {"q": 6, "k": "pos", "lat": 999}, "out of range", T0)
    await store.write([can], [dead])
    await store.write([can], [dead])
    assert await store.count_readings() == 1
    letters = await store.dead_letters()
    assert len(letters) == 1 and letters[0]["error"] == "out of range"
    assert letters[0]["reading"]["lat"] == 999


async def test_vehicle_credentials(store):
    from backend.store.base import AuthResult

    token = await store.add_vehicle("v9")
    assert await store.authenticate("v9", token) is AuthResult.OK
    assert await store.authenticate("v9", token + "x") is AuthResult.UNKNOWN
    assert await store.revoke_vehicle("v9") is True
    assert await store.revoke_vehicle("v9") is False
    assert await store.authenticate("v9", token) is AuthResult.REVOKED
    assert await store.revoked_vehicles() == {"v9"}
    [v] = await store.list_vehicles()
    assert v["vehicle_id"] == "v9" and v["revoked_ms"] is not None


async def test_out_of_range_value_fails_the_whole_batch(store):
    with pytest.raises(Exception) as e:  # noqa: B017 (client- or server-side, both data errors)
        await store.write([pos(1, T0), pos(2, T0 + 1, sats=100_000)], [])
    assert not store.is_transient(e.value)
    assert await store.count_readings() == 0
    await store.write([pos(1, T0)], [])  # the connection is still usable
    assert await store.count_readings() == 1


async def test_partition_job_runs_at_open(pg_url):
    s = PostgresStore(pg_url)
    await s.open()
    try:
        for _ in range(50):
            if len(await s.partitions()) >= 4:
                break
            await asyncio.sleep(0.1)
        assert len(await s.partitions()) == 4  # today and three days ahead
    finally:
        await s.close()
