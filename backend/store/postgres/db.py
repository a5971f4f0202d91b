"""The PostgreSQL store's connections and the pieces its concerns share: the SQL fragments
that turn the store's integer milliseconds into the tables' timestamptz and back, and
`PostgresDb`, the host every concern runs on (the asyncpg pools, migrations, which failures
are transient)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import asyncpg

from ..base import migration_renames, pending_migrations

log = logging.getLogger(__name__)

# a millisecond count ({}: a column or a $n::bigint parameter) as timestamptz
MS = "(timestamptz 'epoch' + ({} * interval '1 millisecond'))"
# a timestamptz ({}: a column) as milliseconds since the epoch
EPOCH_MS = "(extract(epoch FROM {}) * 1000)::bigint"

# Connections for queries, authentication, alerts and the REST API.
POOL_MAX = 4
# The writer's own connection (it commits one transaction at a time): in a shared pool its
# commits queued behind 100 reconnecting vehicles' authentications and the alert engine's
# replays, and acks waited seconds while the gateway idled (docs/benchmarks.md, ingest).
WRITE_CONNECTIONS = 1
# A dead server must not hang the writer: connect and each command give up after this.
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 60.0
_MIGRATION_LOCK = 0x666C656574  # advisory lock id ("fleet") serialising concurrent migrators

# SQLSTATE classes that mean "the database, not the data": connection exceptions, operator
# intervention (shutdown, restart), insufficient resources, transaction rollback (deadlock).
_TRANSIENT_CLASSES = ("08", "57", "53", "40", "55")


def ms_of(t: datetime | None) -> int | None:
    """A timestamptz read back as milliseconds since the epoch."""
    return None if t is None else round(t.timestamp() * 1000)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's reset query (`RESET ALL`, `UNLISTEN *`, `CLOSE ALL`,
    advisory unlock: one more round trip per query, 8 % of the gateway's samples during a
    storm drain): the store keeps no session state (no SET, LISTEN, cursors; its advisory
    locks are transaction-scoped or released in `finally`). asyncpg still rolls back an open
    transaction."""


class PostgresDb:
    """What every concern of the PostgreSQL store needs from its host: `_pool` (queries,
    authentication, alerts, the REST API) and `_write_pool` (the writer's own connection, None
    until open).
    Each concern's mixin derives from it; `PostgresStore` composes them."""

    def __init__(self, url: str, pool_max: int = POOL_MAX):
        self.url = url
        self.pool_max = pool_max
        self._query_pool: asyncpg.Pool | None = None
        self._write_pool: asyncpg.Pool | None = None

    @property
    def _pool(self) -> asyncpg.Pool:
        """The pool of queries, authentication, alerts and the REST API."""
        if self._query_pool is None:
            raise RuntimeError("the store is not open")
        return self._query_pool

    async def _open_pools(self, migrate: bool) -> None:
        self._query_pool = await self._create_pool(1, self.pool_max)
        if migrate:
            await self.migrate()
        self._write_pool = await self._create_pool(1, WRITE_CONNECTIONS)

    def _create_pool(self, min_size: int, max_size: int):
        return asyncpg.create_pool(
            self.url, min_size=min_size, max_size=max_size, timeout=CONNECT_TIMEOUT_S,
            command_timeout=COMMAND_TIMEOUT_S, init=self._init_connection,
            # PostGIS functions carry high cost estimates, which trigger JIT compilation that
            # costs far more (~0.4 s measured) than these index-driven queries themselves
            server_settings={"jit": "off", "application_name": "fleet-backend"},
            reset=_keep_session)

    async def _init_connection(self, conn: asyncpg.Connection) -> None:
        """Prepare a new connection; a concern needing per-connection state extends this."""

    async def _close_pools(self) -> None:
        for pool in (self._write_pool, self._query_pool):
            if pool is not None:
                await pool.close()
        self._query_pool = self._write_pool = None

    def is_transient(self, exc: BaseException) -> bool:
        """True if retrying the same batch later can succeed (the database, not the data)."""
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
                renames = migration_renames("postgres", done)
                if renames:
                    async with conn.transaction():
                        await conn.executemany(
                            "UPDATE schema_migrations SET version = $1 WHERE version = $2",
                            [(new, old) for old, new in renames])
                    done = {r[0] for r in await conn.fetch(
                        "SELECT version FROM schema_migrations")}
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
