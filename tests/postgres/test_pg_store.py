"""PostgresStore against a real PostgreSQL 15 + PostGIS, with native partitions and with a
TimescaleDB hypertable (conftest): schema, exactly-once, last position, dead letters,
partitions or chunks, retention."""

import asyncio
import datetime

import asyncpg
import pytest

from backend.store.base import DeadLetter, StoredReading, sql_dir
from backend.store.postgres import PostgresStore
from backend.store.postgres.partitions import DAY_MS

pytestmark = pytest.mark.postgres

T0 = 1_763_900_000_000  # 2025-11-23


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
    # a late reading for a dropped day still lands (partition or chunk re-created on demand)
    await store.write([pos(4, T0 - 30 * DAY_MS + 1)], [])
    assert await store.count_readings() == 3
    assert [r["seq"] for r in await store.route("v1", T0 - 31 * DAY_MS, T0 + 1)] == [4, 2, 3]


async def test_retention_keeps_a_chunk_that_still_holds_recent_rows(store, pg_server):
    """Only partitions or chunks wholly older than the retention go: the day that straddles
    the limit stays, with its rows on both sides of it."""
    await store.write([pos(1, T0 - 10 * DAY_MS - 1000), pos(2, T0 - 10 * DAY_MS + 1000)], [])
    await store.set_policy(retention_days=10 - 0.5 / 24)  # the limit falls inside that day
    assert (await store.maintain(T0 - T0 % DAY_MS + DAY_MS // 2))["dropped"] == []
    assert await store.count_readings() == 2


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


def can(seq, t, vehicle, epoch=7, **signals):
    return StoredReading(vehicle_id=vehicle, epoch=epoch, seq=seq, time_ms=t, kind="can",
                         data={"bus": "can0", **signals}, received_ms=t + 5)


async def test_group_commit_of_many_vehicles_stores_once_and_keeps_the_newest(store):
    """One writer transaction holding several vehicles' batches (a storm drain): re-sent
    readings stored once, and each vehicle's newest position and signal values as a
    brute-force pass over everything written says, whatever order the batches came in."""
    import random

    rng = random.Random(5)
    written: list[StoredReading] = []
    for round_ in range(4):
        group = []
        for v in ("a", "b", "c"):
            for seq in rng.sample(range(1, 61), 25):  # out of order, overlapping rounds
                t = T0 + seq * 1000
                r = (pos(seq, t, vehicle=v, lat=seq / 10, speed=float(round_)) if seq % 3
                     else can(seq, t, v, rpm=seq * 10, temp=seq if seq % 2 else None))
                group.append(r)
        if round_ == 2:
            group += group[:10]  # the same readings twice in one transaction
        await store.write(group, [])
        written += group
    distinct = {(r.vehicle_id, r.epoch, r.seq) for r in written}
    assert await store.count_readings() == len(distinct)
    newest_pos = {}
    for r in sorted((r for r in written if r.kind == "pos"), key=lambda r: r.time_ms):
        newest_pos[r.vehicle_id] = r
    got = {p["vehicle_id"]: (p["seq"], p["lat"], p["time_ms"])
           for p in await store.last_positions()}
    assert got == {v: (r.seq, r.lat, r.time_ms) for v, r in newest_pos.items()}
    newest_sig: dict = {}
    for r in sorted((r for r in written if r.kind == "can"), key=lambda r: r.time_ms):
        for k, value in r.data.items():
            if k != "bus":
                newest_sig.setdefault(r.vehicle_id, {})[k] = {"value": value, "time_ms": r.time_ms}
    assert await store.last_signals() == newest_sig
