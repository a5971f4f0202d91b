"""The shape of the uplink (geostream/quic_acks.py): a paced agent's QUIC ACKs ride in its
next batch, and the gateway's in its geostream ack, instead of datagrams of their own.

On the emulated clock (tests/emuclock.py): commits take no time, so the shape is the
libraries' and ours, not the machine's load (a commit slower than the gateway's ACK_DELAY_S
costs a datagram on either library; on a qh3 gateway a second one, docs/link.md)."""

from __future__ import annotations

import asyncio

import pytest

from backend.quic_tuning import ACK_DELAY_S
from geostream.quic_acks import ack_delay_for
from tests import emuclock
from tests.integration.net.rig import AgentRig, GatewayRig, until

# Once connected and past the first batch (handshake, hello, qh3's path-MTU probes), one
# datagram per batch, and one spare for a keepalive PING.
SPARE_DATAGRAMS = 1
SEND_INTERVAL_S = 0.5


async def _one_datagram_per_batch(tmp_path, pki, agent_lib: str, gateway_lib: str) -> None:
    gw = await GatewayRig(tmp_path, pki, quic_library=gateway_lib).start()
    token = await gw.provision("shape")
    loop = asyncio.get_running_loop()
    agent = AgentRig(tmp_path / "shape", "shape", token, gw.host, gw.port, gw.pki["ca"],
                     send_interval_ms=round(SEND_INTERVAL_S * 1000), boottime=loop.time,
                     quic_library=agent_lib).start()
    try:
        await until(lambda: agent.uplink.stats.state == "connected", 10, "connect")
        await agent.stream(hz=4, seconds=1)
        await until(lambda: agent.uplink.stats.readings_acked == 4, 10, "the first acked")
        link = agent.uplink.link
        sent0, batches0 = link.datagrams_sent, agent.uplink.stats.batches_sent
        await agent.stream(hz=4, seconds=4)
        await until(lambda: agent.uplink.stats.readings_acked == 20, 10, "all acked")
        sent = link.datagrams_sent - sent0
        batches = agent.uplink.stats.batches_sent - batches0
        # each ack of the gateway was acknowledged inside the next batch: without that, every
        # batch costs a second datagram (an ACK-only one a millisecond after the ack)
        assert batches >= 6, batches
        assert sent <= batches + SPARE_DATAGRAMS, (sent, batches)
        # both sides advertised the delays they use (RFC 9000 §18.2 max_ack_delay), and each
        # side's peer sees them
        assert link.lib.NAME == agent_lib
        assert link.lib.ack_delays(link.conn) == (ack_delay_for(SEND_INTERVAL_S), ACK_DELAY_S)
        (proto,) = gw.gateway.connections["shape"]
        assert proto._lib.NAME == gateway_lib
        assert proto._lib.ack_delays(proto._quic)[1] == ack_delay_for(SEND_INTERVAL_S)
        assert await gw.seqs("shape") == list(range(1, 21))
    finally:
        await agent.stop()
        await gw.stop()


def test_a_paced_agent_sends_one_datagram_per_batch(quic_library, tmp_path, pki):
    emuclock.run(_one_datagram_per_batch(tmp_path, pki, quic_library, quic_library))


@pytest.mark.parametrize("agent_lib,gateway_lib", [("qh3", "aioquic"), ("aioquic", "qh3")])
def test_one_datagram_per_batch_across_libraries(agent_lib, gateway_lib, tmp_path, pki):
    """An agent and a gateway on different libraries (a fleet switching one side at a time)."""
    emuclock.run(_one_datagram_per_batch(tmp_path, pki, agent_lib, gateway_lib))


def test_unpaced_agents_keep_the_default_ack_delay():
    assert ack_delay_for(0) is None
    assert ack_delay_for(1.0) == 1.5
    assert ack_delay_for(1e6) < 2**14 / 1000  # the RFC's limit


async def test_the_agent_and_a_single_gateway_default_to_qh3(tmp_path, pki, monkeypatch):
    """Each side's default library (docs/link.md, QUIC library), when neither its
    configuration nor FLEET_QUIC_LIBRARY names one."""
    monkeypatch.delenv("FLEET_QUIC_LIBRARY", raising=False)
    gw = GatewayRig(tmp_path, pki)
    agent = AgentRig(tmp_path / "default", "default", "token", "127.0.0.1", 4433, pki["ca"])
    assert agent.uplink.quic.NAME == "qh3"
    assert gw.gateway.quic.NAME == "qh3"
