"""Exactly-once through the writer under process crashes and database restarts."""

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import asyncpg
import pytest

from backend.store.base import StoredReading
from backend.store.postgres import PostgresStore
from backend.writer import BatchWriter

pytestmark = pytest.mark.postgres

PROC = Path(__file__).with_name("writer_proc.py")
T0 = 1_763_900_000_000


async def key_stats(url, vehicle):
    conn = await asyncpg.connect(url)
    try:
        return tuple(await conn.fetchrow(
            "SELECT count(*), count(DISTINCT (epoch, seq)), coalesce(min(seq), 0), "
            "coalesce(max(seq), 0) FROM vehicle_telemetry WHERE vehicle_id = $1", vehicle))
    finally:
        await conn.close()


def run_writer(url, first, count):
    return subprocess.Popen([sys.executable, str(PROC), url, str(first), str(count)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ})


def write_to_completion(pg_url: str, n: int) -> None:
    """Re-send a batch of n readings through a fresh writer process and see it committed."""
    proc = run_writer(pg_url, 1, n)
    try:
        assert proc.stdout.readline().strip() == "submitting"
        assert proc.stdout.readline().strip() == "committed"
    finally:
        proc.kill()
        proc.wait(10)


def test_kill9_after_commit_before_ack_then_resend_stores_once(pg_url):
    proc = run_writer(pg_url, 1, 500)
    try:
        assert proc.stdout.readline().strip() == "submitting"
        assert proc.stdout.readline().strip() == "committed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert asyncio.run(key_stats(pg_url, "crash")) == (500, 500, 1, 500)
    # the agent never saw an ack: it re-sends the same batch to a new gateway process
    write_to_completion(pg_url, 500)
    assert asyncio.run(key_stats(pg_url, "crash")) == (500, 500, 1, 500)


def test_kill9_at_random_moments_then_resend_stores_once(pg_url):
    rng = random.Random(8)
    for _ in range(4):  # bounded: four crashes at random points of submit/commit
        proc = run_writer(pg_url, 1, 2000)
        assert proc.stdout.readline().strip() == "submitting"
        time.sleep(rng.uniform(0.0, 0.15))
        proc.kill()
        proc.wait(10)
        n, distinct, _, _ = asyncio.run(key_stats(pg_url, "crash"))
        assert n == distinct and n in (0, 2000)  # a transaction: all or nothing
    write_to_completion(pg_url, 2000)
    assert asyncio.run(key_stats(pg_url, "crash")) == (2000, 2000, 1, 2000)


async def test_postgres_restart_mid_stream_loses_and_duplicates_nothing(
        own_pg_server, own_pg_url, monkeypatch):
    monkeypatch.setattr("backend.writer.RETRY_MIN_S", 0.05)
    store = PostgresStore(own_pg_url)
    await store.open()
    writer = BatchWriter(store, max_rows=300)
    writer.start()
    vehicles = [f"r{i}" for i in range(5)]
    acked: set[tuple[str, int]] = set()
    per_batch = 50
    batches = 60

    async def vehicle(vid):
        for b in range(batches):
            rows = [StoredReading(vehicle_id=vid, epoch=3, seq=b * per_batch + i + 1,
                                  time_ms=T0 + (b * per_batch + i) * 1000, kind="pos",
                                  lat=48.0, lon=11.0, received_ms=T0)
                    for i in range(per_batch)]
            await writer.submit(rows, [])
            if b % 7 == 3:  # lost ack: the agent re-sends a batch it already delivered
                await writer.submit(rows, [])
            acked.update((vid, r.seq) for r in rows)
            await asyncio.sleep(0.01)

    restarted = threading.Event()

    def restart():
        time.sleep(0.3)
        own_pg_server.stop("fast")
        time.sleep(1.0)       # the database is away for a second
        own_pg_server.start()
        restarted.set()

    t = threading.Thread(target=restart)
    t.start()
    try:
        await asyncio.wait_for(asyncio.gather(*(vehicle(v) for v in vehicles)), 120)
    finally:
        await asyncio.to_thread(t.join, 60)
    await writer.stop()
    assert restarted.is_set()
    assert writer.stats.failures > 0 and writer.stats.connected  # it did see the outage
    total = len(vehicles) * batches * per_batch
    assert len(acked) == total
    for v in vehicles:
        assert await key_stats(own_pg_url, v) == (batches * per_batch, batches * per_batch, 1,
                                              batches * per_batch)
    assert await store.count_readings() == total
    await store.close()


async def test_bad_row_in_batch_is_dead_lettered_rest_committed(pg_url):
    store = PostgresStore(pg_url)
    await store.open()
    writer = BatchWriter(store)
    writer.start()
    rows = [StoredReading(vehicle_id="bad", epoch=1, seq=q, time_ms=T0 + q, kind="pos",
                          lat=1.0, lon=2.0, sats=70_000 if q == 17 else 9, received_ms=T0)
            for q in range(1, 41)]
    await writer.submit(rows, [])
    await writer.stop()
    assert await store.count_readings("bad") == 39
    [letter] = await store.dead_letters()
    assert letter["seq"] == 17 and "int16" in letter["error"]
    assert letter["reading"]["sats"] == 70_000
    await store.close()


async def test_postgres_crash_during_a_large_batch_commits_it_exactly_once(
        own_pg_server, own_pg_url, monkeypatch):
    """Immediate shutdown (crash + recovery) while a 60k-row transaction is in flight."""
    monkeypatch.setattr("backend.writer.RETRY_MIN_S", 0.05)
    store = PostgresStore(own_pg_url, maintain_every_s=0)
    await store.open()
    writer = BatchWriter(store, max_rows=100_000)
    writer.start()
    rows = [StoredReading(vehicle_id="big", epoch=9, seq=q, time_ms=T0 + q * 10, kind="pos",
                          lat=45.0, lon=7.0, speed_kmh=1.0, received_ms=T0)
            for q in range(1, 60_001)]
    submit = asyncio.create_task(writer.submit(rows, []))

    async def in_flight():
        conn = await asyncpg.connect(own_pg_url)
        try:
            for _ in range(200):
                busy = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                    "'fleet-backend' AND state = 'active' AND "
                    "(query ILIKE 'INSERT INTO vehicle_telemetry%' "
                    "OR query ILIKE 'COPY%vehicle_telemetry%')")
                if busy:
                    return True
                await asyncio.sleep(0.005)
            return False
        finally:
            await conn.close()

    saw_it = await in_flight()
    await asyncio.to_thread(own_pg_server.stop, "immediate")
    await asyncio.sleep(0.5)
    await asyncio.to_thread(own_pg_server.start)
    await asyncio.wait_for(submit, 60)
    await writer.stop()
    assert saw_it, "the batch was not caught in flight"
    assert writer.stats.failures >= 1
    assert await key_stats(own_pg_url, "big") == (60_000, 60_000, 1, 60_000)
    await store.close()
