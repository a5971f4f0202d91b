"""PostgreSQL + PostGIS store (asyncpg). Timescale hypertable when available, else native
daily range partitions kept by `maintain()`.

Writing a batch is `postgres_write.PostgresWrite`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime

import asyncpg

from .base import (
    AuthResult,
    hash_token,
    new_token,
    pending_migrations,
    token_matches,
)
from .base import now_ms as clock_ms
from .postgres_accounts import PostgresAccounts
from .postgres_alerts import PostgresAlerts
from .postgres_api import PostgresApiQueries
from .postgres_commands import PostgresCommands
from .postgres_maintenance import PostgresMaintenance
from .postgres_routes import PostgresRoutes
from .postgres_write import _CREATE_STAGING, DAY_MS, PostgresWrite  # noqa: F401 (DAY_MS: tests)

log = logging.getLogger(__name__)

# Connections for queries, authentication, alerts and the REST API.
POOL_MAX = 4
# The writer's own connection (it commits one transaction at a time): in a shared pool its
# commits queued behind 100 reconnecting vehicles' authentications and the alert engine's
# replays, and acks waited seconds while the gateway idled (docs/benchmarks.md, ingest).
WRITE_CONNECTIONS = 1
# A dead server must not hang the writer: connect and each command give up after this.
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 60.0
# Partition job period: partitions are made days ahead, so hourly is plenty.
MAINTAIN_EVERY_S = 3600.0
_MIGRATION_LOCK = 0x666C656574  # advisory lock id ("fleet") serialising concurrent migrators

# SQLSTATE classes that mean "the database, not the data": connection exceptions, operator
# intervention (shutdown, restart), insufficient resources, transaction rollback (deadlock).
_TRANSIENT_CLASSES = ("08", "57", "53", "40", "55")


def _ms(t: datetime | None) -> int | None:
    return None if t is None else round(t.timestamp() * 1000)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's reset query (`RESET ALL`, `UNLISTEN *`, `CLOSE ALL`,
    advisory unlock: one more round trip per query, 8 % of the gateway's samples during a
    storm drain): the store keeps no session state (no SET, LISTEN, cursors; its advisory
    locks are transaction-scoped or released in `finally`). asyncpg still rolls back an open
    transaction."""


