"""The PostgreSQL store behind Debian's PgBouncer in transaction pooling mode
(tests/pgbouncerfixture.py): the load tester through it (exactly once), a core subset of the
store tests through it, concurrent migrators, and the two failures an operator met first
without `pool_mode=transaction` in the URL."""

import asyncio
from pathlib import Path

import asyncpg
import pytest
from test_pg_store import (  # noqa: F401 (collected again here, with `store` through PgBouncer)
    T0,
    pos,
    test_out_of_range_value_fails_the_whole_batch,
)

from backend.store.postgres import PostgresStore
from backend.store.postgres.db import pooled_url
from loadtest.run import Options, run
from tests.store.test_readings import (  # noqa: F401 (collected again, `any_store` through PgBouncer)
    test_dead_letters_and_signals,
    test_duplicate_batches_store_each_reading_once,
    test_group_commit_of_many_vehicles_stores_once_and_keeps_the_newest,
    test_last_position_never_moves_backwards,
)
from tests.store.test_vehicles import test_vehicle_credentials  # noqa: F401

pytestmark = pytest.mark.postgres
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pg_server():
    """Native partitions only: the pooler does not care which flavour is behind it."""
    from pgfixture import serve

    yield from serve("native")


@pytest.fixture(scope="module")
def pg_template(pg_server):
    from pgfixture import template_of

    return template_of(pg_server)


@pytest.fixture
def pg_url(pg_server, pg_template):
    from pgfixture import fresh_database

    yield from fresh_database(pg_server, pg_template)


@pytest.fixture(scope="module")
def bouncer(pg_server):
    from pgbouncerfixture import PgBouncer

    with PgBouncer("127.0.0.1", pg_server.port) as b:
        yield b


@pytest.fixture
def pooled(pg_url, bouncer):
    """The test's fresh database, through PgBouncer."""
    return bouncer.url(pg_url.rsplit("/", 1)[1])


@pytest.fixture
async def store(pooled):
    s = PostgresStore(pooled, maintain_every_s=0)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def any_store(store):
    """What the tests of every store (tests/store/) take: here, the store through PgBouncer."""
    return store


def test_pooled_url_splits_off_our_parameter():
    dsn, opts = pooled_url("postgresql://u@db1:5432,db2:5432/fleet"
                           "?target_session_attrs=read-write&pool_mode=transaction")
    assert dsn == "postgresql://u@db1:5432,db2:5432/fleet?target_session_attrs=read-write"
    assert opts["statement_cache_size"] == 0 and "jit" not in opts["server_settings"]
    dsn, opts = pooled_url("postgresql://u@db/fleet")
    assert dsn == "postgresql://u@db/fleet" and "statement_cache_size" not in opts
    assert opts["server_settings"]["jit"] == "off"
    with pytest.raises(ValueError):
        pooled_url("postgresql://u@db/fleet?pool_mode=transactions")


def test_host_urls_and_the_connector_behind_pgbouncer():
    from backend.store.postgres.db import connect_writable, connector, host_urls

    assert host_urls("postgresql://u@h1:6432,h2:6432/fleet?target_session_attrs=read-write"
                     "&sslmode=disable") == ["postgresql://u@h1:6432/fleet?sslmode=disable",
                                             "postgresql://u@h2:6432/fleet?sslmode=disable"]
    assert host_urls("postgresql://u@/fleet?host=/a,/b&port=6432") == [
        "postgresql://u@/fleet?host=%2Fa&port=6432", "postgresql://u@/fleet?host=%2Fb&port=6432"]
    many = "postgresql://u@h1:6432,h2:6432/fleet?target_session_attrs=read-write"
    assert connector(many + "&pool_mode=transaction") is connect_writable
    assert connector(many) is asyncpg.connect  # asyncpg's own: the server's report is fresh
    assert connector("postgresql://u@h1:6432/f?pool_mode=transaction") is asyncpg.connect


