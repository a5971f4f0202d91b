"""Driving folded per vehicle and day in the embedded store (sql/sqlite/0026_driving_days.sql;
backend/driving/report.py decides when a stored day still holds)."""

from __future__ import annotations

from .db import SqliteDb


class SqliteDriving(SqliteDb):
    async def driving_day(self, vehicle_id: str, day_ms: int) -> tuple[str, str, str] | None:
        def row():
            return self._rdb.execute(
                "SELECT signature, fingerprint, result FROM driving_days WHERE vehicle_id=? "
                "AND day_ms=?", (vehicle_id, day_ms)).fetchone()

        got = await self._read(row)
        return None if got is None else (got[0], got[1], got[2])

    async def put_driving_day(self, vehicle_id: str, day_ms: int, signature: str,
                              fingerprint: str, result: str, folded_ms: int) -> None:
        def put() -> None:
            with self._db:
                self._db.execute(
                    "INSERT INTO driving_days (vehicle_id, day_ms, signature, fingerprint, "
                    "result, folded_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (vehicle_id, "
                    "day_ms) DO UPDATE SET signature=excluded.signature, "
                    "fingerprint=excluded.fingerprint, result=excluded.result, "
                    "folded_ms=excluded.folded_ms",
                    (vehicle_id, day_ms, signature, fingerprint, result, folded_ms))

        await self._run(put)
