"""Vehicles in the PostgreSQL store: registration with a fresh token, revocation, listing,
authentication (sql/postgres/0001_init.sql)."""

from __future__ import annotations

from collections.abc import Sequence

from ..base import AuthResult, hash_token, new_token, token_matches
from ..coalesce import Coalesced
from .db import EPOCH_MS as _EPOCH_MS
from .db import PostgresDb
from .db import ms_of as _ms

# Vehicles one authentication query looks up at most: a storm's hellos (a fleet reconnecting at
# once) share a query (coalesce.py); 1,000 text keys are a few tens of KB of parameters.
AUTH_BATCH_MAX = 1000


class PostgresVehicles(PostgresDb):
    _credentials: Coalesced[str, tuple[str, bool]]

    def _init_vehicles(self) -> None:
        self._credentials = Coalesced(self._credentials_of, AUTH_BATCH_MAX)

    async def add_vehicle(self, vehicle_id: str) -> str:
        token = new_token()
        await self._pool.execute(
            "INSERT INTO vehicles (vehicle_id, token_hash) VALUES ($1, $2) "
            "ON CONFLICT (vehicle_id) DO UPDATE SET token_hash = excluded.token_hash, "
            "revoked_at = NULL", vehicle_id, hash_token(token))
        return token

    async def revoke_vehicle(self, vehicle_id: str) -> bool:
        status = await self._pool.execute(
            "UPDATE vehicles SET revoked_at = now() WHERE vehicle_id = $1 AND revoked_at IS NULL",
            vehicle_id)
        return status != "UPDATE 0"

    async def list_vehicles(self) -> list[dict]:
        rows = await self._pool.fetch(
            f"SELECT v.vehicle_id, v.created_at, v.revoked_at, {_EPOCH_MS.format('p.time')} "
            "FROM vehicles v LEFT JOIN last_position p USING (vehicle_id) "
            "ORDER BY v.vehicle_id")  # device time as ms: a stored year 10000 is no datetime
        return [dict(vehicle_id=r[0], created_ms=_ms(r[1]), revoked_ms=_ms(r[2]),
                     last_seen_ms=r[3]) for r in rows]

    async def authenticate(self, vehicle_id: str, token: str) -> AuthResult:
        """Checked against the vehicle's row, read with the other hellos waiting meanwhile
        (one query for all of them: `_credentials`)."""
        row = await self._credentials.get(vehicle_id)
        if row is None or not token_matches(token, row[0]):
            return AuthResult.UNKNOWN
        return AuthResult.REVOKED if row[1] else AuthResult.OK

    async def _credentials_of(self, vehicles: Sequence[str]) -> dict[str, tuple[str, bool]]:
        """vehicle → (token hash, revoked) of those of `vehicles` that are registered."""
        rows = await self._pool.fetch(
            "SELECT vehicle_id, token_hash, revoked_at IS NOT NULL FROM vehicles "
            "WHERE vehicle_id = ANY($1::text[])", list(vehicles))
        return {r[0]: (r[1], r[2]) for r in rows}

    async def revoked_vehicles(self) -> set[str]:
        rows = await self._pool.fetch(
            "SELECT vehicle_id FROM vehicles WHERE revoked_at IS NOT NULL")
        return {r[0] for r in rows}
