"""The PostgreSQL store's write path.

A batch is one transaction. Rows that cannot be stored yet (by what this process committed
before, `CommittedRanges`) are copied straight into the readings table by binary COPY, the
transaction's first statement: the database's own bulk path, the same as loading the table.
Rows this process may have stored already (a batch re-sent after a lost ack) go the checking
way; when the straight COPY hits the table's unique key (someone else stored one: another
gateway process, or this one before a restart), the transaction is rolled back (nothing but
that COPY was in it) and done again with all rows the checking way. No savepoint: it cost two
round trips per transaction (SAVEPOINT, RELEASE), each a turn of the gateway's event loop. The
checking way: one `INSERT … SELECT … FROM unnest(…) ON CONFLICT DO NOTHING` of the rows as
arrays (exactly once: a re-sent reading is a no-op; no session state, so it works behind a
transaction-pooling PgBouncer). Then one statement upserts each vehicle's newest position and
CAN signals (never backwards in device time; picked in Python, so the statement touches one
`last_position` and one `last_can` row per vehicle instead of re-reading the batch), then dead
letters. A row the database refuses fails the transaction either way, and the writer isolates
it (dead letter).

Both ways store the same values: time as `epoch + ms`, the position as the EWKB point that
`ST_SetSRID(ST_MakePoint(lon, lat), 4326)` makes, so a reading re-sent through the other way
meets its first copy's unique key.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import asyncpg

from ..base import DeadLetter, StoredReading
from ..committed import CommittedRanges
from ..rows import can_json, json_text, signal_json
from .db import MS as _MS
from .partitions import PostgresPartitions

# in StoredReading's field order (`write_plan` makes a record from its fields in one C call;
# `lat`, `lon` become `location`)
_COLUMNS = ("vehicle_id", "epoch", "seq", "time", "kind", "location", "alt_m", "speed_kmh",
            "course_deg", "fix", "sats", "hdop", "signals", "received_at")
# The checking way, one statement: the rows as one array per column, each inserted unless its
# key is stored (exactly once: a re-sent reading is a no-op). Before, the rows went by COPY
# into a temporary table made by the transaction and then `INSERT … SELECT`: three round trips
# and a table created and dropped in the catalog per transaction, ~4 ms of the server's CPU
# for a transaction of 40 rows (100 µs a row, against ~15 µs the straight way), paid by every
# transaction holding one re-sent reading (docs/benchmarks.md, "PostgreSQL, session 12").
_INSERT_CHECKED = f"""INSERT INTO vehicle_telemetry (time, vehicle_id, epoch, seq, kind,
        location, speed_kmh, course_deg, alt_m, fix, sats, hdop, signals, received_at)
    SELECT {_MS.format('t')}, v, e, q, k,
        CASE WHEN lon IS NULL OR lat IS NULL THEN NULL
             ELSE ST_SetSRID(ST_MakePoint(lon, lat), 4326) END,
        spd, crs, alt, fix, sats, hdop, sig::jsonb, {_MS.format('rcv')}
    FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[],
                $6::float8[], $7::float8[], $8::real[], $9::real[], $10::real[],
                $11::smallint[], $12::smallint[], $13::real[], $14::text[], $15::bigint[])
        AS u(t, v, e, q, k, lon, lat, spd, crs, alt, fix, sats, hdop, sig, rcv)
    ON CONFLICT DO NOTHING"""
# $1–$8: one newest position per vehicle; $9–$11: each vehicle's newest CAN values as one
# object {signal: [value, time_ms]} (one row per vehicle, not per signal: migration 0030), the
# objects as one JSON array (one text for the transaction, made without the encoder). When
# every incoming value is newer than every stored one (a vehicle's next snapshot: the common
# case) the objects merge with `||`; otherwise signal by signal, the newer time winning and the
# stored value on a tie (backfill never moves a value backwards). The ids and integers come
# as array literals in text (`_texts`, `_ints`: one `join` or `repr` in C per array), the
# floats as binary arrays: asyncpg's binary array encoder asks an ABC `isinstance` of every
# element (two of a string), and with every array binary the statement cost the writer's
# thread 4.0–4.5 µs per reading at 200 readings per transaction, 2.6–3.2 µs so (a float's
# `repr` costs more than its binary encoding; docs/benchmarks.md, "PostgreSQL, session 13").
_LATEST = f"""WITH pos AS (
    INSERT INTO last_position AS p (vehicle_id, time, location, speed_kmh, course_deg, epoch, seq)
    SELECT v, {_MS.format('t')}, ST_SetSRID(ST_MakePoint(lon, lat), 4326), spd, crs, e, q
    FROM unnest($1::text::text[], $2::text::bigint[], $3::float8[], $4::float8[], $5::real[],
                $6::real[], $7::text::bigint[], $8::text::bigint[])
        AS u(v, t, lon, lat, spd, crs, e, q)
    ON CONFLICT (vehicle_id) DO UPDATE SET time = excluded.time, location = excluded.location,
        speed_kmh = excluded.speed_kmh, course_deg = excluded.course_deg, epoch = excluded.epoch,
        seq = excluded.seq
    WHERE excluded.time > p.time
    RETURNING 1)
