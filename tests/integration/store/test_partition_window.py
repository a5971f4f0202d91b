"""PostgreSQL (native partitions and TimescaleDB): a write creates partitions or chunks only
for a bounded window of days, whatever a reading's `ts` says (issue 22). The window reaches
back as far as the retention, and never less than an agent's journal delivers late, so a
reading drained days late is stored; outside it, the reading goes to the dead letter with the
reason."""

from __future__ import annotations

import asyncio

import pytest

from agent.config import JournalConfig
from backend.store import open_store
from backend.store.base import StoredReading
from backend.store.postgres.partitions import AHEAD_MS, LATE_DELIVERY_MS, partition_window
from backend.writer import BatchWriter
from geostream.clock import wall_ms as now_ms

DAY_MS = 86_400_000


def test_the_window_covers_what_a_journal_delivers_late():
    assert LATE_DELIVERY_MS == JournalConfig.max_age_h * 3600 * 1000
    now = 1_800_000_000_000
    assert partition_window(now, 400 * DAY_MS) == (now - 400 * DAY_MS, now + AHEAD_MS)
    # a retention shorter than the journal's reach does not refuse late readings
    assert partition_window(now, DAY_MS)[0] == now - LATE_DELIVERY_MS


@pytest.fixture(params=["postgres", "timescale"])
async def pg_store(request):
    store = open_store(request.getfixturevalue("_pg_url" if request.param == "postgres"
                                               else "_ts_url"))
    await store.open()
    yield store
    await store.close()


async def test_partitions_only_for_the_window_and_late_readings_stored(pg_store):
    store = pg_store
    await store.set_policy(retention_days=30)
    now = now_ms()
    ages_days = {1: 3, 2: 6.5, 3: 25,        # drained late, within retention: stored
                 4: 45, 5: 365 * 20,          # older than the retention: dead letter
                 6: -10, 7: -365 * 7000}      # days ahead, the year 9000ish: dead letter
    readings = [StoredReading(vehicle_id="late", epoch=1, seq=q, time_ms=now - int(d * DAY_MS),
                              kind="pos", lat=52.0, lon=4.0, received_ms=now)
                for q, d in ages_days.items() if now - d * DAY_MS < 253_402_300_800_000]
    writer = BatchWriter(store)
    writer.start()
    try:
        await asyncio.wait_for(writer.submit(readings, []), 60)
    finally:
        await writer.stop(timeout=10)
    assert await store.count_readings("late") == 3
    letters = {d["seq"]: d["error"] for d in await store.dead_letters()}
    assert set(letters) == {4, 5, 6, 7}
    assert all("outside the stored window" in e for e in letters.values()), letters
    # no partition or chunk holds a refused reading's time; the stored ones' do
    refused = [r.time_ms for r in readings if r.seq in letters]
    assert not [t for t in refused if await covered(store, t)]
    assert all([await covered(store, r.time_ms) for r in readings if r.seq not in letters])


async def covered(store, time_ms: int) -> bool:
    """Is there a native partition, or a TimescaleDB chunk, for this time?"""
    at = f"timestamptz 'epoch' + {int(time_ms)} * interval '1 ms'"
    async with store._pool.acquire() as conn:
        if await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = "
                               "'timescaledb'"):
            return await conn.fetchval(
                "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = "
                f"'vehicle_telemetry' AND range_start <= {at} AND {at} < range_end") > 0
        bounds = await conn.fetch(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c "
            "ON c.oid = i.inhrelid WHERE i.inhparent = 'vehicle_telemetry'::regclass")
        for (bound,) in bounds:
            low, high = (x.split("'")[1] for x in bound.split(" TO "))
            if await conn.fetchval(f"SELECT $1::text::timestamptz <= {at} AND {at} < "
                                   "$2::text::timestamptz", low, high):
                return True
        return False
