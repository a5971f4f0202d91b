"""Vehicles in the embedded store: registration with a fresh token, revocation, listing,
authentication (sql/sqlite/0001_init.sql)."""

from __future__ import annotations

from geostream.clock import wall_ms

from ..base import AuthResult, hash_token, new_token, token_matches
from .db import SqliteDb


class SqliteVehicles(SqliteDb):
    async def add_vehicle(self, vehicle_id: str) -> str:
        token = new_token()

        def add() -> None:
            self._db.execute(
                "INSERT INTO vehicles VALUES (?,?,?,NULL) ON CONFLICT (vehicle_id) DO UPDATE "
                "SET token_hash=excluded.token_hash, revoked_ms=NULL",
                (vehicle_id, hash_token(token), wall_ms()),
            )

        await self._run(add)
        return token

    async def revoke_vehicle(self, vehicle_id: str) -> bool:
        def revoke() -> bool:
            cur = self._db.execute(
                "UPDATE vehicles SET revoked_ms=? WHERE vehicle_id=? AND revoked_ms IS NULL",
                (wall_ms(), vehicle_id),
            )
            return cur.rowcount > 0

        return await self._run(revoke)

    async def list_vehicles(self) -> list[dict]:
        def rows():
            self._last_written()
            cur = self._db.execute(
                "SELECT v.vehicle_id, v.created_ms, v.revoked_ms, p.time_ms FROM vehicles v "
                "LEFT JOIN last_position p USING (vehicle_id) ORDER BY v.vehicle_id")
            return [dict(vehicle_id=a, created_ms=b, revoked_ms=c, last_seen_ms=d)
                    for a, b, c, d in cur]

        return await self._run(rows)

    async def authenticate(self, vehicle_id: str, token: str) -> AuthResult:
        def check() -> AuthResult:
            row = self._db.execute(
                "SELECT token_hash, revoked_ms FROM vehicles WHERE vehicle_id=?", (vehicle_id,)
            ).fetchone()
            if row is None or not token_matches(token, row[0]):
                return AuthResult.UNKNOWN
            return AuthResult.REVOKED if row[1] is not None else AuthResult.OK

        return await self._run(check)

    async def revoked_vehicles(self) -> set[str]:
        def rows():
            cur = self._db.execute("SELECT vehicle_id FROM vehicles WHERE revoked_ms IS NOT NULL")
            return {r[0] for r in cur}

        return await self._run(rows)
