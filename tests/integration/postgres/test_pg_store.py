"""What only PostgresStore does, against a real PostgreSQL 15 + PostGIS, with native
partitions and with a TimescaleDB hypertable (conftest): its schema, partitions or chunks,
retention, the column types' limits. What every store does is in tests/integration/store/
(`any_store`)."""

import asyncio
import datetime

import asyncpg
import pytest

from backend.store.base import StoredReading, sql_dir
from backend.store.postgres import PostgresStore
from backend.store.postgres.partitions import DAY_MS, OutsidePartitionWindow
from geostream.clock import wall_ms as now_ms

pytestmark = pytest.mark.postgres

# 12:13:20 UTC three days ago: the store creates partitions only within a window around the
# wall clock (backend/store/postgres/partitions.py), so the test's days follow it
T0 = (now_ms() // DAY_MS - 3) * DAY_MS + 44_000_000


def pos(seq, t, vehicle="v1", epoch=7, lat=52.0, lon=13.0, **kw):
    return StoredReading(vehicle_id=vehicle, epoch=epoch, seq=seq, time_ms=t, kind="pos",
                         lat=lat, lon=lon, speed_kmh=kw.get("speed", 10.0), course_deg=90.0,
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
        files = sorted(f.stem for f in (sql_dir() / "postgres").glob("*.sql"))
        assert await s.migrate() == files and files[0] == "0001_init"
        assert await s.migrate() == []
        conn = await asyncpg.connect(url)
        try:
            idx = {r[0]: r[1] for r in await conn.fetch(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename='vehicle_telemetry'")}
            kind = await conn.fetchval(
                "SELECT relkind::text FROM pg_class WHERE relname='vehicle_telemetry'")
            hypertables = await conn.fetch(
                "SELECT h.hypertable_name, d.column_name, d.time_interval "
                "FROM timescaledb_information.hypertables h "
                "JOIN timescaledb_information.dimensions d USING (hypertable_name)"
            ) if pg_server.timescale else []
        finally:
            await conn.close()
        if pg_server.timescale:
            assert kind == "r"  # a hypertable is a plain table with chunks below it
            assert [tuple(r) for r in hypertables] == [
                ("vehicle_telemetry", "time", datetime.timedelta(days=1))]
        else:
            assert kind == "p"  # native partitioned table
        assert any("gist (location)" in d for d in idx.values())
        assert any("(vehicle_id, \"time\" DESC)" in d for d in idx.values())
        assert any("UNIQUE" in d and "(vehicle_id, epoch, seq, \"time\")" in d
                   for d in idx.values())
    finally:
        await s.close()


async def chunks(store) -> list[tuple[datetime.datetime, datetime.datetime]]:
    """Timescale's chunks of vehicle_telemetry: (range start, range end), oldest first."""
    async with store._pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT range_start, range_end FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'vehicle_telemetry' ORDER BY range_start")
    return [tuple(r) for r in rows]


def utc_day(ms: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ms // DAY_MS * DAY_MS / 1000, datetime.UTC)


async def test_readings_on_many_days_get_partitions(store, pg_server):
    days = [T0 - 40 * DAY_MS, T0, T0 + 2 * DAY_MS]
    await store.write([pos(i + 1, t) for i, t in enumerate(days)], [])
    parts = await store.partitions()
    assert len(parts) == 3
    if pg_server.timescale:  # one chunk per UTC day with data: chunks by time
        assert await chunks(store) == [(utc_day(t), utc_day(t + DAY_MS)) for t in days]
    else:
        assert all(p.startswith("vehicle_telemetry_p") for p in parts)
    assert await store.count_readings() == 3


async def test_maintenance_creates_ahead_and_drops_by_retention(store, pg_server):
    await store.write([pos(1, T0 - 30 * DAY_MS), pos(2, T0 - 5 * DAY_MS), pos(3, T0)], [])
    await store.set_policy(retention_days=10, premake_days=2)
    result = await store.maintain(T0)
    # native: tomorrow and the day after are made ahead; Timescale makes chunks on demand
    assert result["created"] == (0 if pg_server.timescale else 2)
    assert len(result["dropped"]) == 1     # the partition or chunk 30 days back
    assert await store.count_readings() == 2
    if pg_server.timescale:
        assert [c[0] for c in await chunks(store)] == [utc_day(T0 - 5 * DAY_MS), utc_day(T0)]
    # a reading older than the retention creates nothing (the writer dead-letters it) ...
    with pytest.raises(OutsidePartitionWindow):
        await store.write([pos(4, T0 - 30 * DAY_MS + 1)], [])
    # ... one within it lands, its partition or chunk created on demand
    await store.write([pos(5, T0 - 6 * DAY_MS)], [])
    assert await store.count_readings() == 3
    assert [r["seq"] for r in await store.route("v1", T0 - 31 * DAY_MS, T0 + 1)] == [5, 2, 3]


async def test_retention_keeps_a_chunk_that_still_holds_recent_rows(store, pg_server):
    """Only partitions or chunks wholly older than the retention go: the day that straddles
    the limit stays, with its rows on both sides of it."""
    await store.write([pos(1, T0 - 10 * DAY_MS - 1000), pos(2, T0 - 10 * DAY_MS + 1000)], [])
    await store.set_policy(retention_days=10 - 0.5 / 24)  # the limit falls inside that day
    assert (await store.maintain(T0 - T0 % DAY_MS + DAY_MS // 2))["dropped"] == []
    assert await store.count_readings() == 2


async def test_out_of_range_value_fails_the_whole_batch(store):
    with pytest.raises(Exception) as e:  # noqa: B017 (client- or server-side, both data errors)
        await store.write([pos(1, T0), pos(2, T0 + 1, sats=100_000)], [])
    assert not store.is_transient(e.value)
    assert await store.count_readings() == 0
    await store.write([pos(1, T0)], [])  # the connection is still usable
    assert await store.count_readings() == 1


async def test_partition_job_runs_at_open(pg_url, pg_server):
    s = PostgresStore(pg_url)
    await s.open()
    try:
        if pg_server.timescale:  # nothing made ahead: the first row of a day makes its chunk
            await asyncio.sleep(0.5)
            assert await s.partitions() == []
            return
        for _ in range(50):
            if len(await s.partitions()) >= 4:
                break
            await asyncio.sleep(0.1)
        assert len(await s.partitions()) == 4  # today and three days ahead
    finally:
        await s.close()
