"""Driving folded per vehicle and day in the PostgreSQL store
(sql/postgres/0026_driving_days.sql; backend/driving/report.py decides when a stored day still
holds)."""

from __future__ import annotations

from .db import PostgresDb


class PostgresDriving(PostgresDb):
    async def driving_day(self, vehicle_id: str, day_ms: int) -> tuple[str, str, str] | None:
        got = await self._pool.fetchrow(
            "SELECT signature, fingerprint, result FROM driving_days WHERE vehicle_id = $1 "
            "AND day_ms = $2", vehicle_id, day_ms)
        return None if got is None else (got[0], got[1], got[2])

    async def put_driving_day(self, vehicle_id: str, day_ms: int, signature: str,
                              fingerprint: str, result: str, folded_ms: int) -> None:
        await self._pool.execute(
            "INSERT INTO driving_days (vehicle_id, day_ms, signature, fingerprint, result, "
            "folded_ms) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (vehicle_id, day_ms) DO "
            "UPDATE SET signature = excluded.signature, fingerprint = excluded.fingerprint, "
            "result = excluded.result, folded_ms = excluded.folded_ms",
            vehicle_id, day_ms, signature, fingerprint, result, folded_ms)
