"""Alert and evaluator-checkpoint tables of the PostgreSQL store (sql/postgres/0005_alerts.sql).

Times are timestamptz in the tables and epoch ms in the Store API, as elsewhere in this store.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

import asyncpg

from ..base import TIME_RULES, AlertQuery, StoredAlert, StoredReading
from ..rows import made
from .db import EPOCH_MS as _EPOCH_MS
from .db import MS as _MS
from .db import PostgresDb

T = TypeVar("T", StoredReading, StoredAlert)

_READING_COLUMNS = (f"vehicle_id, epoch, seq, {_EPOCH_MS.format('time')}, kind, "
                    "ST_Y(location), ST_X(location), alt_m, speed_kmh, course_deg, fix, sats, "
                    "hdop, "
                    f"signals::text, {_EPOCH_MS.format('received_at')}")
_ALERT_COLUMNS = (f"id, rule, vehicle_id, subject, {_EPOCH_MS.format('start_time')}, "
                  f"{_EPOCH_MS.format('end_time')}, peak, state, lat, lon, detail::text, "
                  f"{_EPOCH_MS.format('decided_time')}, acknowledged_by, "
                  f"{_EPOCH_MS.format('acknowledged_at')}")
_NOT_TIMED = f"rule NOT IN ({', '.join(repr(r) for r in TIME_RULES)})"
_UPSERT = f"""INSERT INTO alerts AS a (rule, vehicle_id, subject, start_time, end_time, peak,
        state, lat, lon, detail, decided_time)
    VALUES ($1, $2, $3, {_MS.format('$4::bigint')}, {_MS.format('$5::bigint')}, $6, $7, $8, $9,
            $10::jsonb, {_MS.format('$11::bigint')})
    ON CONFLICT ON CONSTRAINT alerts_key DO UPDATE SET end_time = excluded.end_time,
        peak = excluded.peak, state = excluded.state, lat = excluded.lat, lon = excluded.lon,
        detail = excluded.detail, decided_time = excluded.decided_time, updated_at = now()
    RETURNING {_ALERT_COLUMNS}, (xmax = 0) AS inserted"""
_KEY = f"rule = $1 AND vehicle_id = $2 AND subject = $3 AND start_time = {_MS.format('$4::bigint')}"
_LOW, _HIGH = -(2**45), 2**62  # "no bound" in epoch ms (_LOW: year ~855, within timestamptz)


_FLOAT4 = struct.Struct("f")  # speed_kmh, course_deg, alt_m and hdop are `real` columns
_FLOAT4X4 = struct.Struct("4f")


def _real(v: float | None) -> float | None:
    try:
        return None if v is None else _FLOAT4.unpack(_FLOAT4.pack(v))[0]
    except (OverflowError, struct.error):  # out of float4's range: PostgreSQL refused it
        return v


def _alert(r) -> StoredAlert:
    return StoredAlert(*r[:10], json.loads(r[10]), *r[11:14])  # type: ignore[call-arg]



def _asks(asks: Sequence[tuple[str, int | None]], unbounded: int) -> tuple[list[str], list[int]]:
    """(vehicles, bounds) arrays of `(vehicle, bound in ms or None)` pairs; None: `unbounded`."""
    return [v for v, _ in asks], [unbounded if t is None else t for _, t in asks]


def _by_vehicle(items: Iterable[T]) -> dict[str, list[T]]:
    """Readings or alerts (each with a `vehicle_id`) grouped by vehicle, in their order."""
    out: dict[str, list[T]] = {}
    for item in items:
        out.setdefault(item.vehicle_id, []).append(item)
    return out


async def _save_changes(conn: asyncpg.Connection, upserts: list, retract: list[tuple],
                        moves: Sequence) -> list[tuple[StoredAlert, bool]]:
    """One vehicle's alert changes of `save_alerts`, in the caller's transaction."""
    out = []
    for e in upserts:
        r = await conn.fetchrow(_UPSERT, *e.key, e.end_ms, e.peak, e.state, e.lat, e.lon,
                                json.dumps(e.detail, default=str), e.decided_ms)
        out.append((_alert(r), r["inserted"]))
    for old_key, e in moves:
        await conn.execute(f"DELETE FROM alerts WHERE {_KEY} AND state = 'retracted'", *e.key)
        r = await conn.fetchrow(
            f"UPDATE alerts SET start_time = {_MS.format('$5::bigint')}, "
            f"end_time = {_MS.format('$6::bigint')}, peak = $7, state = $8, lat = $9, "
            f"lon = $10, detail = $11::jsonb, "
            f"decided_time = {_MS.format('$12::bigint')}, updated_at = now() "
            f"WHERE {_KEY} RETURNING {_ALERT_COLUMNS}", *old_key, e.start_ms, e.end_ms,
            e.peak, e.state, e.lat, e.lon, json.dumps(e.detail, default=str), e.decided_ms)
        out.append((_alert(r), False))
    for key in retract:
        r = await conn.fetchrow(
            f"UPDATE alerts SET state = 'retracted', updated_at = now() WHERE {_KEY} "
            f"RETURNING {_ALERT_COLUMNS}", *key)
        if r is not None:
            out.append((_alert(r), False))
    return out


class PostgresAlerts(PostgresDb):
    # a `real` quantity as the store reads it back (the alert engine's quiet check, on speeds)
    real_read_back = staticmethod(_real)

    @staticmethod
    def as_read_back(r: StoredReading) -> StoredReading:
        """A committed reading as alert_readings would return it (the engine's live path): its
        `real` quantities rounded to float4; a reading without any (CAN, events) as it is."""
        alt, speed, course, hdop = r.alt_m, r.speed_kmh, r.course_deg, r.hdop
        if alt is None and speed is None and course is None and hdop is None:
            return r
        try:  # all four at once (one pack for a position with every quantity)
            alt, speed, course, hdop = _FLOAT4X4.unpack(_FLOAT4X4.pack(alt, speed, course, hdop))
        except (TypeError, OverflowError, struct.error):  # one absent, or beyond float4
            alt, speed, course, hdop = _real(alt), _real(speed), _real(course), _real(hdop)
        return made(r.vehicle_id, r.epoch, r.seq, r.time_ms, r.kind, r.lat, r.lon, alt, speed,
                    course, r.fix, r.sats, hdop, r.data, r.received_ms)

    async def alert_readings(self, vehicle_id: str, after_ms: int | None) -> list[StoredReading]:
        return (await self.alert_readings_after([(vehicle_id, after_ms)])).get(vehicle_id, [])

    async def alert_checkpoint(self, vehicle_id: str,
                               before_ms: int | None) -> tuple[int, dict] | None:
        return (await self.alert_checkpoints_before([(vehicle_id, before_ms)])).get(vehicle_id)

    async def alerts_in_window(self, vehicle_id: str, after_ms: int | None) -> list[StoredAlert]:
        return (await self.alerts_in_windows([(vehicle_id, after_ms)])).get(vehicle_id, [])

    async def alert_readings_after(self, asks: Sequence[tuple[str, int | None]],
                                   held: Mapping[str, tuple[int, int, int]] | None = None
                                   ) -> dict[str, list[StoredReading]]:
        vehicles, after = _asks(asks, _LOW)
        if not held:
            rows = await self._pool.fetch(
                f"SELECT {_READING_COLUMNS} FROM unnest($1::text[], $2::bigint[]) AS u(v, t) "
                f"CROSS JOIN LATERAL (SELECT * FROM vehicle_telemetry WHERE vehicle_id = u.v "
                f"AND time > {_MS.format('u.t')}) r ORDER BY vehicle_id, time, epoch, seq",
                vehicles, after)
            return _by_vehicle(map(StoredReading.from_row, rows))
        runs = [held.get(v) for v in vehicles]  # a vehicle without one: NULLs, nothing left out
        rows = await self._pool.fetch(
            f"SELECT {_READING_COLUMNS} FROM unnest($1::text[], $2::bigint[], $3::bigint[], "
            "$4::bigint[], $5::bigint[]) AS u(v, t, e, lo, hi) "
            f"CROSS JOIN LATERAL (SELECT * FROM vehicle_telemetry WHERE vehicle_id = u.v "
            f"AND time > {_MS.format('u.t')} "
            "AND (epoch = u.e AND seq BETWEEN u.lo AND u.hi) IS NOT TRUE) r "
            "ORDER BY vehicle_id, time, epoch, seq", vehicles, after,
            *([None if r is None else r[i] for r in runs] for i in range(3)))
        return _by_vehicle(map(StoredReading.from_row, rows))

    async def alert_checkpoints_before(self, asks: Sequence[tuple[str, int | None]]
                                       ) -> dict[str, tuple[int, dict]]:
        vehicles, before = _asks(asks, _HIGH)
        rows = await self._pool.fetch(
            "SELECT u.v, c.time_ms, c.state::text FROM unnest($1::text[], $2::bigint[]) "
            "AS u(v, t) CROSS JOIN LATERAL (SELECT time_ms, state FROM alert_checkpoints "
            "WHERE vehicle_id = u.v AND time_ms < u.t ORDER BY time_ms DESC LIMIT 1) c",
            vehicles, before)
        return {r[0]: (r[1], json.loads(r[2])) for r in rows}

    async def alerts_in_windows(self, asks: Sequence[tuple[str, int | None]]
                                ) -> dict[str, list[StoredAlert]]:
        vehicles, after = _asks(asks, _LOW)
        rows = await self._pool.fetch(
            f"SELECT {_ALERT_COLUMNS} FROM unnest($1::text[], $2::bigint[]) AS u(v, t) "
            f"CROSS JOIN LATERAL (SELECT * FROM alerts WHERE vehicle_id = u.v AND {_NOT_TIMED} "
            f"AND (end_time IS NULL OR decided_time > {_MS.format('u.t')})) a "
            "ORDER BY vehicle_id, start_time", vehicles, after)
        return _by_vehicle(map(_alert, rows))

    async def save_alerts(self, upserts: list, retract: list[tuple], now_ms: int,
                          checkpoints: tuple | None = None,
                          moves: Sequence = ()) -> list[tuple[StoredAlert, bool]]:
        return (await self.save_alerts_many([(upserts, retract, checkpoints, moves)],
                                             now_ms))[0]

    async def save_alerts_many(self, saves: Sequence[tuple[list, list[tuple], tuple | None,
                                                           Sequence]],
                               now_ms: int) -> list[list[tuple[StoredAlert, bool]]]:
        outs = []
        async with self._pool.acquire() as conn, conn.transaction():
            for upserts, retract, _, moves in saves:
                outs.append(await _save_changes(conn, upserts, retract, moves))
            replaced = [c for _, _, c, _ in saves if c is not None]
            if replaced:  # every vehicle's checkpoints at once: two statements
                await conn.execute(
                    "DELETE FROM alert_checkpoints c USING unnest($1::text[], $2::bigint[]) "
                    "AS u(v, t) WHERE c.vehicle_id = u.v AND c.time_ms > u.t",
                    *_asks([(vehicle, after_ms) for vehicle, after_ms, _ in replaced], _LOW))
                points = [(vehicle, t, json.dumps(state))
                          for vehicle, _, cps in replaced for t, state in cps]
                if points:
                    await conn.executemany(
                        "INSERT INTO alert_checkpoints VALUES ($1, $2, $3::jsonb) "
                        "ON CONFLICT (vehicle_id, time_ms) DO UPDATE SET state = excluded.state",
                        points)
        return outs

    async def save_alert_checkpoints(self, points: list[tuple[str, int, dict]]) -> None:
        """Checkpoints of many vehicles, (vehicle, time_ms, state) each, in one transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO alert_checkpoints VALUES ($1, $2, $3::jsonb) "
                "ON CONFLICT (vehicle_id, time_ms) DO UPDATE SET state = excluded.state",
                [(v, t, json.dumps(state)) for v, t, state in points])

    async def prune_alert_checkpoints(self, before_ms: int) -> int:
        status = await self._pool.execute(
            "DELETE FROM alert_checkpoints a WHERE time_ms < $1 AND time_ms < (SELECT "
            "max(time_ms) FROM alert_checkpoints c WHERE c.vehicle_id = a.vehicle_id)",
            before_ms)
        return int(status.split()[-1])

    async def list_alerts(self, query: AlertQuery) -> list[StoredAlert]:
        where, args = [], []

        def arg(value) -> str:
            args.append(value)
            return f"${len(args)}"

        if query.vehicle is not None:
            where.append(f"vehicle_id = {arg(query.vehicle)}")
        if query.vehicles is not None:
            where.append(f"vehicle_id = ANY({arg(sorted(query.vehicles))}::text[])")
        if query.rule is not None:
            where.append(f"rule = {arg(query.rule)}")
        if query.state is None:
            where.append("state IN ('open', 'closed')")
        else:
            where.append(f"state = {arg(query.state)}")
        if query.acknowledged is not None:
            where.append("acknowledged_at IS NOT NULL" if query.acknowledged
                         else "acknowledged_at IS NULL")
        if query.to_ms is not None:
            where.append(f"start_time < {_MS.format(arg(query.to_ms) + '::bigint')}")
        if query.from_ms is not None:
            where.append(f"(end_time IS NULL OR end_time >= "
                         f"{_MS.format(arg(query.from_ms) + '::bigint')})")
        rows = await self._pool.fetch(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE {' AND '.join(where)} "
            f"ORDER BY start_time DESC, id DESC LIMIT {arg(query.limit)}", *args)
        return [_alert(r) for r in rows]

    async def alert(self, alert_id: int) -> StoredAlert | None:
        r = await self._pool.fetchrow(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = $1",
                                      alert_id)
        return None if r is None else _alert(r)

    async def ack_alert(self, alert_id: int, user: str, now_ms: int) -> StoredAlert | None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"UPDATE alerts SET acknowledged_by = $2, "
                f"acknowledged_at = {_MS.format('$3::bigint')}, updated_at = now() "
                "WHERE id = $1 AND acknowledged_at IS NULL", alert_id, user, now_ms)
            r = await conn.fetchrow(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = $1",
                                    alert_id)
        return None if r is None else _alert(r)

    async def alerts_after(self, after_id: int, limit: int) -> list[StoredAlert]:
        rows = await self._pool.fetch(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id > $1 ORDER BY id LIMIT $2",
            after_id, limit)
        return [_alert(r) for r in rows]
