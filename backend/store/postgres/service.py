"""Vehicle service records in the PostgreSQL store (sql/postgres/0008_service.sql): what
was serviced when, at which odometer and engine hours (backend/maintenance/ decides what is
due)."""

from __future__ import annotations

from .db import EPOCH_MS as _EPOCH_MS
from .db import MS as _MS
from .db import PostgresDb

SERVICE_COLUMNS = ("id", "vehicle_id", "interval", "done_ms", "odometer_km", "engine_h", "note",
                   "cost", "recorded_by")


class PostgresService(PostgresDb):
    async def add_service(self, vehicle_id: str, interval: str, done_ms: int,
                          odometer_km: float | None, engine_h: float | None, note: str = "",
                          recorded_by: str = "", cost: float | None = None) -> int:
        return await self._pool.fetchval(
            "INSERT INTO maintenance_services (vehicle_id, interval, done_time, odometer_km, "
            f"engine_h, note, recorded_by, cost) VALUES ($1, $2, {_MS.format('$3::bigint')}, "
            "$4, $5, $6, $7, $8) RETURNING id", vehicle_id, interval, done_ms, odometer_km,
            engine_h, note, recorded_by, cost)

    async def last_services(self, vehicle_id: str) -> dict[str, dict]:
        rows = await self._pool.fetch(
            f"SELECT DISTINCT ON (interval) interval, {_EPOCH_MS.format('done_time')}, "
            "odometer_km, engine_h, note FROM maintenance_services WHERE vehicle_id = $1 "
            "ORDER BY interval, done_time DESC", vehicle_id)
        return {r[0]: {"done_ms": r[1], "odometer_km": r[2], "engine_h": r[3], "note": r[4]}
                for r in rows}

    async def list_services(self, vehicle_id: str, limit: int) -> list[dict]:
        rows = await self._pool.fetch(
            f"SELECT id, vehicle_id, interval, {_EPOCH_MS.format('done_time')}, odometer_km, "
            "engine_h, note, cost, recorded_by FROM maintenance_services WHERE vehicle_id = $1 "
            "ORDER BY done_time DESC, id DESC LIMIT $2", vehicle_id, limit)
        return [dict(zip(SERVICE_COLUMNS, tuple(r), strict=True)) for r in rows]
