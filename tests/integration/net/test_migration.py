"""Migration (docs/protocol.md §8): the live connection moves to new sockets and connection IDs.

The loopback variant runs everywhere: the agent moves between 127.0.0.x addresses. The namespace
variant (tests/integration/net/test_netns.py) moves the vehicle between two real uplinks.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests import emuclock
from tests.integration.net.rig import AgentRig, GatewayRig, until

HANDOVERS = 100
def test_100_handovers_during_10hz_stream_loopback(quic_library, tmp_path, pki):
    """A handover every 0.2 s for 20 s of a 10 Hz stream, on the emulated clock
    (tests/emuclock.py: the real agent, gateway and store over loopback; 20 s of waits take
    none); real time: tests/integration/net/test_netns.py."""
    print("migration over loopback: the agent rebinds to other 127.x addresses "
          "(tests/integration/net/test_netns.py moves it between real uplinks)")
    emuclock.run(_handovers(tmp_path, pki))


@pytest.mark.parametrize("agent_lib,gateway_lib", [("qh3", "aioquic"), ("aioquic", "qh3")])
def test_100_handovers_across_libraries(agent_lib, gateway_lib, tmp_path, pki):
    """The same handovers with the agent on one library and the gateway on the other (each
    side's library is chosen on its own, docs/link.md, QUIC library)."""
    emuclock.run(_handovers(tmp_path, pki, agent_lib, gateway_lib))


async def _handovers(tmp_path, pki, agent_lib: str = "", gateway_lib: str | None = None) -> None:
    gw = await GatewayRig(tmp_path, pki, quic_library=gateway_lib).start()
    token = await gw.provision("mover")
    loop = asyncio.get_running_loop()
    agent = AgentRig(tmp_path / "agent", "mover", token, gw.host, gw.port, gw.pki["ca"],
                     boottime=loop.time, quic_library=agent_lib).start()
    try:
        await until(lambda: agent.uplink.link and agent.uplink.stats.state == "connected",
                    10, "connected")
        link = agent.uplink.link
        assert link.lib.NAME == (agent_lib or link.lib.NAME)
        streaming = asyncio.get_running_loop().create_task(agent.stream(10, HANDOVERS * 0.2 + 1))
        (proto,) = gw.gateway.connections["mover"]
        assert proto._lib.NAME == (gateway_lib or proto._lib.NAME)
        seen_at_gateway = set()
        hosts = itertools.cycle([f"127.0.0.{i}" for i in range(2, 12)] + ["127.0.0.1"])
        for _ in range(HANDOVERS):
            await asyncio.sleep(0.2)
            before = agent.uplink.stats.readings_acked
            await agent.uplink.migrate(next(hosts))
            assert agent.uplink.link is link
            # the next ack arrives over the new path
            await until(lambda b=before: agent.uplink.stats.readings_acked > b or streaming.done(),
                        5, "an ack on the new path")
            seen_at_gateway.add(proto.peer_address()[0])  # where the gateway sends now
        await streaming
        n = agent.appended
        await until(lambda: agent.uplink.stats.readings_acked >= n, 20, "everything acked")
        assert link.migrations == HANDOVERS
        assert len({h.removeprefix("::ffff:") for h in seen_at_gateway}) == 11, seen_at_gateway
        assert link.handshakes == 1, "one handshake: the same QUIC connection throughout"
        assert agent.uplink.stats.connects == 1 and gw.gateway.stats.connections == 1
        assert await gw.seqs("mover") == list(range(1, n + 1)), "0 lost, 0 duplicates"
        assert await agent.pending() == 0
        stats = gw.gateway._server.stats
        print("edge:", {k: v for k, v in stats.items() if not k.startswith("datagrams")})
        if proto._owns_address:  # the edge followed the vehicle (gateway_edge.PeerAddress)
            assert stats["peer_moved"] == HANDOVERS, stats
            # each new address validated by an acknowledgement of a packet sent only there
            # (at the latest in the next move's first packet); the last may still be pending
            assert stats["peer_address_validated"] >= HANDOVERS - 1, stats
    finally:
        await agent.stop()
        await gw.stop()


def test_qh3_server_answers_three_moves_then_no_new_address(pki):
    """Why the gateway's edge owns the peer's address on qh3 (gateway_edge.PeerAddress,
    docs/link.md, QUIC library), sans-IO: a qh3 server replaces every CID its client retires,
    yet never answers a connection's fourth new address (its core's path table holds four
    and never evicts one). If a qh3 release lifts that limit, this fails: then the edge can
    leave migration to the library again (`EDGE_OWNS_PEER_ADDRESS`)."""
    from geostream.quic import library
    from tests.integration.net.rig import client_config

    qh3 = library("qh3")
    scfg = qh3.QuicConfiguration(is_client=False, alpn_protocols=["m"])
    scfg.load_cert_chain(pki["cert"], pki["key"])
    ccfg = client_config(pki["ca"], lib=qh3)
    ccfg.alpn_protocols, ccfg.active_connection_id_limit = ["m"], 8
    client = qh3.QuicConnection(configuration=ccfg)
    server_addr, now = ("127.0.0.1", 4433), 1.0
    client.connect(server_addr, now=now)
    first = client.datagrams_to_send(now=now)
    server = qh3.QuicConnection(configuration=scfg, original_destination_connection_id=(
        qh3.destination_cid(first[0][0], 8)))
    issued: list[bytes] = []

    def exchange(port: int, now: float, out=first) -> int:
        """Datagrams both ways until quiet (bounded); the answers the client got."""
        answers = 0
        for _ in range(20):
            for data, _ in out:
                server.receive_datagram(data, ("127.0.0.1", port), now=now)
            while (event := server.next_event()) is not None:
                if isinstance(event, qh3.ConnectionIdIssued):
                    issued.append(event.connection_id)
                elif isinstance(event, qh3.StreamDataReceived) and event.data:
                    server.send_stream_data(event.stream_id, b"ok")
            back = server.datagrams_to_send(now=now)
            for data, _ in back:
                client.receive_datagram(data, server_addr, now=now)
            while (event := client.next_event()) is not None:
                answers += isinstance(event, qh3.StreamDataReceived) and event.data == b"ok"
            out = client.datagrams_to_send(now=now)
            if not out and not back:
                break
        return answers

    exchange(50000, now)
    answered = []
    for move, port in enumerate([50001, 50002, 50003, 50004], start=1):
        now += 0.5
        client.change_connection_id()
        client.send_stream_data(0, b"move %d" % move)
        answered.append(exchange(port, now, client.datagrams_to_send(now=now)))
    assert answered[:3] == [1, 1, 1], answered  # three new addresses: answered
    assert answered[3] == 0, "the fourth new address is answered now: re-measure qh3"
    # seven beside the handshake's, then one for each of the three CIDs retired by the moves
    assert len(issued) >= 7 + 3, "CIDs are replenished: not a shortage of connection IDs"
