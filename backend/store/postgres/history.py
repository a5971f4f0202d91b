"""Queries over the PostgreSQL store's readings: last positions, a vehicle's route (optionally
one point per time bucket), the quality of each last fix, the newest CAN values, one CAN
signal's series, events by name, counts and dead letters."""

from __future__ import annotations

import json

from .db import EPOCH_MS as _EPOCH_MS
from .db import MS as _MS
from .db import PostgresDb

_POINT_COLUMNS = (f"{_EPOCH_MS.format('time')} AS time_ms, ST_Y(location) AS lat, "
                  "ST_X(location) AS lon, speed_kmh, course_deg, epoch, seq")


class PostgresHistory(PostgresDb):
    async def last_positions(self) -> list[dict]:
        rows = await self._pool.fetch(
            f"SELECT vehicle_id, {_POINT_COLUMNS} FROM last_position ORDER BY vehicle_id")
        return [dict(r) for r in rows]

    async def route(self, vehicle_id: str, start_ms: int, end_ms: int,
                    step_ms: int | None = None, limit: int | None = None) -> list[dict]:
        """Positions in [start, end) by device time; with `step_ms`, the first of each bucket;
        at most `limit` (in SQL). On a pooled connection, not the writer's."""
        where = (f"vehicle_id = $1 AND kind = 'pos' AND location IS NOT NULL "
                 f"AND time >= {_MS.format('$2::bigint')} AND time < {_MS.format('$3::bigint')}")
        if step_ms:
            sql = (f"SELECT time_ms, lat, lon, speed_kmh, course_deg, epoch, seq FROM ("
                   f"SELECT DISTINCT ON (bucket) * FROM (SELECT {_POINT_COLUMNS}, "
                   f"floor({_EPOCH_MS.format('time')}::numeric / $4) AS bucket "
                   f"FROM vehicle_telemetry WHERE {where}) b "
                   f"ORDER BY bucket, time_ms, epoch, seq) d ORDER BY time_ms, epoch, seq "
                   f"LIMIT $5")
            args: tuple = (vehicle_id, start_ms, end_ms, step_ms, limit)
        else:
            sql = (f"SELECT {_POINT_COLUMNS} FROM vehicle_telemetry WHERE {where} "
                   f"ORDER BY time, epoch, seq LIMIT $4")
            args = (vehicle_id, start_ms, end_ms, limit)  # LIMIT NULL: all
        return [dict(r) for r in await self._pool.fetch(sql, *args)]

    async def last_fixes(self) -> dict[str, dict]:
        """{vehicle: {"fix", "sats", "hdop"}}: the quality of each vehicle's last position."""
        rows = await self._pool.fetch(
            "SELECT t.vehicle_id, t.fix, t.sats, t.hdop FROM last_position p "
            "JOIN vehicle_telemetry t ON t.vehicle_id = p.vehicle_id AND t.epoch = p.epoch "
            "AND t.seq = p.seq AND t.time = p.time")
        return {r["vehicle_id"]: {"fix": r["fix"], "sats": r["sats"], "hdop": r["hdop"]}
                for r in rows}

    async def last_signals(self) -> dict[str, dict[str, dict]]:
        """{vehicle: {signal: {"value", "time_ms"}}}: the newest value of each CAN signal
        (`last_can`: a vehicle's values in one row, {signal: [value, time_ms]})."""
        out: dict[str, dict[str, dict]] = {}
        for vehicle, signals in await self._pool.fetch(
                "SELECT vehicle_id, signals::text FROM last_can ORDER BY 1"):
            out[vehicle] = {name: {"value": value, "time_ms": t}
                            for name, (value, t) in sorted(json.loads(signals).items())}
        return out

    async def signal_series(self, vehicle_id: str, signal: str, start_ms: int, end_ms: int,
                            limit: int, newest_first: bool = False) -> list[tuple[int, float]]:
        """(time_ms, value) of one CAN signal in [start, end), by device time."""
        order = "DESC" if newest_first else "ASC"
        rows = await self._pool.fetch(
            f"SELECT {_EPOCH_MS.format('time')}, signals->$2 FROM vehicle_telemetry "
            f"WHERE vehicle_id = $1 AND kind = 'can' AND time >= {_MS.format('$3::bigint')} "
            f"AND time < {_MS.format('$4::bigint')} AND jsonb_typeof(signals->$2) = 'number' "
            f"ORDER BY time {order} LIMIT $5", vehicle_id, signal, start_ms, end_ms, limit)
        return [(r[0], float(json.loads(r[1]))) for r in rows]

    async def events(self, vehicle_id: str, name: str, start_ms: int, end_ms: int,
                     limit: int) -> list[tuple[int, dict]]:
        rows = await self._pool.fetch(
            f"SELECT {_EPOCH_MS.format('time')}, signals::text FROM vehicle_telemetry "
            f"WHERE vehicle_id = $1 AND kind = 'evt' AND time >= {_MS.format('$2::bigint')} "
            f"AND time < {_MS.format('$3::bigint')} AND signals->>'name' = $4 "
            "ORDER BY time LIMIT $5", vehicle_id, start_ms, end_ms, name, limit)
        return [(r[0], json.loads(r[1])) for r in rows]

    async def signal_frames(self, vehicle_id: str, signals: list[str], start_ms: int,
                            end_ms: int, limit: int) -> list[tuple[int, dict]]:
        wanted = list(dict.fromkeys(signals))
        if not wanted:
            return []
        rows = await self._pool.fetch(
            f"SELECT {_EPOCH_MS.format('time')}, signals::text FROM vehicle_telemetry "
            f"WHERE vehicle_id = $1 AND kind = 'can' AND time >= {_MS.format('$2::bigint')} "
            f"AND time < {_MS.format('$3::bigint')} AND signals ?| $4::text[] "
            "ORDER BY time LIMIT $5", vehicle_id, start_ms, end_ms, wanted, limit)
        out = []
        for t, text in rows:
            data = json.loads(text)
            out.append((t, {k: data[k] for k in wanted if k in data}))
        return out

    async def readings_fingerprint(self, vehicle_id: str, start_ms: int, end_ms: int) -> str:
        row = await self._pool.fetchrow(
            "SELECT count(*), coalesce(max(epoch), 0), coalesce(sum(seq), 0) FROM "
            f"vehicle_telemetry WHERE vehicle_id = $1 AND time >= {_MS.format('$2::bigint')} "
            f"AND time < {_MS.format('$3::bigint')}", vehicle_id, start_ms, end_ms)
        return f"{row[0]}:{row[1]}:{row[2]}"

    async def count_readings(self, vehicle_id: str | None = None) -> int:
        if vehicle_id is None:
            return await self._pool.fetchval("SELECT count(*) FROM vehicle_telemetry")
        return await self._pool.fetchval(
            "SELECT count(*) FROM vehicle_telemetry WHERE vehicle_id = $1", vehicle_id)

    async def dead_letters(self) -> list[dict]:
        rows = await self._pool.fetch(
            "SELECT vehicle_id, epoch, seq, reading, error FROM dead_letter ORDER BY id")
        return [dict(r, reading=json.loads(r["reading"])) for r in rows]