INSERT INTO last_can AS c (vehicle_id, newest_ms, signals)
    SELECT v, n, s FROM ROWS FROM (unnest($9::text::text[]), unnest($10::text::bigint[]),
                                   jsonb_array_elements($11::jsonb)) AS u(v, n, s)
    ON CONFLICT (vehicle_id) DO UPDATE SET
        signals = CASE
            WHEN NOT EXISTS (SELECT FROM jsonb_each(excluded.signals) e
                             WHERE (e.value->>1)::bigint <= c.newest_ms)
            THEN c.signals || excluded.signals
            ELSE (SELECT jsonb_object_agg(k, x) FROM (
                SELECT DISTINCT ON (k) k, x FROM (
                    SELECT key, value, 0 FROM jsonb_each(c.signals)
                    UNION ALL SELECT key, value, 1 FROM jsonb_each(excluded.signals))
                    AS e(k, x, incoming)
                ORDER BY k, (x->>1)::bigint DESC, incoming) newest) END,
        newest_ms = greatest(c.newest_ms, excluded.newest_ms)"""
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


def _checked_args(readings: list[StoredReading]) -> list[list]:
    """`_INSERT_CHECKED`'s arrays: one list per column."""
    return [list(column) for column in zip(*[
        (r.time_ms, r.vehicle_id, r.epoch, r.seq, r.kind, r.lon, r.lat, r.speed_kmh,
         r.course_deg, r.alt_m, r.fix, r.sats, r.hdop, r.data_json(), r.received_ms)
        for r in readings], strict=True)]


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
                records: list[tuple]) -> None:
    """COPY `records` into `table`, in pieces of ≤ COPY_PIECE_BYTES."""
    signals = columns.index("signals")
    start = size = 0
    for i, row in enumerate(records):
        size += _ROW_BYTES + len(row[signals] or "")
        if size >= COPY_PIECE_BYTES:
            await conn.copy_records_to_table(table, columns=columns, records=records[start:i + 1])
            start, size = i + 1, 0
    if start < len(records):
        await conn.copy_records_to_table(table, columns=columns, records=records[start:])


async def _ewkb_codec(conn: asyncpg.Connection) -> None:
    """Positions go to COPY as the EWKB bytes `_copy_record` makes, times as milliseconds."""
    await conn.set_type_codec("geometry", schema="public", encoder=bytes, decoder=bytes,
                              format="binary")
    await conn.set_type_codec("timestamptz", schema="pg_catalog", encoder=_encode_time,
                              decoder=_decode_time, format="tuple")


# The JSON of signal names seen, with its colon (a fleet's CAN names are a few dozen); at most
# this many, so names a vehicle makes up cannot grow it without bound.
_NAME_JSON_MAX = 4096
_name_json: dict[str, str] = {}


