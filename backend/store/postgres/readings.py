"""The PostgreSQL store's write path.

A batch is one transaction. Rows that cannot be stored yet (by what this process committed
before, `CommittedRanges`) are copied straight into the readings table by binary COPY, the
transaction's first statement: the database's own bulk path, the same as loading the table.
Rows this process may have stored already (a batch re-sent after a lost ack) go the checking
way; when the straight COPY hits the table's unique key (someone else stored one: another
gateway process, or this one before a restart), the transaction is rolled back (nothing but
that COPY was in it) and done again with all rows the checking way. No savepoint: it cost
two round trips per transaction (SAVEPOINT, RELEASE), each a turn of the gateway's event loop.
The checking way: COPY into a temporary staging table made in that
transaction (`ON COMMIT DROP`: nothing outlives the transaction, so it works behind a
transaction-pooling PgBouncer, where the next transaction may run on another server
connection), then `INSERT … SELECT … ON CONFLICT DO NOTHING` (exactly once: a re-sent reading
is a no-op). Then one statement upserts each vehicle's newest position and CAN signals (never
backwards in device time; picked in Python, so the statement touches one row per vehicle and
signal instead of re-reading the batch), then dead letters. A row the database refuses fails
the transaction either way, and the writer isolates it (dead letter).

Both ways store the same values: time as `epoch + ms`, the position as the EWKB point that
`ST_SetSRID(ST_MakePoint(lon, lat), 4326)` makes, so a reading re-sent through the other way
meets its first copy's unique key.
"""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime, timedelta

import asyncpg

from ..base import DeadLetter, StoredReading, newest_signals
from ..committed import CommittedRanges
from ..rows import json_text
from .db import MS as _MS
from .partitions import PostgresPartitions

