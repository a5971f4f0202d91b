"""The PostgreSQL store's connections and the pieces its concerns share: the SQL fragments
that turn the store's integer milliseconds into the tables' timestamptz and back, and
`PostgresDb`, the host every concern runs on (the asyncpg pools, migrations, which failures
are transient).

The URL may name several hosts (`postgresql://u@db1:5432,db2:5432/fleet?target_session_attrs=
read-write`: asyncpg connects to the first writable one, so after a failover the pools' new
connections find the new primary); `pool_mode=transaction` says a transaction-pooling
PgBouncer is in between (`pooled_url`). No session state outlives a transaction
(transaction-scoped advisory locks, staging tables dropped at commit), so each transaction
may run on any server connection of the pooler."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from ..base import migration_renames, pending_migrations
from ..write_loop import WriteLoop

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
# The URL parameter saying a pooler sits in between, with its pgbouncer.ini name and values:
# "transaction" (or "statement") pooling hands each transaction any server connection.
POOL_MODE_PARAM = "pool_mode"
TRANSACTION_POOLING = ("transaction", "statement")
# Startup parameters for a direct connection. PostGIS functions carry high cost estimates,
# which trigger JIT compilation that costs far more (~0.4 s measured) than these index-driven
# queries themselves. PgBouncer 1.18 refuses startup parameters it does not track ("unsupported
# startup parameter: jit"), so behind it migration 0014 sets `jit = off` on the role instead.
DIRECT_SETTINGS = {"jit": "off", "application_name": "fleet-backend"}
POOLED_SETTINGS = {"application_name": "fleet-backend"}

# SQLSTATE classes that mean "the database, not the data": connection exceptions, operator
# intervention (shutdown, restart), insufficient resources, transaction rollback (deadlock).
_TRANSIENT_CLASSES = ("08", "57", "53", "40", "55")
# A connection that reached a server which is (or just became) a standby: during a failover
# the pools hold such connections briefly (read_only_sql_transaction), or find no writable
# host yet (asyncpg's TargetServerAttributeNotMatched). Retrying reaches the new primary.
_TRANSIENT_STATES = ("25006",)


# target_session_attrs values that ask for the primary
_WRITABLE = ("read-write", "primary")


def host_urls(url: str) -> list[str]:
    """One URL per host of a multi-host URL (`u@h1:p1,h2:p2/db` or `?host=h1,h2&port=p1,p2`),
    without target_session_attrs; a single-host URL unchanged in a list of one."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k != "target_session_attrs"]
    user, at, hostlist = parts.netloc.rpartition("@")
    qhosts = next((v for k, v in query if k == "host"), "")
    if qhosts:  # hosts (or socket directories) in the query, ports alongside
        ports = next((v for k, v in query if k == "port"), "").split(",")
        rest = [(k, v) for k, v in query if k not in ("host", "port")]
        hosts = qhosts.split(",")
        return [urlunsplit(parts._replace(query=urlencode(
            rest + [("host", h)] + ([("port", ports[min(i, len(ports) - 1)])]
                                    if ports[0] else []))))
                for i, h in enumerate(hosts)]
    return [urlunsplit(parts._replace(netloc=f"{user}{at}{h}", query=urlencode(query)))
            for h in hostlist.split(",")]


async def connect_writable(dsn: str, **kwargs) -> asyncpg.Connection:
    """asyncpg's `connect` for a pool behind PgBouncer with several hosts: the first host whose
    server is a primary, asked with a query. asyncpg's own `target_session_attrs` trusts the
    server's reported `in_hot_standby`, and PgBouncer 1.18 reports the value it cached from its
    first server connection: after a standby behind it was promoted it still said "on", and a
    pool that had tried it during the failover refused the new primary for good (measured in
    tests/system/cluster/test_pg_failover.py). `pg_is_in_recovery()` goes to the server itself."""
    last: BaseException | None = None
    for url in host_urls(dsn):
        try:
            conn = await asyncpg.connect(url, **kwargs)
        except (OSError, TimeoutError, asyncpg.PostgresError,
                asyncpg.InterfaceError) as exc:
            last = exc
            continue
        try:
            if not await conn.fetchval("SELECT pg_is_in_recovery()"):
                return conn
        except BaseException:
            conn.terminate()
            raise
        conn.terminate()
    raise last or asyncpg.TargetServerAttributeNotMatched(
        "none of the hosts is a primary (read-write)")