class WritePlan(NamedTuple):
    """What one transaction writes, from `write_plan`."""

    straight: list[tuple]  # COPY records (_COLUMNS) of rows that cannot be stored yet
    check: list[StoredReading]  # rows that may be stored already: the checking way
    latest: tuple | None  # _LATEST's arguments (None: no position or signal in the batch)
    committed: dict[tuple[str, int], list[int]]  # (vehicle, epoch) → seqs, once committed


def write_plan(readings: list[StoredReading],
               maybe_stored: Callable[[str, int, int], bool]) -> WritePlan:
    """One pass over a transaction's readings: which go straight (not stored by this process
    before, `maybe_stored`, nor repeated within the batch) as their COPY records, which the
    checking way; each vehicle's newest position (by time, epoch, seq, as the table's order)
    and its newest value of every CAN signal (`bus` is not one; a later device time wins, the
    first of equal times stays), as `_LATEST`'s arguments; the sequence numbers to remember
    once committed.

    Why one pass and hand-made JSON: the writer's thread holds the GIL for all of it, against
    the gateway's event loop; a record, the newest-value arguments and the routing took
    1.83 + 1.43 µs per reading and more in three passes (docs/benchmarks.md, "PostgreSQL,
    session 12"). A vehicle's first CAN snapshot has its numbers written once each
    (`can_json`), for its row's JSON and for `last_can` alike; its later ones (a drained
    backlog: ~50 per vehicle in a batch of 200) are written by the JSON encoder in C, and only
    the newest value of each signal once more (`_can_args`): `can_json` of every snapshot was
    a third of the writer's thread in a storm (docs/benchmarks.md, "PostgreSQL, session 13")."""
    straight: list[tuple] = []
    check: list[StoredReading] = []
    keys: set[tuple] = set()
    committed: dict[tuple[str, int], list[int]] = {}
    positions: dict[str, tuple] = {}
    # each vehicle's snapshots: the first as (time, [(signal, value JSON)]), later ones as
    # (time, the snapshot itself), their values' JSON made only for the values that win
    cans: dict[str, list[tuple[int, Any]]] = {}
    pack = _POINT.pack
    for r in readings:
        v, e, q, t, kind, lat, lon, data = (r.vehicle_id, r.epoch, r.seq, r.time_ms, r.kind,
                                            r.lat, r.lon, r.data)
        seqs = committed.get((v, e))
        if seqs is None:
            committed[(v, e)] = [q]
        else:
            seqs.append(q)
        if lat is None or lon is None:
            point = None
        else:
            point = pack(1, _POINT_TYPE, _SRID, lon, lat)
            if kind == "pos":
                best = positions.get(v)
                if best is None or t > best[1] or (t == best[1] and (e, q) > (best[6], best[7])):
                    positions[v] = (v, t, lon, lat, r.speed_kmh, r.course_deg, e, q)
        text = None
        if data is not None:
            if kind == "can" and isinstance(data, dict):
                same = cans.get(v)
                if same is None:  # a vehicle's first snapshot: its values' JSON in one pass
                    text, values = can_json(data)
                    if values:
                        cans[v] = [(t, values)]
                else:  # a later one (a backlog): the row's JSON in C, its values if they win
                    text = json_text(data)
                    if len(data) > ("bus" in data):
                        same.append((t, data))
            else:
                text = json_text(data)
        key = (v, e, q, t)
        if key in keys or maybe_stored(v, e, q):
            check.append(r)  # a repeat within the transaction, or committed here before
            continue
        keys.add(key)
        straight.append((v, e, q, t, kind, point, r.alt_m, r.speed_kmh, r.course_deg, r.fix,
                         r.sats, r.hdop, text, r.received_ms))
    if not positions and not cans:
        return WritePlan(straight, check, None, committed)
    columns = list(zip(*positions.values(), strict=True)) or [()] * 8
    vehicles, newest, objects = _can_args(cans)
    return WritePlan(straight, check, (
        _texts(columns[0]), _ints(columns[1]), *columns[2:6], _ints(columns[6]),
        _ints(columns[7]), _texts(vehicles), _ints(newest), objects), committed)


_INT = frozenset((int,))