class PostgresStore(PostgresWrite, PostgresAccounts, PostgresApiQueries, PostgresAlerts,
                    PostgresCommands, PostgresRoutes, PostgresMaintenance):
    def __init__(self, url: str, pool_max: int = POOL_MAX,
                 maintain_every_s: float = MAINTAIN_EVERY_S):
        self.url = url
        self.pool_max = pool_max
        self.maintain_every_s = maintain_every_s
        self._job: asyncio.Task | None = None
        self._pool: asyncpg.Pool | None = None
        self._write_pool: asyncpg.Pool | None = None
        self._days: set[int] = set()  # UTC days known to have a partition (or a hypertable)
        self._lock = asyncio.Lock()

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self, migrate: bool = True) -> None:
        self._pool = await self._create_pool(1, self.pool_max)
        if migrate:
            await self.migrate()
        self._write_pool = await self._create_pool(1, WRITE_CONNECTIONS)
        if self.maintain_every_s:
            self._job = asyncio.get_running_loop().create_task(self._maintenance_job(),
                                                               name="partition-job")

    async def _maintenance_job(self) -> None:
        while True:
            try:
                result = await self.maintain()
                if result["created"] or result["dropped"]:
                    log.info("partitions: %d created, dropped %s", result["created"],
                             result["dropped"])
            except Exception as exc:  # database away: the next round retries
                log.warning("partition maintenance failed: %s", exc)
            await asyncio.sleep(self.maintain_every_s)

    def _create_pool(self, min_size: int, max_size: int):
        return asyncpg.create_pool(
            self.url, min_size=min_size, max_size=max_size, timeout=CONNECT_TIMEOUT_S,
            command_timeout=COMMAND_TIMEOUT_S, init=self._init_connection,
            # PostGIS functions carry high cost estimates, which trigger JIT compilation that
            # costs far more (~0.4 s measured) than these index-driven queries themselves
            server_settings={"jit": "off", "application_name": "fleet-backend"},
            reset=_keep_session)

    @staticmethod
    async def _init_connection(conn: asyncpg.Connection) -> None:
        await conn.execute(_CREATE_STAGING)

    async def close(self) -> None:
        if self._job is not None:
            self._job.cancel()
            await asyncio.gather(self._job, return_exceptions=True)
            self._job = None
        for pool in (self._write_pool, self._pool):
            if pool is not None:
                await pool.close()
        self._pool = self._write_pool = None

    def is_transient(self, exc: BaseException) -> bool:
        """True if retrying the same batch later can succeed (the database, not the data).
        A value asyncpg cannot encode (its DataError is an InterfaceError *and* a ValueError)
        is the data's: retried, it would stop the writer for every vehicle."""
        if isinstance(exc, ValueError):
            return False
        if isinstance(exc, (OSError, asyncio.TimeoutError, asyncpg.InterfaceError,
                            asyncpg.exceptions.ConnectionDoesNotExistError)):
            return True
        if isinstance(exc, asyncpg.PostgresError):
            state = getattr(exc, "sqlstate", None) or ""
            return state[:2] in _TRANSIENT_CLASSES
        return False

    async def migrate(self) -> list[str]:
        applied = []
        async with self._pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
            try:
                await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                                   "(version text PRIMARY KEY, applied_at timestamptz NOT NULL "
                                   "DEFAULT now())")
                done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
                for f in pending_migrations("postgres", done):
                    async with conn.transaction():
                        await conn.execute(f.read_text())
                        await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)",
                                           f.stem)
                    applied.append(f.stem)
                    log.info("applied migration %s", f.stem)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
            # types (geometry) created by a migration: reset so the codec caches see them
            await conn.reload_schema_state()
        return applied

    async def maintain(self, now_ms: int | None = None) -> dict:
        """Create partitions ahead and drop those past retention (under Timescale: drop the
        chunks past retention with drop_chunks)."""
        now = datetime.fromtimestamp((now_ms or clock_ms()) / 1000, UTC)
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM telemetry_maintain($1)", now)
        self._days.clear()
        return {"created": row["created"], "dropped": list(row["dropped"])}

    async def set_policy(self, retention_days: float | None = None,
                         premake_days: float | None = None) -> None:
        async with self._pool.acquire() as conn:
            if retention_days is not None:
                await conn.execute("UPDATE telemetry_policy SET retention = $1 * interval '1 day'",
                                   float(retention_days))
            if premake_days is not None:
                await conn.execute("UPDATE telemetry_policy SET premake = $1 * interval '1 day'",
                                   float(premake_days))

    async def partitions(self) -> list[str]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'vehicle_telemetry'::regclass ORDER BY 1")
        return [r[0] for r in rows]

    # --- vehicles -------------------------------------------------------------------------

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
            "SELECT v.vehicle_id, v.created_at, v.revoked_at, p.time FROM vehicles v "
            "LEFT JOIN last_position p USING (vehicle_id) ORDER BY v.vehicle_id")
        return [dict(vehicle_id=r[0], created_ms=_ms(r[1]), revoked_ms=_ms(r[2]),
                     last_seen_ms=_ms(r[3])) for r in rows]

    async def authenticate(self, vehicle_id: str, token: str) -> AuthResult:
        row = await self._pool.fetchrow(
            "SELECT token_hash, revoked_at FROM vehicles WHERE vehicle_id = $1", vehicle_id)
        if row is None or not token_matches(token, row[0]):
            return AuthResult.UNKNOWN
        return AuthResult.REVOKED if row[1] is not None else AuthResult.OK

    async def revoked_vehicles(self) -> set[str]:
        rows = await self._pool.fetch(
            "SELECT vehicle_id FROM vehicles WHERE revoked_at IS NOT NULL")
        return {r[0] for r in rows}

    # --- counts ---------------------------------------------------------------------------

    async def count_readings(self, vehicle_id: str | None = None) -> int:
        if vehicle_id is None:
            return await self._pool.fetchval("SELECT count(*) FROM vehicle_telemetry")
        return await self._pool.fetchval(
            "SELECT count(*) FROM vehicle_telemetry WHERE vehicle_id = $1", vehicle_id)

    async def dead_letters(self) -> list[dict]:
        rows = await self._pool.fetch(
            "SELECT vehicle_id, epoch, seq, reading, error FROM dead_letter ORDER BY id")
        return [dict(r, reading=json.loads(r["reading"])) for r in rows]
