"""The PostgreSQL store's write path.

A batch is one transaction: COPY into a temporary staging table made in that transaction
(`ON COMMIT DROP`: nothing outlives the transaction, so it works behind a transaction-pooling
PgBouncer, where the next transaction may run on another server connection), then
`INSERT … SELECT … ON CONFLICT DO NOTHING` into the partitioned table (exactly once: a re-sent
reading is a no-op), then one statement upserting each vehicle's newest position and CAN
signals (never backwards in device time; picked in Python, so the statement touches one row
per vehicle and signal instead of re-reading the batch), then dead letters.
"""

from __future__ import annotations

import json

import asyncpg

from ..base import DeadLetter, StoredReading, newest_signals
from .db import MS as _MS
from .partitions import PostgresPartitions

_STAGING_COLUMNS = ("time_ms", "vehicle_id", "epoch", "seq", "kind", "lon", "lat", "speed_kmh",
                    "course_deg", "alt_m", "fix", "sats", "hdop", "signals", "received_ms")
# signals arrive as jsonb (COPY parses each once; as text they were parsed again per use)
_CREATE_STAGING = """CREATE TEMP TABLE telemetry_staging (
    time_ms bigint, vehicle_id text, epoch bigint, seq bigint, kind text,
    lon float8, lat float8, speed_kmh real, course_deg real, alt_m real, fix smallint,
    sats smallint, hdop real, signals jsonb, received_ms bigint) ON COMMIT DROP"""
_INSERT = f"""INSERT INTO vehicle_telemetry (time, vehicle_id, epoch, seq, kind, location,
        speed_kmh, course_deg, alt_m, fix, sats, hdop, signals, received_at)
    SELECT {_MS.format('time_ms')}, vehicle_id, epoch, seq, kind,
        CASE WHEN lon IS NULL OR lat IS NULL THEN NULL
             ELSE ST_SetSRID(ST_MakePoint(lon, lat), 4326) END,
        speed_kmh, course_deg, alt_m, fix, sats, hdop, signals, {_MS.format('received_ms')}
    FROM telemetry_staging
    ON CONFLICT DO NOTHING"""
# $1–$8: one newest position per vehicle; $9–$12: one newest value per (vehicle, signal)
_LATEST = f"""WITH pos AS (
    INSERT INTO last_position AS p (vehicle_id, time, location, speed_kmh, course_deg, epoch, seq)
    SELECT v, {_MS.format('t')}, ST_SetSRID(ST_MakePoint(lon, lat), 4326), spd, crs, e, q
    FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::float8[], $5::real[], $6::real[],
                $7::bigint[], $8::bigint[]) AS u(v, t, lon, lat, spd, crs, e, q)
    ON CONFLICT (vehicle_id) DO UPDATE SET time = excluded.time, location = excluded.location,
        speed_kmh = excluded.speed_kmh, course_deg = excluded.course_deg, epoch = excluded.epoch,
        seq = excluded.seq
    WHERE excluded.time > p.time
    RETURNING 1)
INSERT INTO last_signal AS s (vehicle_id, signal, value, time)
    SELECT v, k, val::jsonb, {_MS.format('t')}
    FROM unnest($9::text[], $10::text[], $11::text[], $12::bigint[]) AS u(v, k, val, t)
    ON CONFLICT (vehicle_id, signal) DO UPDATE SET value = excluded.value, time = excluded.time
    WHERE excluded.time > s.time"""
_DEAD = f"""INSERT INTO dead_letter (vehicle_id, epoch, seq, reading, error, received_at)
    VALUES ($1, $2, $3, $4::jsonb, $5, {_MS.format('$6::bigint')})
    ON CONFLICT DO NOTHING"""


def _latest_args(readings: list[StoredReading]) -> tuple[list, ...]:
    """The arrays of `_LATEST`: each vehicle's newest position (by time, epoch, seq, as the
    table's order) and each vehicle's newest value of every CAN signal (`bus` is not one)."""
    pos: dict[str, StoredReading] = {}
    for r in readings:
        if r.kind == "pos" and r.lon is not None and r.lat is not None:
            best = pos.get(r.vehicle_id)
            if best is None or (r.time_ms, r.epoch, r.seq) > (best.time_ms, best.epoch, best.seq):
                pos[r.vehicle_id] = r
    signals = newest_signals(readings)
    return ([r.vehicle_id for r in pos.values()], [r.time_ms for r in pos.values()],
            [r.lon for r in pos.values()], [r.lat for r in pos.values()],
            [r.speed_kmh for r in pos.values()], [r.course_deg for r in pos.values()],
            [r.epoch for r in pos.values()], [r.seq for r in pos.values()],
            [v for v, _ in signals], [k for _, k in signals],
            [json.dumps(value, separators=(",", ":"), default=str)
             for value, _ in signals.values()],
            [t for _, t in signals.values()])


class PostgresReadings(PostgresPartitions):
    """`write` on the writer's own pool (`_write_pool`), after making sure the batch's days
    have partitions."""

    async def write(self, readings: list[StoredReading], dead: list[DeadLetter]) -> None:
        try:
            await self._write(readings, dead)
        except asyncpg.CheckViolationError as exc:
            if "no partition" not in str(exc):
                raise
            self._days.clear()  # dropped by someone else's maintenance: re-create once
            await self._write(readings, dead)

    async def _write(self, readings: list[StoredReading], dead: list[DeadLetter]) -> None:
        async with (self._write_pool or self._pool).acquire() as conn:
            await self._ensure_partitions(conn, readings)
            async with conn.transaction():
                if readings:
                    await conn.execute(_CREATE_STAGING)
                    await conn.copy_records_to_table(
                        "telemetry_staging", columns=_STAGING_COLUMNS, records=[
                            (r.time_ms, r.vehicle_id, r.epoch, r.seq, r.kind, r.lon, r.lat,
                             r.speed_kmh, r.course_deg, r.alt_m, r.fix, r.sats, r.hdop,
                             r.data_json(), r.received_ms) for r in readings])
                    await conn.execute(_INSERT)
                    latest = _latest_args(readings)
                    if latest[0] or latest[8]:
                        await conn.execute(_LATEST, *latest)
                if dead:
                    await conn.executemany(_DEAD, [
                        (d.vehicle_id, d.epoch, d.seq, json.dumps(d.reading, default=str),
                         d.error, d.received_ms) for d in dead])
