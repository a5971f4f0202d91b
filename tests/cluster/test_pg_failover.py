"""Failover of the database mid-stream (docs/operations.md, "A synchronous standby"): a
PostgreSQL primary with a synchronous standby kept by Patroni + etcd (tests/pgha.py: one
network namespace per node), 100 load-tester vehicles at 1 Hz, the primary's node killed
(every process in its namespace: Patroni, PostgreSQL, PgBouncer). Two gateway processes: one
reaches the database with the multi-host URL directly, the other through the PgBouncers on
the nodes (`pool_mode=transaction`). After the standby took over, every reading the vehicles
made is stored exactly once: 0 lost, 0 duplicated, nothing left unacknowledged.

Then losing the standby (the only one left after the failover's replacement is not back): the
primary goes on alone, asynchronously, instead of stalling the fleet; the store says so
(`replication()`), which is what the backend alarms on.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from backend.loadtest.run import Options, run
from hil.netns import available

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_ok, _why = available()
pytestmark = [pytest.mark.netns, pytest.mark.postgres,
              pytest.mark.skipif(not _ok, reason=f"no network namespaces: {_why}")]

VEHICLES = 100
DURATION_S = 22.0
KILL_AT_S = 6.0          # into the window: the primary's node dies with commits in flight


@pytest.fixture(scope="module")
def ha():
    from pgha import HaCluster

    with HaCluster() as cluster:
        yield cluster


def test_primary_node_killed_mid_stream_every_reading_stored_once(ha, tmp_path):
    assert ha.primary() == "pg1"
    ha.psql("pg1", "CREATE DATABASE fleet")
    direct, pooled = ha.url("fleet"), ha.url("fleet", pooled=True)
    opts = Options(vehicles=VEHICLES, rate_hz=1.0, duration_s=DURATION_S, db=direct,
                   gateways=2, gateway_db=(direct, pooled), drain_timeout_s=60,
                   log_dir=str(tmp_path))
    rep = ha.in_app(run, opts, [(KILL_AT_S, lambda: ha.kill_node("pg1"))])
    print("\n".join(rep.lines()))
    assert ha.primary() == "pg2"
    assert rep.connected == VEHICLES and rep.made >= VEHICLES * DURATION_S * 0.9
    assert rep.stored == rep.made
    assert (rep.lost, rep.duplicated, rep.unexpected, rep.unacked) == (0, 0, 0, 0)
    assert rep.ack_gap_s > 0  # the failover was seen: a stretch without acknowledgements


def test_without_its_standby_the_primary_goes_on_asynchronously(ha):
    """After the failover pg2 is alone: Patroni (synchronous_mode, not strict) has emptied
    synchronous_standby_names, so a commit does not wait for a standby that is not there,
    and the store reports no synchronous standby."""
    from backend.store.postgres import PostgresStore

    async def check():
        store = PostgresStore(ha.url("fleet"), maintain_every_s=0)
        await store.open(migrate=False)
        try:
            async with asyncio.timeout(10):  # a stalled commit would hang here
                await store.add_vehicle("after-failover")
            return await store.replication()
        finally:
            await store.close()

    if ha.primary() != "pg2":
        pytest.skip("needs the failover of the test before")
    rep = ha.in_app(asyncio.run, check())
    assert rep["primary"] is True
    assert rep["sync_standbys"] == 0 and rep["synchronous_standby_names"] == ""
