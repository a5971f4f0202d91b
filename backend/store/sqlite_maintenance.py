"""Maintenance queries of the SQLite store (sql/sqlite/0008_maintenance.sql): signal series,
events by name, service records."""

from __future__ import annotations

import json


def _path(name: str) -> str:
    return '$."' + name.replace('"', '') + '"'


class SqliteMaintenance:
    """Mixed into SqliteStore: every call runs on the store's one worker thread."""

    async def signal_series(self, vehicle_id: str, signal: str, start_ms: int, end_ms: int,
                            limit: int, newest_first: bool = False) -> list[tuple[int, float]]:
        """(time_ms, value) of one CAN signal in [start, end), by device time."""
        order = "DESC" if newest_first else "ASC"

        def rows():
            cur = self._db.execute(
                "SELECT time_ms, json_extract(data, ?) AS v FROM vehicle_telemetry "
                "WHERE vehicle_id=? AND kind='can' AND time_ms >= ? AND time_ms < ? "
                f"AND v IS NOT NULL ORDER BY time_ms {order} LIMIT ?",
                (_path(signal), vehicle_id, start_ms, end_ms, limit))
            return [(t, float(v)) for t, v in cur if isinstance(v, int | float)]

        return await self._run(rows)

    async def events(self, vehicle_id: str, name: str, start_ms: int, end_ms: int,
                     limit: int) -> list[tuple[int, dict]]:
        """(time_ms, data) of the vehicle's `evt` readings named `name`, oldest first."""
        def rows():
            cur = self._db.execute(
                "SELECT time_ms, data FROM vehicle_telemetry WHERE vehicle_id=? AND kind='evt' "
                "AND time_ms >= ? AND time_ms < ? AND json_extract(data, '$.name') = ? "
                "ORDER BY time_ms LIMIT ?", (vehicle_id, start_ms, end_ms, name, limit))
            return [(t, json.loads(d)) for t, d in cur]

        return await self._run(rows)

    async def add_service(self, vehicle_id: str, interval: str, done_ms: int,
                          odometer_km: float | None, engine_h: float | None, note: str = "",
                          recorded_by: str = "") -> int:
        def add() -> int:
            with self._db:
                return self._db.execute(
                    "INSERT INTO maintenance_services (vehicle_id, interval, done_ms, "
                    "odometer_km, engine_h, note, recorded_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (vehicle_id, interval, done_ms, odometer_km, engine_h, note,
                     recorded_by)).lastrowid

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