_COLUMNS = ("time", "vehicle_id", "epoch", "seq", "kind", "location", "speed_kmh", "course_deg",
            "alt_m", "fix", "sats", "hdop", "signals", "received_at")
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
# $1–$8: one newest position per vehicle; $9–$12: one newest value per (vehicle, signal), the
# values as one JSON array ($11: one encoder call per transaction; a call per value cost
# ~2 µs each, 8 per CAN snapshot)
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
    SELECT v, k, val, {_MS.format('t')}
    FROM ROWS FROM (unnest($9::text[]), unnest($10::text[]), jsonb_array_elements($11::jsonb),
                    unnest($12::bigint[])) AS u(v, k, val, t)
    ON CONFLICT (vehicle_id, signal) DO UPDATE SET value = excluded.value, time = excluded.time
    WHERE excluded.time > s.time"""
_DEAD = f"""INSERT INTO dead_letter (vehicle_id, epoch, seq, reading, error, received_at)
    VALUES ($1, $2, $3, $4::jsonb, $5, {_MS.format('$6::bigint')})
    ON CONFLICT DO NOTHING"""


_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_PG_EPOCH_US = 946_684_800_000_000  # _PG_EPOCH in µs since 1970
_US = timedelta(microseconds=1)
# EWKB of a 2D point with SRID 4326 (little endian, the SRID flag set), as PostGIS makes it
_POINT = struct.Struct("<BIIdd")
_POINT_TYPE = 0x20000001
_SRID = 4326


def _copy_record(r: StoredReading) -> tuple:
    """`r` as a row of vehicle_telemetry for binary COPY (`_COLUMNS`)."""
    loc = (None if r.lon is None or r.lat is None
           else _POINT.pack(1, _POINT_TYPE, _SRID, r.lon, r.lat))
    return (r.time_ms, r.vehicle_id, r.epoch, r.seq, r.kind, loc, r.speed_kmh,
            r.course_deg, r.alt_m, r.fix, r.sats, r.hdop, r.data_json(), r.received_ms)


def _staging_record(r: StoredReading) -> tuple:
    return (r.time_ms, r.vehicle_id, r.epoch, r.seq, r.kind, r.lon, r.lat, r.speed_kmh,
            r.course_deg, r.alt_m, r.fix, r.sats, r.hdop, r.data_json(), r.received_ms)


def _encode_time(value: int | datetime) -> tuple[int]:
    """timestamptz on the wire: µs since 2000-01-01 UTC, from ms since 1970 (`_copy_record`:
    exact integer arithmetic, and no datetime per row) or a datetime (other statements)."""
    if isinstance(value, datetime):
        return ((value - _PG_EPOCH) // _US,)
    return (value * 1000 - _PG_EPOCH_US,)


def _decode_time(value: tuple[int]) -> datetime:
    return _PG_EPOCH + timedelta(microseconds=value[0])


# Bytes of records per COPY statement, below asyncpg's 512 KiB copy buffer: asyncpg (0.32)
# waits for the transport to take more only between such buffers, and that wait has no
# timeout and is not woken when the connection is lost, so a COPY that filled it while the
# server died hung the writer for good. Below it, a lost connection fails the COPY's result.
COPY_PIECE_BYTES = 256 * 1024
# what a row costs in binary COPY besides its signals' JSON (15 fields, their lengths, text ids)
_ROW_BYTES = 200


async def _copy(conn: asyncpg.Connection, table: str, columns: tuple[str, ...],
                readings: list[StoredReading], record) -> None:
    """COPY `record(r)` of every reading into `table`, in pieces of ≤ COPY_PIECE_BYTES."""
    piece: list[tuple] = []
    size = 0
    signals = columns.index("signals")
    for r in readings:
        row = record(r)
        piece.append(row)
        size += _ROW_BYTES + len(row[signals] or "")
        if size >= COPY_PIECE_BYTES:
            await conn.copy_records_to_table(table, columns=columns, records=piece)
            piece, size = [], 0
    if piece:
        await conn.copy_records_to_table(table, columns=columns, records=piece)


async def _ewkb_codec(conn: asyncpg.Connection) -> None:
    """Positions go to COPY as the EWKB bytes `_copy_record` makes, times as milliseconds."""
    await conn.set_type_codec("geometry", schema="public", encoder=bytes, decoder=bytes,
                              format="binary")
    await conn.set_type_codec("timestamptz", schema="pg_catalog", encoder=_encode_time,
                              decoder=_decode_time, format="tuple")


def _latest_args(readings: list[StoredReading]) -> tuple[list | str, ...]:
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
            json_text([value for value, _ in signals.values()]),
            [t for _, t in signals.values()])


class PostgresReadings(PostgresPartitions):
    """`write` on the writer's own pool (`_write_pool`) and loop (`_write_loop`), after making
    sure the batch's days have partitions."""

    _committed: CommittedRanges

    def _init_readings(self) -> None:
        self._committed = CommittedRanges()
        # rows that went the checking way, and straight COPYs that met a stored row (benchmarks)
        self.checked_rows = self.copy_conflicts = 0

    async def _init_write_connection(self, conn: asyncpg.Connection) -> None:
        """The writer's connections send positions to COPY as EWKB (client-side state only)."""
        await self._init_connection(conn)
        try:
            await _ewkb_codec(conn)
        except ValueError:  # "unknown type": not migrated yet; `_write` sets it once it is
            pass

    async def write(self, readings: list[StoredReading], dead: list[DeadLetter]) -> None:
        """One transaction on the writer's own loop (backend/store/write_loop.py: its round
        trips do not wait for the gateway loop's turns)."""
        if self._write_loop.running:
            await self._write_loop.call(self._write_with_partitions, readings, dead)
        else:  # not open: fails on the query pool as any other call would
            await self._write_with_partitions(readings, dead)

    async def _write_with_partitions(self, readings: list[StoredReading],
                                     dead: list[DeadLetter]) -> None:
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
            straight, check = self._route(readings)
            done = False
            if straight and self._write_pool is not None:
                try:
                    await self._transaction(conn, readings, dead, straight, check)
                    done = True
                except asyncpg.UniqueViolationError:
                    self.copy_conflicts += 1  # stored by someone this process does not know of
                except asyncpg.InternalClientError:  # "no binary format encoder for geometry"
                    await _ewkb_codec(conn)  # migrated after this connection was made
            if not done:  # every row the checking way
                await self._transaction(conn, readings, dead, [], readings)
        committed: dict[tuple[str, int], list[int]] = {}
        for r in readings:
            committed.setdefault((r.vehicle_id, r.epoch), []).append(r.seq)
        for (vehicle, epoch), seqs in committed.items():
            self._committed.add(vehicle, epoch, seqs)

    def _route(self, readings: list[StoredReading]) -> tuple[list[StoredReading],
                                                             list[StoredReading]]:
        """(rows that cannot be stored yet: the straight COPY's, rows that may be: checked)."""
        fresh: list[StoredReading] = []
        check: list[StoredReading] = []
        keys: set[tuple] = set()
        maybe_stored = self._committed.maybe_stored
        for r in readings:
            key = (r.vehicle_id, r.epoch, r.seq, r.time_ms)
            if key in keys or maybe_stored(r.vehicle_id, r.epoch, r.seq):
                check.append(r)  # a repeat within the transaction, or committed here before
            else:
                keys.add(key)
                fresh.append(r)
        return fresh, check

    async def _transaction(self, conn: asyncpg.Connection, readings: list[StoredReading],
                           dead: list[DeadLetter], straight: list[StoredReading],
                           check: list[StoredReading]) -> None:
        """One transaction: `straight` by COPY into the table (first: a conflict there undoes
        nothing else), `check` the checking way (each at most once), the newest position and
        signals of `readings`, the dead letters."""
        async with conn.transaction():
            if straight:
                await _copy(conn, "vehicle_telemetry", _COLUMNS, straight, _copy_record)
            if check:
                self.checked_rows += len(check)
                await conn.execute(_CREATE_STAGING)
                await _copy(conn, "telemetry_staging", _STAGING_COLUMNS, check,
                            _staging_record)
                await conn.execute(_INSERT)
            if readings:
                latest = _latest_args(readings)
                if latest[0] or latest[8]:
                    await conn.execute(_LATEST, *latest)
            if dead:
                await conn.executemany(_DEAD, [
                    (d.vehicle_id, d.epoch, d.seq, json.dumps(d.reading, default=str),
                     d.error, d.received_ms) for d in dead])
