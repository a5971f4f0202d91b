"""Vehicle service records in the embedded store (sql/sqlite/0008_service.sql): what was
serviced when, at which odometer and engine hours (backend/maintenance/ decides what is due)."""

from __future__ import annotations

from .db import SqliteDb

SERVICE_COLUMNS = ("id", "vehicle_id", "interval", "done_ms", "odometer_km", "engine_h", "note",
                   "cost", "recorded_by")


class SqliteService(SqliteDb):
    async def add_service(self, vehicle_id: str, interval: str, done_ms: int,
                          odometer_km: float | None, engine_h: float | None, note: str = "",
                          recorded_by: str = "", cost: float | None = None) -> int:
        def add() -> int:
            with self._db:
                return self._db.execute(
                    "INSERT INTO maintenance_services (vehicle_id, interval, done_ms, "
                    "odometer_km, engine_h, note, recorded_by, cost) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (vehicle_id, interval, done_ms, odometer_km, engine_h, note, recorded_by,
                     cost)).fetchall()[0][0]

        return await self._run(add)

    async def last_services(self, vehicle_id: str) -> dict[str, dict]:
        """The newest service per interval name."""
        def rows():
            cur = self._db.execute(
                "SELECT interval, MAX(done_ms), odometer_km, engine_h, note FROM "
                "maintenance_services WHERE vehicle_id=? GROUP BY interval", (vehicle_id,))
            return {i: {"done_ms": d, "odometer_km": o, "engine_h": e, "note": n}
                    for i, d, o, e, n in cur}

        return await self._run(rows)

    async def list_services(self, vehicle_id: str, limit: int) -> list[dict]:
        def rows():
            cur = self._db.execute(
                "SELECT id, vehicle_id, interval, done_ms, odometer_km, engine_h, note, cost, "
                "recorded_by FROM maintenance_services WHERE vehicle_id=? "
                "ORDER BY done_ms DESC, id DESC LIMIT ?", (vehicle_id, limit))
            return [dict(zip(SERVICE_COLUMNS, r, strict=True)) for r in cur]

        return await self._run(rows)
