"""Maintenance queries of the PostgreSQL store (sql/postgres/0007_maintenance.sql)."""

from __future__ import annotations

import json

from .postgres_sql import EPOCH_MS as _EPOCH_MS
from .postgres_sql import MS as _MS


class PostgresMaintenance:
    """Mixed into PostgresStore (uses its asyncpg pool)."""

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

    async def add_service(self, vehicle_id: str, interval: str, done_ms: int,
                          odometer_km: float | None, engine_h: float | None, note: str = "",
                          recorded_by: str = "") -> int:
        return await self._pool.fetchval(
            "INSERT INTO maintenance_services (vehicle_id, interval, done_time, odometer_km, "
            f"engine_h, note, recorded_by) VALUES ($1, $2, {_MS.format('$3::bigint')}, $4, $5, "
            "$6, $7) RETURNING id", vehicle_id, interval, done_ms, odometer_km, engine_h, note,
            recorded_by)

    async def last_services(self, vehicle_id: str) -> dict[str, dict]:
        rows = await self._pool.fetch(
            f"SELECT DISTINCT ON (interval) interval, {_EPOCH_MS.format('done_time')}, "
            "odometer_km, engine_h, note FROM maintenance_services WHERE vehicle_id = $1 "
            "ORDER BY interval, done_time DESC", vehicle_id)
        return {r[0]: {"done_ms": r[1], "odometer_km": r[2], "engine_h": r[3], "note": r[4]}
                for r in rows}
