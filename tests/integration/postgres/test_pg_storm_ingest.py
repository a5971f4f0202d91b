"""The write path's two ways (straight binary COPY, and unnest + ON CONFLICT): exactly once
whichever way a reading and its repeat take, the same stored values both ways, and a poison
row in a COPY'd batch costing only that row. Both flavours (partitions, hypertable)."""

import asyncio
import concurrent.futures
import dataclasses
import json
import struct
import time

import asyncpg
import pytest

from backend.store.base import StoredReading
from backend.store.postgres import PostgresStore
from backend.store.rows import newest_signals
from backend.writer import BatchWriter

pytestmark = pytest.mark.postgres

T0 = 1_763_900_000_000


def rows(vehicle: str, first: int, n: int, epoch: int = 1) -> list[StoredReading]:
    return [StoredReading(vehicle_id=vehicle, epoch=epoch, seq=q, time_ms=T0 + q * 100 + 7,
                          kind="pos" if q % 4 else "can", lat=53.5 + q * 1e-5,
                          lon=9.9 + q * 1e-5, speed_kmh=42.5, course_deg=91.0, fix=1, sats=9,
                          hdop=0.9, received_ms=T0 + 123_456 + q,
                          data=None if q % 4 else {"rpm": 900 + q, "bus": "can0"})
            for q in range(first, first + n)]


async def stats(url: str, vehicle: str) -> tuple[int, int]:
    conn = await asyncpg.connect(url)
    try:
        return tuple(await conn.fetchrow(
            "SELECT count(*), count(DISTINCT (epoch, seq)) FROM vehicle_telemetry "
            "WHERE vehicle_id = $1", vehicle))
    finally:
        await conn.close()


async def opened(url: str) -> PostgresStore:
    store = PostgresStore(url, maintain_every_s=0)
    await store.open()
    return store


async def test_a_repeated_batch_is_stored_once_whichever_way_it_goes(pg_url):
    first, second = await opened(pg_url), await opened(pg_url)  # two gateway processes
    try:
        batch = rows("rep", 1, 300)
        await first.write(batch, [])                     # fresh: straight COPY
        assert first.checked_rows == 0 and first.copy_conflicts == 0
        await first.write(batch, [])                     # this process committed it: checked
        assert first.checked_rows == 300
        await second.write(rows("rep", 201, 200), [])   # half stored by the other process:
        assert second.copy_conflicts == 1               # the COPY meets the key, all checked
        assert second.checked_rows == 200
        both = rows("rep", 401, 50)
        await second.write(both + both, [])              # a repeat within one transaction
        assert await stats(pg_url, "rep") == (450, 450)
    finally:
        await first.close()
        await second.close()


async def test_both_ways_store_the_same_time_and_point(pg_url):
    store = await opened(pg_url)
    try:
        straight = rows("way-a", 1, 20)
        checked = rows("way-b", 1, 20)
        store._committed.add("way-b", 1, list(range(1, 21)))  # as if committed here before
        await store.write(straight, [])
        await store.write(checked, [])
        assert store.checked_rows == 20 and store.copy_conflicts == 0
        conn = await asyncpg.connect(pg_url)
        try:
            a, b = [[tuple(r) for r in await conn.fetch(
                "SELECT seq, time, received_at, ST_AsEWKB(location), kind, signals, speed_kmh, "
                "course_deg, fix, sats, hdop FROM vehicle_telemetry WHERE vehicle_id = $1 "
                "ORDER BY seq", v)] for v in ("way-a", "way-b")]
        finally:
            await conn.close()
        assert len(a) == 20 and a == b
        assert a[0][3] is not None and a[3][3] is not None
    finally:
        await store.close()


def f4(x: float | None) -> float | None:
    """`x` as a float4 column gives it back."""
    return None if x is None else struct.unpack("f", struct.pack("f", x))[0]


async def test_the_newest_values_arrive_exactly_whatever_the_ids_and_numbers(pg_url):
    """The newest-value statement's arrays go as text literals: ids that need quoting, absent
    speeds (NULL), and numbers that only their shortest `repr` gives back exactly are stored
    as the values themselves (times, epochs, seqs exact; speeds as the float4 they round to)."""
    odd = ['q"uote', "back\\slash", "com,ma {brace}", " space ", "ümlaut", "NULL", ""]
    store = await opened(pg_url)
    try:
        batch = []
        for i, v in enumerate(odd):
            batch.append(StoredReading(
                vehicle_id=v, epoch=2**40 + i, seq=2**50 + i, time_ms=T0 + i, kind="pos",
                lat=-(0.1 + 0.2) * (i + 1), lon=1e-7 * (i + 1) - 179.5, speed_kmh=None if i % 2
                else 0.1 + i / 3, course_deg=359.99999 if i % 3 else None, received_ms=T0))
            batch.append(StoredReading(vehicle_id=v, epoch=1, seq=1, time_ms=T0 + 10 + i,
                                       kind="can", data={"rpm": 900.5 + i, "gear": i}))
        await store.write(batch, [])
        conn = await asyncpg.connect(pg_url)
        try:
            stored = {r[0]: tuple(r[1:]) for r in await conn.fetch(
                "SELECT vehicle_id, (extract(epoch FROM time) * 1000)::bigint, ST_Y(location), "
                "ST_X(location), speed_kmh, course_deg, epoch, seq FROM last_position")}
            cans = {r[0]: (r[1], json.loads(r[2])) for r in await conn.fetch(
                "SELECT vehicle_id, newest_ms, signals::text FROM last_can")}
        finally:
            await conn.close()
        assert stored == {r.vehicle_id: (r.time_ms, r.lat, r.lon, f4(r.speed_kmh),
                                         f4(r.course_deg), r.epoch, r.seq)
                          for r in batch if r.kind == "pos"}
        assert cans == {r.vehicle_id: (r.time_ms, {k: [x, r.time_ms] for k, x in r.data.items()})
                        for r in batch if r.kind == "can"}
    finally:
        await store.close()