def pooled_url(url: str) -> tuple[str, dict]:
    """Split our own URL parameter off `url`: (the URL for asyncpg, connect keyword arguments).

    `pool_mode=transaction` (or `statement`): a PgBouncer in transaction pooling mode is in
    between. Its server connections change between transactions, so asyncpg's named prepared
    statements would meet "prepared statement … already exists" / "does not exist": the
    statement cache is off (`statement_cache_size=0`, as asyncpg documents for poolers), and
    only startup parameters PgBouncer tracks are sent. Without it: a direct connection."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    mode = next((v for k, v in query if k == POOL_MODE_PARAM), "")
    if mode and mode not in (*TRANSACTION_POOLING, "session"):
        raise ValueError(f"{POOL_MODE_PARAM}={mode!r}: expected transaction, statement or session")
    rest = urlunsplit(parts._replace(query=urlencode(
        [(k, v) for k, v in query if k != POOL_MODE_PARAM])))
    if mode in TRANSACTION_POOLING:
        return rest, {"statement_cache_size": 0, "server_settings": dict(POOLED_SETTINGS)}
    return rest, {"server_settings": dict(DIRECT_SETTINGS)}


def connector(url: str):
    """The `connect` coroutine for `url`'s connections: `connect_writable` behind PgBouncer
    with several hosts and a writable target (see there), else asyncpg's own."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if (query.get(POOL_MODE_PARAM) in TRANSACTION_POOLING
            and query.get("target_session_attrs") in _WRITABLE
            and len(host_urls(pooled_url(url)[0])) > 1):
        return connect_writable
    return asyncpg.connect


async def connect(url: str) -> asyncpg.Connection:
    """One connection for `url` (a check, a tool), as the store's pools make them."""
    dsn, options = pooled_url(url)
    return await connector(url)(dsn, **options)


