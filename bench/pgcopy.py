"""The COPY baseline the PostgreSQL ingest benches measure against: the readings table's rows
as COPY records, and a timed COPY of them into the same schema (bench_loadtest's ingest row,
bench_storm_ingest)."""

from __future__ import annotations

import struct
import time
from datetime import UTC, datetime

from backend.store.base import StoredReading

COPY_CHUNK = 5000  # rows per COPY transaction: the writer's largest transaction
DAY_MS = 86_400_000
COLUMNS = ("time", "vehicle_id", "epoch", "seq", "kind", "location", "speed_kmh", "course_deg",
           "alt_m", "fix", "sats", "hdop", "signals", "received_at")


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def copy_record(s: StoredReading) -> tuple:
    """One row of `vehicle_telemetry` for COPY (the position as EWKB, SRID 4326)."""
    loc = (struct.pack("<BIIdd", 1, 0x20000001, 4326, s.lon, s.lat)
           if s.lon is not None and s.lat is not None else None)
    return (dt(s.time_ms), s.vehicle_id, s.epoch, s.seq, s.kind, loc, s.speed_kmh, s.course_deg,
            s.alt_m, s.fix, s.sats, s.hdop, s.data_json(), dt(s.received_ms))


async def timed_copy(conn, records: list[tuple]) -> float:
    """COPY `records` into the (empty) `vehicle_telemetry` on `conn` in COPY_CHUNK
    transactions: rows per second."""
    await conn.set_type_codec("geometry", schema="public", encoder=lambda b: b,
                              decoder=bytes, format="binary")
    t0 = time.perf_counter()
    for i in range(0, len(records), COPY_CHUNK):
        async with conn.transaction():
            await conn.copy_records_to_table("vehicle_telemetry", columns=COLUMNS,
                                             records=records[i:i + COPY_CHUNK])
    elapsed = time.perf_counter() - t0
    assert await conn.fetchval("SELECT count(*) FROM vehicle_telemetry") == len(records)
    return len(records) / elapsed
