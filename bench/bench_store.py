"""Persistence benchmark: writer throughput vs raw COPY, and query latency on a large table.

    .venv/bin/python bench/bench_store.py [--rows 200000] [--load-seconds 120] [--max-rows 10e6]

Starts its own throw-away PostgreSQL + PostGIS (durable settings: fsync and synchronous_commit
on), then
1. stores the same rows twice: raw `COPY` straight into vehicle_telemetry (records prepared
   beforehand, the best case) and through BatchWriter + PostgresStore as the gateway does it
   (many concurrent 100-reading submissions), and prints readings/s of both and their ratio;
2. loads as many rows as fit `--load-seconds` of COPY (capped by --max-rows), a fleet reporting
   every 30 s for 7 days, and times "route of one vehicle, last 48 h" and "which vehicles
   entered geofence G yesterday".
Everything is bounded: a few minutes in total on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import struct
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from pgfixture import PgServer  # noqa: E402

from backend import queries  # noqa: E402
from backend.store.base import StoredReading  # noqa: E402
from backend.store.postgres import PostgresStore  # noqa: E402
from backend.writer import BatchWriter  # noqa: E402
from geostream.clock import wall_ms  # noqa: E402

DAY_MS = 86_400_000
INTERVAL_MS = 30_000            # one position every 30 s per vehicle
SPAN_DAYS = 7
SUBMISSION_ROWS = 100           # readings per gateway batch
CONCURRENT_SUBMISSIONS = 200    # gateway batches in flight (one per connected vehicle)
COPY_CHUNK = 5000               # rows per raw COPY transaction (same as the writer's max)
CENTER = (13.4, 52.5)           # lon, lat
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on",
           "shared_buffers": "256MB", "max_wal_size": "2GB", "checkpoint_timeout": "15min"}
_RAW_COLUMNS = ("time", "vehicle_id", "epoch", "seq", "kind", "location", "speed_kmh", "course_deg",
                "alt_m", "fix", "sats", "hdop", "signals", "received_at")


def ewkb_point(lonlat: tuple[float, float]) -> bytes:
    return struct.pack("<BIIdd", 1, 0x20000001, 4326, lonlat[0], lonlat[1])


def fleet_rows(vehicles: int, per_vehicle: int, end_ms: int, seed: int = 1):
    """Random walks, one reading every INTERVAL_MS per vehicle, ending at `end_ms`."""
    rng = random.Random(seed)
    start = end_ms - per_vehicle * INTERVAL_MS
    for v in range(vehicles):
        vid = f"veh-{v:05d}"
        lon = CENTER[0] + rng.uniform(-0.3, 0.3)
        lat = CENTER[1] + rng.uniform(-0.2, 0.2)
        for q in range(1, per_vehicle + 1):
            lon += rng.uniform(-0.002, 0.002)
            lat += rng.uniform(-0.0013, 0.0013)
            yield StoredReading(vehicle_id=vid, epoch=1, seq=q, time_ms=start + q * INTERVAL_MS,
                                kind="pos", lat=lat, lon=lon, speed_kmh=rng.uniform(0, 90),
                                course_deg=rng.uniform(0, 360), fix=1, sats=9,
                                received_ms=start + q * INTERVAL_MS + 800)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def raw_record(r: StoredReading) -> tuple:
    return (_dt(r.time_ms), r.vehicle_id, r.epoch, r.seq, r.kind, (r.lon, r.lat), r.speed_kmh,
            r.course_deg, r.alt_m, r.fix, r.sats, r.hdop, None, _dt(r.received_ms))


async def raw_connection(url: str):
    import asyncpg

    conn = await asyncpg.connect(url)
    await conn.set_type_codec("geometry", schema="public", encoder=ewkb_point,
                              decoder=bytes, format="binary")
    return conn


async def raw_copy(conn, records: list[tuple]) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(records), COPY_CHUNK):
        async with conn.transaction():
            await conn.copy_records_to_table("vehicle_telemetry", columns=_RAW_COLUMNS,
                                              records=records[i:i + COPY_CHUNK])
    return time.perf_counter() - t0


async def through_writer(store: PostgresStore, rows: list[StoredReading]) -> float:
    writer = BatchWriter(store)
    writer.start()
    batches = [rows[i:i + SUBMISSION_ROWS] for i in range(0, len(rows), SUBMISSION_ROWS)]
    queue = iter(batches)

    async def gateway_connection():
        for batch in queue:
            await writer.submit(batch, [])

    t0 = time.perf_counter()
    await asyncio.gather(*(gateway_connection() for _ in range(CONCURRENT_SUBMISSIONS)))
    elapsed = time.perf_counter() - t0
    await writer.stop()
    return elapsed


async def ensure_span(store: PostgresStore, first_ms: int, last_ms: int) -> None:
    async with store._pool.acquire() as conn:
        await conn.execute("SELECT telemetry_ensure_partitions($1, $2)", _dt(first_ms),
                           _dt(last_ms))


async def throughput(url: str, n_rows: int, now_ms: int) -> dict:
    vehicles = max(1, n_rows // 400)
    rows = list(fleet_rows(vehicles, n_rows // vehicles, now_ms, seed=2))
    store = PostgresStore(url, maintain_every_s=0)
    await store.open()
    await ensure_span(store, rows[0].time_ms - DAY_MS, now_ms + DAY_MS)
    conn = await raw_connection(url)
    records = [raw_record(r) for r in rows]
    raw_s = await raw_copy(conn, records)
    assert await conn.fetchval("SELECT count(*) FROM vehicle_telemetry") == len(rows)
    await conn.execute("TRUNCATE vehicle_telemetry, last_position")
    await conn.execute("CHECKPOINT")
    writer_s = await through_writer(store, rows)
    stored = await conn.fetchval("SELECT count(*) FROM vehicle_telemetry")
    assert stored == len(rows), (stored, len(rows))
    await conn.execute("TRUNCATE vehicle_telemetry, last_position")
    await conn.close()
    await store.close()
    return {"rows": len(rows), "raw_per_s": len(rows) / raw_s,
            "writer_per_s": len(rows) / writer_s}


async def load_large(url: str, load_seconds: float, max_rows: int, now_ms: int,
                     copy_rate: float) -> tuple[int, int, float]:
    per_vehicle = SPAN_DAYS * DAY_MS // INTERVAL_MS
    target = min(max_rows, int(copy_rate * load_seconds * 0.6))  # generation costs too
    vehicles = max(2, target // per_vehicle)
    store = PostgresStore(url, maintain_every_s=0)
    await store.open()
    await ensure_span(store, now_ms - (SPAN_DAYS + 1) * DAY_MS, now_ms + DAY_MS)
    await store.close()
    conn = await raw_connection(url)
    deadline = time.monotonic() + load_seconds
    t0 = time.perf_counter()
    loaded, chunk = 0, []
    for r in fleet_rows(vehicles, per_vehicle, now_ms, seed=3):
        chunk.append(raw_record(r))
        if len(chunk) == 50_000:
            await conn.copy_records_to_table("vehicle_telemetry", columns=_RAW_COLUMNS,
                                              records=chunk)
            loaded += len(chunk)
            chunk = []
            if time.monotonic() > deadline:
                break
    if chunk:
        await conn.copy_records_to_table("vehicle_telemetry", columns=_RAW_COLUMNS,
                                          records=chunk)
        loaded += len(chunk)
    load_s = time.perf_counter() - t0
    await conn.execute("ANALYZE vehicle_telemetry")
    await conn.close()
    return loaded, loaded // per_vehicle, load_s  # vehicles loaded completely


async def query_latency(url: str, vehicles: int, now_ms: int) -> dict:
    store = PostgresStore(url, maintain_every_s=0)
    await store.open()
    ring = [[CENTER[0] + 0.05 * math.cos(a / 8 * 2 * math.pi),
             CENTER[1] + 0.03 * math.sin(a / 8 * 2 * math.pi)] for a in range(8)]
    await store.put_geofence("center", "City centre", {"type": "Polygon",
                                                       "coordinates": [ring + [ring[0]]]})
    rng = random.Random(4)
    route_ms, route_points, ds_ms = [], 0, []
    for _ in range(20):
        vid = f"veh-{rng.randrange(vehicles):05d}"
        t0 = time.perf_counter()
        feature = await queries.route(store, vid, now=now_ms)
        route_ms.append((time.perf_counter() - t0) * 1000)
        route_points = feature["properties"]["points"]
        t0 = time.perf_counter()
        await queries.route(store, vid, now=now_ms, max_points=500)
        ds_ms.append((time.perf_counter() - t0) * 1000)
    geo_ms, entered = [], None
    for _ in range(5):
        t0 = time.perf_counter()
        answer = await queries.geofence_entries(store, "center", now=now_ms)
        geo_ms.append((time.perf_counter() - t0) * 1000)
        entered = answer
    await store.close()
    return {"route_ms": route_ms, "route_points": route_points, "route_ds_ms": ds_ms,
            "geo_ms": geo_ms, "geo_vehicles": len(entered["vehicles"]),
            "geo_entries": len(entered["entries"])}


def _p(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=200_000, help="rows for the throughput run")
    ap.add_argument("--load-seconds", type=float, default=120, help="time budget for the load")
    ap.add_argument("--max-rows", type=float, default=10e6, help="cap for the query table")
    ap.add_argument("--skip-queries", action="store_true")
    args = ap.parse_args()
    now_ms = (wall_ms() // DAY_MS) * DAY_MS + DAY_MS // 2  # today 12:00 UTC
    with PgServer(settings=DURABLE) as server:
        url = server.create_database("bench")
        t = await throughput(url, args.rows, now_ms)
        print("\n## Writer throughput (same rows, same run)")
        print("| path | rows | readings/s |\n|---|---:|---:|")
        print(f"| raw COPY into vehicle_telemetry | {t['rows']:,} | {t['raw_per_s']:,.0f} |")
        print(f"| BatchWriter + PostgresStore | {t['rows']:,} | {t['writer_per_s']:,.0f} |")
        print(f"| ratio writer / raw | | {t['writer_per_s'] / t['raw_per_s']:.2f}x |")
        if args.skip_queries:
            return
        loaded, vehicles, load_s = await load_large(url, args.load_seconds, int(args.max_rows),
                                                    now_ms, t["raw_per_s"])
        q = await query_latency(url, vehicles, now_ms)
        print(f"\n## Query latency on {loaded:,} rows ({vehicles} vehicles, a position every "
              f"{INTERVAL_MS // 1000} s for up to {SPAN_DAYS} days; loaded in {load_s:.0f} s)")
        print("| query | median ms | p95 ms | answer |\n|---|---:|---:|---|")
        print(f"| route of one vehicle, last 48 h (20 vehicles) | "
              f"{statistics.median(q['route_ms']):.1f} | {_p(q['route_ms'], 0.95):.1f} | "
              f"{q['route_points']} points |")
        print(f"| same, downsampled to ≤500 points | {statistics.median(q['route_ds_ms']):.1f} |"
              f" {_p(q['route_ds_ms'], 0.95):.1f} | |")
        print(f"| vehicles that entered geofence yesterday (5 runs) | "
              f"{statistics.median(q['geo_ms']):.1f} | {_p(q['geo_ms'], 0.95):.1f} | "
              f"{q['geo_vehicles']} vehicles, {q['geo_entries']} entries |")


if __name__ == "__main__":
    asyncio.run(main())