def ms_of(t: datetime | None) -> int | None:
    """A timestamptz read back as milliseconds since the epoch."""
    return None if t is None else round(t.timestamp() * 1000)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's reset query (`RESET ALL`, `UNLISTEN *`, `CLOSE ALL`,
    advisory unlock: one more round trip per query, 8 % of the gateway's samples during a
    storm drain): the store keeps no session state (no SET, LISTEN, cursors, session advisory
    locks or temporary tables past a commit), which also lets a transaction-pooling PgBouncer
    hand each transaction any server connection. asyncpg still rolls back an open transaction."""


class PostgresDb:
    """What every concern of the PostgreSQL store needs from its host: `_pool` (queries,
    authentication, alerts, the REST API) and `_write_pool` (the writer's own connection, None
    until open, living on `_write_loop`: the writer's event loop on a thread of its own).
    Each concern's mixin derives from it; `PostgresStore` composes them."""

    def __init__(self, url: str, pool_max: int = POOL_MAX):
        self.url = url
        self.pool_max = pool_max
        self._query_pool: asyncpg.Pool | None = None
        self._write_pool: asyncpg.Pool | None = None  # on `_write_loop`, used only there
        self._write_loop = WriteLoop()

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
        self._write_loop.start()
        try:
            self._write_pool = await self._write_loop.call(self._create_write_pool)
        except BaseException:
            self._write_loop.stop()
            raise

    async def _create_write_pool(self) -> asyncpg.Pool:
        """The writer's pool, made on (and bound to) the writer's own loop."""
        return await self._create_pool(1, WRITE_CONNECTIONS, init=self._init_write_connection)

    def _create_pool(self, min_size: int, max_size: int, init=None):
        dsn, options = pooled_url(self.url)
        return asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, timeout=CONNECT_TIMEOUT_S,
            command_timeout=COMMAND_TIMEOUT_S, init=init or self._init_connection,
            reset=_keep_session, connect=connector(self.url), **options)

    async def _init_connection(self, conn: asyncpg.Connection) -> None:
        """Prepare a new connection; a concern needing per-connection state extends this
        (only client-side state: behind a transaction-pooling PgBouncer, server-side session
        state set here would stay on one server connection)."""

    async def _init_write_connection(self, conn: asyncpg.Connection) -> None:
        """Prepare a connection of the writer's pool (after the migrations)."""
        await self._init_connection(conn)

    async def _close_pools(self) -> None:
        write_pool, self._write_pool = self._write_pool, None
        try:
            if write_pool is not None:
                await self._write_loop.call(write_pool.close)
        finally:
            self._write_loop.stop()
            if self._query_pool is not None:
                await self._query_pool.close()
            self._query_pool = None

    def is_transient(self, exc: BaseException) -> bool:
        """True if retrying the same batch later can succeed (the database, not the data).
        A value asyncpg cannot encode (its DataError is an InterfaceError *and* a ValueError)
        is the data's: retried, it would stop the writer for every vehicle."""
        if isinstance(exc, ValueError):
            return False
        if isinstance(exc, (OSError, asyncio.TimeoutError, asyncpg.InterfaceError,
                            asyncpg.exceptions.ConnectionDoesNotExistError,
                            asyncpg.TargetServerAttributeNotMatched)):
            return True
        if isinstance(exc, asyncpg.PostgresError):
            state = getattr(exc, "sqlstate", None) or ""
            return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
        return False

    async def replication(self) -> dict:
        """The server's replication state, for status and alarms: is it the primary, how
        many standbys stream from it and how many of them are synchronous (a primary with
        none acknowledges commits only it holds: docs/operations.md)."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT NOT pg_is_in_recovery() AS primary, "
                "current_setting('synchronous_standby_names') AS names, "
                "current_setting('synchronous_commit') AS commit, "
                "(SELECT count(*) FROM pg_stat_replication) AS standbys, "
                "(SELECT count(*) FROM pg_stat_replication "
                " WHERE sync_state IN ('sync', 'quorum')) AS sync")
        return {"primary": row["primary"], "standbys": row["standbys"],
                "sync_standbys": row["sync"], "synchronous_standby_names": row["names"],
                "synchronous_commit": row["commit"]}

    async def migrate(self) -> list[str]:
        """Apply pending migrations, one transaction each. Each takes a transaction-scoped
        advisory lock and reads what is done under it, so concurrent migrators take turns
        without a session lock (which a transaction-pooling PgBouncer would not keep)."""
        applied: list[str] = []
        async with self._pool.acquire() as conn:
            while True:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                    await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                                       "(version text PRIMARY KEY, applied_at timestamptz "
                                       "NOT NULL DEFAULT now())")
                    done = {r[0] for r in await conn.fetch(
                        "SELECT version FROM schema_migrations")}
                    renames = [] if applied else migration_renames("postgres", done)
                    if renames:  # a database made before the renumbering: its old names
                        await conn.executemany(
                            "UPDATE schema_migrations SET version = $1 WHERE version = $2",
                            [(new, old) for old, new in renames])
                        done = {r[0] for r in await conn.fetch(
                            "SELECT version FROM schema_migrations")}
                    pending = pending_migrations("postgres", done)
                    if not pending:
                        break
                    await conn.execute(pending[0].read_text())
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)",
                                       pending[0].stem)
                applied.append(pending[0].stem)
                log.info("applied migration %s", pending[0].stem)
            # types (geometry) created by a migration: reset so the codec caches see them
            await conn.reload_schema_state()
        return applied