async def test_a_backlogs_snapshots_leave_each_signals_newest_value(pg_url):
    """A vehicle's later snapshots in one transaction (a drained backlog) have their values'
    JSON made only for the values that win: each signal's newest value, the first of equal
    times, whatever the order and the signals each snapshot holds (rows.newest_signals)."""
    def can(seq: int, t: int, data: dict) -> StoredReading:
        return StoredReading(vehicle_id="bk", epoch=1, seq=seq, time_ms=T0 + t, kind="can",
                             data=data)
    batch = [can(1, 50, {"rpm": 800, "gear": 2, "bus": "can0"}),
             can(2, 90, {"rpm": 950.25, "note": 'a "b"', "bus": "can0"}),
             can(3, 70, {"rpm": 1.0, "gear": 3, "temp": -4.5e-7}),
             can(4, 90, {"rpm": 2.0, "gear": 4}),
             can(5, 20, {"bus": "can1"})]
    store = await opened(pg_url)
    try:
        await store.write(batch, [])
        got = (await store.last_signals())["bk"]
    finally:
        await store.close()
    assert got == {name: {"value": value, "time_ms": t}
                   for (_, name), (value, t) in newest_signals(batch).items()}
    assert got["temp"] == {"value": -4.5e-7, "time_ms": T0 + 70} and got["gear"]["value"] == 4


async def test_a_poison_row_in_a_copied_batch_costs_only_that_row(pg_url):
    store = await opened(pg_url)
    writer = BatchWriter(store)
    writer.start()
    try:
        batch = rows("poison", 1, 60)
        batch[37] = dataclasses.replace(batch[37], sats=70_000)  # not a smallint
        await writer.submit(batch + rows("clean", 1, 40), [])
        await writer.stop()
        assert await stats(pg_url, "poison") == (59, 59)
        assert await stats(pg_url, "clean") == (40, 40)
        [letter] = await store.dead_letters()
        assert letter["vehicle_id"] == "poison" and letter["seq"] == 38
        assert writer.stats.isolated_rows == 1
        # the good rows went straight (only the isolation's repeats of them were checked)
        assert store.copy_conflicts == 0
    finally:
        await writer.stop()
        await store.close()


async def test_a_writer_connection_made_before_the_migrations_copies_after_them(pg_server):
    url = pg_server.create_database("storm_late_migration")
    store = PostgresStore(url, maintain_every_s=0)
    await store.open(migrate=False)  # the geometry type does not exist yet
    try:
        await store.migrate()
        await store.write(rows("late", 1, 30), [])  # the COPY lacks the codec: checked
        assert store.checked_rows == 30
        await store.write(rows("late", 31, 30), [])  # now straight
        assert store.checked_rows == 30 and store.copy_conflicts == 0
        assert await stats(url, "late") == (60, 60)
    finally:
        await store.close()


def _count_from_another_thread(url: str, vehicle: str, want: int, bound_s: float) -> int:
    """The vehicle's stored rows, polled on a thread of its own until `want` or `bound_s`."""
    async def poll() -> int:
        deadline = time.monotonic() + bound_s
        while True:
            n = (await stats(url, vehicle))[0]
            if n >= want or time.monotonic() > deadline:
                return n
            await asyncio.sleep(0.05)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, poll()).result()


async def test_a_write_commits_while_the_callers_loop_is_busy(pg_url):
    """The writer's round trips run on its own loop (backend/store/write_loop.py):
    a transaction commits while the gateway's loop is held by a long turn (a storm's decode),
    instead of waiting one turn per round trip."""
    store = await opened(pg_url)
    try:
        batch = rows("busy", 1, 500)
        write = asyncio.ensure_future(store.write(batch, []))
        await asyncio.sleep(0)  # handed over; now this loop turn does not end until the poll
        assert _count_from_another_thread(pg_url, "busy", 500, bound_s=30) == 500
        await write
        assert await stats(pg_url, "busy") == (500, 500)
    finally:
        await store.close()