def _ints(values: Sequence[int]) -> str:
    """A PostgreSQL array literal of integers, by `repr` of the list (in C, not element by
    element). A value not exactly an int (a bool: not what validation lets through) is made
    one, as asyncpg's binary encoder did."""
    if not _INT.issuperset(map(type, values)):
        values = [int(v) for v in values]
    return "{" + repr(list(values))[1:-1] + "}"


def _texts(values: Sequence[str]) -> str:
    """A PostgreSQL array literal of strings, each quoted (backslash and double quote
    escaped: array_in's rules)."""
    if not values:
        return "{}"
    if '"' in (joined := "".join(values)) or "\\" in joined:
        values = [v.replace("\\", "\\\\").replace('"', '\\"') for v in values]
    return '{"' + '","'.join(values) + '"}'


def _can_args(cans: dict[str, list[tuple[int, Any]]]) -> tuple[list, list, str]:
    """_LATEST's $9–$11: vehicles, the newest time of each one's values, and their objects
    {signal: [value, time_ms]} as one JSON array, from each vehicle's snapshots: the first as
    (time, [(signal, value JSON)]), later ones as (time, the snapshot); a later device time
    wins, the first of equal times stays."""
    vehicles: list[str] = []
    newest: list[int] = []
    objects: list[str] = []
    for vehicle, snapshots in cans.items():
        if len(snapshots) == 1:
            t, values = snapshots[0]
            tail = f",{t}]"
            parts = [_name(name) + "[" + value + tail for name, value in values]
        else:
            t, values = snapshots[0]
            by_name: dict[str, tuple[Any, int, bool]] = {
                name: (value, t, True) for name, value in values}
            for when, data in snapshots[1:]:
                t = max(t, when)
                for name, value in data.items():
                    if name != "bus" and (name not in by_name or when > by_name[name][1]):
                        by_name[name] = (value, when, False)
            parts = [f"{_name(name)}[{value if text else signal_json(value)},{when}]"
                     for name, (value, when, text) in by_name.items()]
        vehicles.append(vehicle)
        newest.append(t)
        objects.append("{" + ",".join(parts) + "}")
    return vehicles, newest, "[" + ",".join(objects) + "]"


def _name(name: str) -> str:
    """A signal's name as a JSON object key with its colon."""
    key = _name_json.get(name)
    if key is None:
        key = json_text(str(name)) + ":"
        if len(_name_json) < _NAME_JSON_MAX:
            _name_json[name] = key
    return key


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
            plan = write_plan(readings, self._committed.maybe_stored)
            done = False
            if plan.straight and self._write_pool is not None:
                try:
                    await self._transaction(conn, plan.straight, plan.check, plan.latest, dead)
                    done = True
                except asyncpg.UniqueViolationError:
                    self.copy_conflicts += 1  # stored by someone this process does not know of
                except asyncpg.InternalClientError:  # "no binary format encoder for geometry"
                    await _ewkb_codec(conn)  # migrated after this connection was made
            if not done:  # every row the checking way
                await self._transaction(conn, [], readings, plan.latest, dead)
        for (vehicle, epoch), seqs in plan.committed.items():
            self._committed.add(vehicle, epoch, seqs)

    async def _transaction(self, conn: asyncpg.Connection, straight: list[tuple],
                           check: list[StoredReading], latest: tuple | None,
                           dead: list[DeadLetter]) -> None:
        """One transaction: `straight` (COPY records) into the table (first: a conflict there
        undoes nothing else), `check` the checking way (each at most once), the newest
        position and signals (`latest`: `_LATEST`'s arguments), the dead letters."""
        async with conn.transaction():
            if straight:
                await _copy(conn, "vehicle_telemetry", _COLUMNS, straight)
            if check:
                self.checked_rows += len(check)
                await conn.execute(_INSERT_CHECKED, *_checked_args(check))
            if latest is not None:
                await conn.execute(_LATEST, *latest)
            if dead:
                await conn.executemany(_DEAD, [
                    (d.vehicle_id, d.epoch, d.seq, json.dumps(d.reading, default=str),
                     d.error, d.received_ms) for d in dead])
