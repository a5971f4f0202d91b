"""Real agents through the real router to real gateway nodes on loopback (docs/scaling.md §4).

Three gateway nodes share one store and writer (the in-process stand-in for the shared
PostgreSQL of a cluster; the namespace test runs them as processes). The router learns them
from their heartbeats.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from backend.cluster.cids import CidLayout
from backend.cluster.edge import RouterEdge
from backend.cluster.node import ClusterNode
from backend.gateway import Gateway
from tests.integration.net.rig import AgentRig, GatewayRig, until

HOST = "127.0.0.1"
MIGRATIONS = 10


async def _cluster(tmp_path, pki, key, ticket_file=":memory:", quic_library=None):
    edge = await RouterEdge(key).start((HOST, 0), (HOST, 0))
    public, tunnel = edge.ports()
    rig = GatewayRig(tmp_path, pki)
    await rig.store.open()
    rig.writer.start()
    nodes = {}
    for sid in (1, 2, 3):
        g = rig.gateway if sid == 1 else Gateway(rig.store, rig.writer, rig.hub)
        g.ticket_file = ticket_file
        g.quic_library = quic_library
        g.cluster = ClusterNode(sid, (HOST, tunnel), key)
        await g.start(HOST, 0, pki["cert"], pki["key"])
        nodes[sid] = g
    await until(lambda: edge.router.live(edge.loop.time()) == [1, 2, 3], 5, "heartbeats")
    return edge, rig, nodes, public


async def _stop(edge, rig, nodes):
    for g in nodes.values():
        await g.stop()
    await rig.writer.stop()
    await rig.store.close()
    edge.close()


async def _start_agents(agents, rig, tmp_path, public, pki, count=6):
    """`count` provisioned agents v0, v1, … through the router's `public` address, appended
    to `agents` as each starts (so the caller's cleanup stops those that did)."""
    for i in range(count):
        token = await rig.provision(f"v{i}")
        agents.append(AgentRig(tmp_path / f"a{i}", f"v{i}", token, HOST, public,
                               pki["ca"]).start())


def _holder(nodes, vehicle, dead=None):
    """The one node holding the vehicle's connection (a dead node's memory does not count:
    in-process, its connections live on until their idle timeout)."""
    held = [sid for sid, g in nodes.items() if vehicle in g.connections and sid != dead]
    return held[0] if len(held) == 1 else None


@pytest.mark.parametrize("library", ["qh3", "aioquic"])
async def test_migrating_agent_stays_on_its_node_through_the_router(tmp_path, pki, cluster_key,
                                                                    library):
    """On qh3 the CIDs the agent moves to carry no server id: the node announced each to the
    router (backend/cluster/edge.py RouterAnnouncer), which routes them to it."""
    edge, rig, nodes, public = await _cluster(tmp_path, pki, cluster_key[1],
                                              quic_library=library)
    agent = None
    try:
        token = await rig.provision("mover")
        agent = AgentRig(tmp_path / "agent", "mover", token, HOST, public, pki["ca"]).start()
        sid = await until(lambda: _holder(nodes, "mover"), 15, "connected to one node")
        link = agent.uplink.link
        (proto,) = nodes[sid].connections["mover"]
        # every connection ID the node issued routes back to it (the agent may use any of
        # them after a migration, whichever QUIC library it runs)
        lib = nodes[sid].quic
        issued = lib.host_cids(proto._quic)
        assert issued and {CidLayout().server_id(c) for c in issued} == {sid}
        hosts = itertools.cycle([f"127.0.0.{i}" for i in range(2, 7)])
        for _ in range(MIGRATIONS):
            await agent.add(5)
            before = agent.uplink.stats.readings_acked
            await agent.uplink.migrate(next(hosts))
            await until(lambda b=before: agent.uplink.stats.readings_acked > b, 10,
                        "an ack on the new path")
        assert link.migrations == MIGRATIONS and link.handshakes == 1
        assert agent.uplink.link is link and _holder(nodes, "mover") == sid
        assert nodes[sid].connections["mover"] == [proto], "the same connection on its node"
        assert sum(g.stats.connections for g in nodes.values()) == 1
        # the node saw the vehicle's real (migrated) address through the tunnel
        assert proto.peer_address()[0] != HOST
        n = agent.appended
        await until(lambda: agent.uplink.stats.readings_acked >= n, 20, "all acked")
        assert await rig.seqs("mover") == list(range(1, n + 1)), "0 lost, 0 duplicates"
        assert edge.router.stats["by_cid"] > 0 and edge.router.stats["by_hash"] > 0
        assert lib.NAME == library
        if library == "qh3":
            assert edge.router.stats["by_announced"] > 0, "moved onto announced CIDs"
        else:
            assert edge.router.stats["by_announced"] == 0, "aioquic's CIDs carry the server id"
    finally:
        if agent:
            await agent.stop()
        await _stop(edge, rig, nodes)


async def test_dead_node_vehicles_reconnect_to_a_live_one(tmp_path, pki, cluster_key):
    edge, rig, nodes, public = await _cluster(tmp_path, pki, cluster_key[1])
    agents = []
    try:
        await _start_agents(agents, rig, tmp_path, public, pki)
        await until(lambda: all(_holder(nodes, f"v{i}") for i in range(6)), 20, "all connected")
        for a in agents:
            await a.add(20)
        await until(lambda: all(a.uplink.stats.readings_acked >= 20 for a in agents), 20, "acks")
        victim = _holder(nodes, "v0")
        moved = [f"v{i}" for i in range(6) if _holder(nodes, f"v{i}") == victim]
        # the node dies without a word: its socket closes, its heartbeats stop
        nodes[victim]._server._transport.endpoint.close()
        for a in agents:
            await a.add(20)
        await until(lambda: all(_holder(nodes, v, dead=victim) for v in moved), 60,
                    "the dead node's vehicles on live nodes")
        assert victim not in edge.router.live(edge.loop.time())
        await until(lambda: all(a.uplink.stats.readings_acked >= 40 for a in agents), 30,
                    "everything acked")
        for i in range(6):
            assert await rig.seqs(f"v{i}") == list(range(1, 41)), f"v{i}: 0 lost, 0 duplicates"
    finally:
        for a in agents:
            await a.stop()
        await _stop(edge, rig, nodes)


async def test_command_reaches_the_vehicle_through_the_node_holding_it(tmp_path, pki, cluster_key):
    """Stored through one node, woken on NATS, sent by the node that holds the connection."""
    from backend.fanout import NatsFanout
    from tests.system.cluster.natsfixture import NatsServer

    server = NatsServer().start()
    edge, rig, nodes, public = await _cluster(tmp_path, pki, cluster_key[1])
    fanouts, agent = [], None
    try:
        for g in nodes.values():
            f = NatsFanout(server.url, rig.hub)
            f.on_wake = g.downlink.woken
            g.downlink.notify_other_nodes = f.wake
            fanouts.append(await f.start())
        token = await rig.provision("cmd-v")
        agent = AgentRig(tmp_path / "agent", "cmd-v", token, HOST, public, pki["ca"]).start()
        holder = await until(lambda: _holder(nodes, "cmd-v"), 15, "connected")
        other = next(sid for sid in nodes if sid != holder)
        cid = await nodes[other].downlink.send("cmd-v", "ping", {"n": 1})
        await until(lambda: (cid, "ping") in agent.uplink.commands_run, 10, "command run")
        for _ in range(50):  # bounded: the answer is recorded by the holding node
            if await rig.store.pending_commands("cmd-v") == []:
                break
            await asyncio.sleep(0.1)
        assert await rig.store.pending_commands("cmd-v") == []
        assert agent.uplink.commands_run.count((cid, "ping")) == 1
    finally:
        if agent:
            await agent.stop()
        for f in fanouts:
            await f.stop()
        await _stop(edge, rig, nodes)
        server.close()


@pytest.mark.parametrize("library", ["qh3", "aioquic"])
async def test_a_retry_brings_the_vehicle_back_to_the_node_that_sent_it(tmp_path, pki,
                                                                          cluster_key, library):
    """Nodes asking every new connection to validate its address (docs/protocol.md §1): the
    Retry's connection ID carries the node's server id, so the router brings the vehicle's
    next Initial, with the token, back to the node whose key sealed it. With a CID of no
    node's the router hashed it, mostly to another node, which refused the token."""
    edge, rig, nodes, public = await _cluster(tmp_path, pki, cluster_key[1],
                                              quic_library=library)
    for g in nodes.values():
        g._server.admission.retry_above = 0
    agents = []
    try:
        await _start_agents(agents, rig, tmp_path, public, pki)
        for agent in agents:
            await agent.add(3)
        for agent in agents:
            await until(lambda a=agent: a.uplink.stats.readings_acked >= 3, 20, "acked")
        stats = [g._server.stats for g in nodes.values()]
        assert sum(s["retry"] for s in stats) >= len(agents)
        assert sum(s["invalid_token"] for s in stats) == 0
        assert all(a.uplink.link.handshakes == 1 for a in agents)
    finally:
        for agent in agents:
            await agent.stop()
        await _stop(edge, rig, nodes)
