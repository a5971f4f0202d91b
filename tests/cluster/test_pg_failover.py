"""Failover of the database mid-stream (docs/operations.md, "A synchronous standby"): a
PostgreSQL primary with a synchronous standby kept by Patroni + etcd (tests/pgha.py: one
network namespace per node), 100 load-tester vehicles at 1 Hz, the primary's node killed
(every process in its namespace: Patroni, PostgreSQL, PgBouncer). Two gateway processes: one
reaches the database with the multi-host URL directly, the other through the PgBouncers on
the nodes (`pool_mode=transaction`). After the standby took over, every reading the vehicles
made is stored exactly once: 0 lost, 0 duplicated, nothing left unacknowledged.

Then losing the standby (the killed node rejoins first as a new standby, cloned by Patroni):
the primary goes on alone, asynchronously, instead of stalling the fleet, and the backend's
replication watch (backend/dbwatch.py) raises its alarm.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from hil.netns import available
from loadtest.run import Options, run

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
    ha.ensure_pair()
    primary, standby = ha.primary(), ha.standby()
    assert primary and standby and primary != standby
    if "fleet" not in ha.psql(primary, "SELECT datname FROM pg_database").split():
        ha.psql(primary, "CREATE DATABASE fleet")
    direct, pooled = ha.url("fleet"), ha.url("fleet", pooled=True)
    opts = Options(vehicles=VEHICLES, rate_hz=1.0, duration_s=DURATION_S, db=direct,
                   gateways=2, gateway_db=(direct, pooled), drain_timeout_s=60,
                   log_dir=str(tmp_path))
    rep = ha.in_app(run, opts, [(KILL_AT_S, lambda: ha.kill_node(primary))])
    print("\n".join(rep.lines()))
    assert ha.primary() == standby
    assert rep.connected == VEHICLES and rep.made >= VEHICLES * DURATION_S * 0.9
    assert rep.stored == rep.made
    assert (rep.lost, rep.duplicated, rep.unexpected, rep.unacked) == (0, 0, 0, 0)
    assert rep.ack_gap_s > 0  # the failover was seen: a stretch without acknowledgements


def test_standby_killed_the_primary_goes_on_asynchronously_and_says_so(ha):
    """Losing the standby does not stall the fleet: Patroni (synchronous_mode, not strict)
    empties synchronous_standby_names, commits go on without waiting, and the backend's
    replication watch raises its `async` alarm (docs/operations.md)."""
    from backend.dbwatch import ReplicationWatch
    from backend.store.base import StoredReading
    from backend.store.postgres import PostgresStore

    ha.ensure_pair()
    primary, standby = ha.primary(), ha.standby()
    if "fleet" not in ha.psql(primary, "SELECT datname FROM pg_database").split():
        ha.psql(primary, "CREATE DATABASE fleet")  # (migrated already after the test before)

    async def scenario():
        store = PostgresStore(ha.url("fleet"), maintain_every_s=0)
        await store.open()
        watch = ReplicationWatch()
        try:
            assert watch.observe(await store.replication()) is None
            assert watch.state["sync_standbys"] == 1
            await asyncio.to_thread(ha.kill_node, standby)
            stored = 0
            for q in range(1, 301):  # bounded: Patroni reacts within a loop or two
                async with asyncio.timeout(30):  # a commit stalled for good fails here
                    await store.write([StoredReading(
                        vehicle_id="standby-loss", epoch=1, seq=q, time_ms=1_764_979_200_000 + q,
                        kind="pos", lat=45.0, lon=7.0, received_ms=1_764_979_200_000)], [])
                stored += 1
                watch.observe(await store.replication())
                if watch.alarm == "async" and stored >= 10:
                    break
                await asyncio.sleep(0.1)
            return watch, stored, await store.count_readings("standby-loss")
        finally:
            await store.close()

    watch, stored, count = ha.in_app(asyncio.run, scenario())
    assert watch.alarm == "async" and count == stored >= 10
    assert watch.state["synchronous_standby_names"] == ""
    assert ha.primary() == primary
