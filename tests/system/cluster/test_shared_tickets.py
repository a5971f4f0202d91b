"""Session tickets shared through PostgreSQL (docs/scaling.md §6): a ticket issued by one node
resumes on another, each ticket is good once across the nodes, and a vehicle whose node died
resumes with 0-RTT on the next one through the router."""

from __future__ import annotations

import asyncio
import datetime

import pytest

from backend.cluster.tickets import SharedTicketStore
from geostream.quic import library
from tests.integration.net.rig import AgentRig, until
from tests.system.cluster.test_routed import HOST, _cluster, _holder, _stop

_lib = library()
CipherSuite, SessionTicket = _lib.CipherSuite, _lib.SessionTicket


def _ticket(label: bytes) -> SessionTicket:
    now = datetime.datetime.now(datetime.UTC)
    return SessionTicket(age_add=1, cipher_suite=CipherSuite.AES_128_GCM_SHA256,
                         not_valid_after=now + datetime.timedelta(hours=1),
                         not_valid_before=now, resumption_secret=b"s" * 32,
                         server_name="localhost", ticket=label)


@pytest.mark.postgres
async def test_a_ticket_of_one_node_resumes_on_another_once(pg_url):
    a = await SharedTicketStore(pg_url).start()
    b = await SharedTicketStore(pg_url).start()
    try:
        a.add(_ticket(b"t1"))
        a.add(_ticket(b"t2"))
        assert b.pop(b"t1") is None, "not synced yet"
        await a.sync()
        await b.sync()
        got = b.pop(b"t1")
        assert got is not None and got.resumption_secret == b"s" * 32
        assert b.pop(b"t1") is None, "good once on a node"
        await b.sync()
        await a.sync()
        assert a.pop(b"t1") is None, "used on b: gone on a"
        assert a.pop(b"t2") is not None
    finally:
        a.close()
        b.close()


@pytest.mark.postgres
async def test_a_sync_called_while_the_loops_sync_runs_waits_for_it(pg_url):
    """The node's sync loop and a caller (the test below, an operator) share one connection:
    two syncs at once must not meet on it (asyncpg: "another operation is in progress")."""
    a = await SharedTicketStore(pg_url, sync_s=3600).start()
    b = await SharedTicketStore(pg_url, sync_s=3600).start()
    try:
        for k in range(20):
            a.add(_ticket(b"c%d" % k))
            await asyncio.gather(a.sync(), a.sync(), a.sync())
        await b.sync()
        assert all(b.pop(b"c%d" % k) is not None for k in range(20))
    finally:
        a.close()
        b.close()


@pytest.mark.postgres
async def test_vehicle_resumes_with_0rtt_on_another_node_after_its_node_died(tmp_path, pki,
                                                                             pg_url, cluster_key):
    edge, rig, nodes, public = await _cluster(tmp_path, pki, cluster_key[1], ticket_file=pg_url)
    try:
        token = await rig.provision("resumer")
        agent = AgentRig(tmp_path / "state", "resumer", token, HOST, public, pki["ca"]).start()
        try:
            first = await until(lambda: _holder(nodes, "resumer"), 15, "connected")
            await agent.add(5)
            await until(lambda: agent.uplink.stats.readings_acked >= 5, 15, "acked")
            assert agent.uplink.stats.extra["session_resumed"] is False
        finally:
            await agent.stop()
        await nodes[first].tickets.sync()
        nodes[first]._server._transport.endpoint.close()  # the node dies
        await until(lambda: first not in edge.router.live(edge.loop.time()), 10, "node dead")
        for sid, g in nodes.items():
            if sid != first:
                await g.tickets.sync()
        agent = AgentRig(tmp_path / "state", "resumer", token, HOST, public, pki["ca"]).start()
        try:
            second = await until(lambda: _holder(nodes, "resumer", dead=first), 15, "connected")
            await agent.add(5)
            await until(lambda: agent.uplink.stats.readings_acked >= 5, 15, "acked")
            assert second != first
            assert agent.uplink.stats.extra["session_resumed"] is True
            assert agent.uplink.stats.extra["early_data_accepted"] is True
        finally:
            await agent.stop()
        assert await rig.seqs("resumer") == list(range(1, 11))
    finally:
        await _stop(edge, rig, nodes)
