"""The shape of the uplink (geostream/quic_acks.py): a paced agent's QUIC ACKs ride in its
next batch, and the gateway's in its geostream ack, instead of datagrams of their own."""

from __future__ import annotations

import pytest

from backend.quic_tuning import ACK_DELAY_S
from geostream.quic_acks import ack_delay_for
from tests.integration.net.rig import AgentRig, until

# Handshake (Initial, Handshake + Finished), the hello, and one spare for a keepalive PING.
HANDSHAKE_AND_HELLO_DATAGRAMS = 4


@pytest.mark.qh3_gap("its native core sends an ACK-only datagram ~1 ms after every ack-eliciting "
                     "packet whatever max_ack_delay it is given")
async def test_a_paced_agent_sends_one_datagram_per_batch(quic_library, gw, tmp_path):
    token = await gw.provision("shape")
    agent = AgentRig(tmp_path / "shape", "shape", token, gw.host, gw.port, gw.pki["ca"],
                     send_interval_ms=500).start()
    try:
        await until(lambda: agent.uplink.stats.state == "connected", 10, "connect")
        await agent.stream(hz=4, seconds=4)
        await until(lambda: agent.uplink.stats.readings_acked == 16, 10, "all acked")
        link = agent.uplink.link
        sent, batches = link.datagrams_sent, agent.uplink.stats.batches_sent
        # each ack of the gateway was acknowledged inside the next batch: without that, every
        # batch costs a second datagram (an ACK-only one a millisecond after the ack)
        assert batches >= 6, batches
        assert sent <= batches + HANDSHAKE_AND_HELLO_DATAGRAMS, (sent, batches)
        # both sides advertised the delays they use (RFC 9000 §18.2 max_ack_delay)
        assert link.lib.NAME == quic_library
        assert link.lib.ack_delays(link.conn) == (ack_delay_for(0.5), ACK_DELAY_S)
        assert await gw.seqs("shape") == list(range(1, 17))
    finally:
        await agent.stop()


def test_unpaced_agents_keep_the_default_ack_delay():
    assert ack_delay_for(0) is None
    assert ack_delay_for(1.0) == 1.5
    assert ack_delay_for(1e6) < 2**14 / 1000  # the RFC's limit