# One process's first query, as each gateway process makes it: asyncpg numbers its prepared
# statements per process, so two processes both name theirs "__asyncpg_stmt_1__".
_ONE_QUERY = """
import asyncio, sys
import asyncpg
from backend.store.postgres.db import pooled_url

async def main():
    dsn, opts = pooled_url(sys.argv[1])
    conn = await asyncpg.connect(dsn, **{k: v for k, v in opts.items() if k != "server_settings"})
    try:
        print(await conn.fetchval("SELECT $1::int + 1", 1))
    except asyncpg.PostgresError as exc:
        print(type(exc).__name__)
    finally:
        await conn.close()

asyncio.run(main())
"""


def test_without_pool_mode_pgbouncer_refuses_or_statements_collide(pg_server, pg_url):
    """What an operator met: `jit` refused at startup, and without it the second process's
    named prepared statement collides with the first's left on the shared server connection
    (one here, to be sure); with `pool_mode=transaction` the same processes work."""
    import subprocess
    import sys

    from pgbouncerfixture import PgBouncer

    async def with_jit(url):
        await asyncpg.connect(url, server_settings={"jit": "off"})

    db = pg_url.rsplit("/", 1)[1]
    with PgBouncer("127.0.0.1", pg_server.port, pool_size=1) as one:
        plain = one.url(db).replace("&pool_mode=transaction", "")
        with pytest.raises(asyncpg.ProtocolViolationError, match="unsupported startup param"):
            asyncio.run(with_jit(plain))
        for url, second in ((one.url(db), "2"), (plain, "DuplicatePreparedStatementError")):
            answers = [subprocess.run([sys.executable, "-c", _ONE_QUERY, url], check=True,
                                      capture_output=True, text=True, timeout=60,
                                      cwd=REPO).stdout.strip()
                       for _ in range(2)]
            assert answers[1] == second, answers


async def test_the_role_has_jit_off_on_new_server_connections(store, pooled):
    """Migration 0014: the role's default, since PgBouncer cannot carry `jit` at startup."""
    dsn, opts = pooled_url(pooled)
    conn = await asyncpg.connect(dsn.replace(dsn.rsplit("/", 1)[1].split("?")[0], "postgres"),
                                 **opts)
    try:
        assert await conn.fetchval(
            "SELECT setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
            "WHERE r.rolname = current_user AND s.setdatabase = 0") == ["jit=off"]
    finally:
        await conn.close()


async def test_concurrent_migrators_through_the_pooler_take_turns(pg_server, bouncer):
    """No session advisory lock: each migration's transaction-scoped lock, so two backends
    starting at once on an empty database apply each migration once."""
    pg_server.create_database("pgb_migrate")
    stores = [PostgresStore(bouncer.url("pgb_migrate"), maintain_every_s=0) for _ in range(3)]
    try:
        await asyncio.gather(*(s.open(migrate=False) for s in stores))
        applied = await asyncio.gather(*(s.migrate() for s in stores))
        flat = [m for a in applied for m in a]
        assert len(flat) == len(set(flat)) and "0001_init" in flat and "0014_failover" in flat
        assert await stores[0].migrate() == []
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_commands_from_many_connections_get_distinct_ids(store):
    ids = await asyncio.gather(*(store.add_command(f"v{k % 3}", "ping", {}) for k in range(40)))
    assert len(set(ids)) == 40
    assert len(await store.pending_commands("v1")) == len([k for k in range(40) if k % 3 == 1])


async def test_history_route_through_the_pooler(store):
    from backend import queries

    await store.write([pos(q, T0 + q * 1000, lat=52.0 + q * 1e-4) for q in range(1, 31)], [])
    route = await queries.route(store, "v1", T0, T0 + 60_000)
    coords = route["geometry"]["coordinates"]
    assert len(coords) == 30 and coords[0][1] == pytest.approx(52.0001)


def test_loadtest_50_vehicles_through_pgbouncer(pg_server, bouncer, tmp_path):
    url = bouncer.url(pg_server.create_database("pgb_loadtest").rsplit("/", 1)[1])
    rep = run(Options(vehicles=50, rate_hz=1.0, duration_s=15, db=url, log_dir=str(tmp_path)))
    assert rep.connected == 50 and rep.made >= 50 * 15
    assert rep.stored == rep.made
    assert (rep.lost, rep.duplicated, rep.unexpected, rep.unacked) == (0, 0, 0, 0)
