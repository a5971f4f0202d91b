"""A hostile peer that opens handshakes and never finishes them cannot shut the gateway's door
(docs/protocol.md §1, overload): past RETRY_ABOVE handshakes in progress an Initial without a
valid token gets a Retry (spoofed sources never come back), and one address holds at most
MAX_HANDSHAKES_PER_ADDRESS of each kind. The edge (backend/gateway_edge.py) with sans-IO
clients on both QUIC libraries: the flood's source addresses are whatever the test hands the
edge, so thousands of spoofed ones need no network; the real agent follows a Retry on the
emulated clock."""

from __future__ import annotations

import asyncio
import os

import pytest

from backend.edge_core import (
    INVALID_TOKEN,
    MAX_HANDSHAKES_IN_PROGRESS,
    MAX_HANDSHAKES_PER_ADDRESS,
    RETRY_ABOVE,
)
from geostream.quic import library
from tests import emuclock
from tests.integration.net.rig import client_config
from tests.integration.net.test_reconnect import RTT_S, _restart_twice
from tests.integration.net.test_udp_edge import SERVER_ADDR, _edge_and_client, _exchange

# Initials of the flood: more than the gateway's handshake slots, so the old door (every
# Initial a connection up to MAX_HANDSHAKES_IN_PROGRESS) was shut by it.
FLOOD = MAX_HANDSHAKES_IN_PROGRESS + 88
# Initials sent on the wire before the gateway reads them: well within a 208 KiB buffer
FLOOD_BURST = 32


def _spoofed(template: bytes, dcid: bytes, token: bytes | None = None) -> bytes:
    """`template` (a client's first Initial datagram) with another destination CID and, if
    given, `token`: what a flood costs its sender nothing to make. Its protection no longer
    matches, but the gateway counts the handshake as it opens the connection, before any
    decryption (so did the door before)."""
    dcid_len = template[5]
    scid_at = 6 + dcid_len
    scid_end = scid_at + 1 + template[scid_at]
    head = template[:5] + bytes([len(dcid)]) + dcid + template[scid_at:scid_end]
    rest = template[scid_end:]
    old_token_len = rest[0] & 0x3F  # the client's first Initial: no token, one byte (0)
    assert old_token_len == 0
    if token is not None:
        assert len(token) < 0x40
        head += bytes([len(token)]) + token
        return head + rest[1:]
    return head + rest


def _initial(lib, pki, now: float):
    """A fresh client connection of `lib` and the datagrams of its first flight."""
    client = lib.QuicConnection(configuration=client_config(pki["ca"], lib=lib))
    client.connect(SERVER_ADDR, now=now)
    return client, [data for data, _ in client.datagrams_to_send(now=now)]


def _answers(wire) -> list[bytes]:
    back, wire.datagrams = wire.datagrams, []
    return [data for data, _ in back]


@pytest.mark.parametrize("lib_name", ["aioquic", "qh3"])
async def test_spoofed_initials_take_half_the_slots_and_a_real_client_gets_in(lib_name, pki):
    """FLOOD Initials from as many spoofed addresses, none of which ever answers: the gateway
    keeps at most RETRY_ABOVE of them as handshakes (the rest get a Retry nobody follows,
    no connection); a real client then gets a Retry, follows it and completes its handshake.
    Before, the flood took all 512 slots and the real client was refused `busy`."""
    lib = library(lib_name)
    server, wire, client = _edge_and_client(lib, pki)
    now = asyncio.get_running_loop().time()
    _, (template, *_) = _initial(lib, pki, now)
    for i in range(FLOOD):
        spoofed = (f"10.{i // 250}.{i % 250}.1", 1024 + i)
        server.receive(_spoofed(template, os.urandom(8)), spoofed, now)
    server._flush()
    wire.datagrams = []
    assert server.admission.handshaking == RETRY_ABOVE, "the flood held more than half"
    assert server.stats["refused_busy"] == 0 and server.stats["retry"] >= FLOOD - RETRY_ABOVE

    client.connect(SERVER_ADDR, now=now)
    client.send_stream_data(0, b"hello")
    retries = server.stats["retry"]
    _exchange(server, wire, client, ("192.0.2.1", 40000))
    assert server.stats["retry"] > retries, "the real client was not asked to validate"
    assert server.stats["refused_busy"] == 0, "the real client was refused"
    real = [c for c in set(server._connections.values()) if c._handshaken]
    assert len(real) == 1 and not real[0]._terminated
    server.close()


async def test_one_address_holds_at_most_its_share_of_the_slots(pki):
    """A peer at one address that follows every Retry (its address is real) and finishes no
    handshake holds at most MAX_HANDSHAKES_PER_ADDRESS unvalidated and as many validated
    handshakes (its Initials made by copying one with new CIDs, as a flood would); the rest
    of its Initials are refused `busy`, and a vehicle at another address is admitted at
    once (no Retry: the gateway is below RETRY_ABOVE). Before, the peer took every slot."""
    lib = library("qh3")
    server, wire, client = _edge_and_client(lib, pki)
    now = asyncio.get_running_loop().time()
    hostile = "192.0.2.7"
    _, (template, *_) = _initial(lib, pki, now)
    for i in range(FLOOD):
        addr = (hostile, 1024 + i)
        server.receive(_spoofed(template, os.urandom(8)), addr, now)
        server._flush()
        for data in _answers(wire):  # a Retry is followed; anything else is not
            if data[0] & 0xF0 == 0xF0:  # long header, type Retry: its source CID, the token
                scid_at = 6 + data[5]
                scid = data[scid_at + 1:scid_at + 1 + data[scid_at]]
                token = data[scid_at + 1 + len(scid):-16]
                server.receive(_spoofed(template, scid, token), addr, now)
        server._flush()
        wire.datagrams = []
    assert server.admission.handshaking == 2 * MAX_HANDSHAKES_PER_ADDRESS
    assert server.admission._per_key == {(hostile, False): MAX_HANDSHAKES_PER_ADDRESS,
                                         (hostile, True): MAX_HANDSHAKES_PER_ADDRESS}
    assert server.stats["refused_busy"] >= FLOOD - 2 * MAX_HANDSHAKES_PER_ADDRESS

    client.connect(SERVER_ADDR, now=now)
    client.send_stream_data(0, b"hello")
    retries, refused = server.stats["retry"], server.stats["refused_busy"]
    _exchange(server, wire, client, ("198.51.100.1", 40000))
    assert (server.stats["retry"], server.stats["refused_busy"]) == (retries, refused)
    real = [c for c in set(server._connections.values()) if c._handshaken]
    assert len(real) == 1
    server.close()


@pytest.mark.parametrize("lib_name", ["aioquic", "qh3"])
async def test_a_token_from_another_address_or_forged_is_refused(lib_name, pki):
    """A Retry token is bound to the address it was sent to: replayed from another address
    (or garbled) the Initial is closed with INVALID_TOKEN and opens no connection."""
    lib = library(lib_name)
    server, wire, _ = _edge_and_client(lib, pki)
    server.admission.retry_above = 0  # every Initial without a token gets a Retry
    now = asyncio.get_running_loop().time()
    peer, datagrams = _initial(lib, pki, now)
    server.receive(datagrams[0], ("192.0.2.1", 5000), now)
    server._flush()
    (retry,) = _answers(wire)
    peer.receive_datagram(retry, SERVER_ADDR, now=now)
    tokened = [d for d, _ in peer.datagrams_to_send(now=now) if d[0] & 0xF0 == 0xC0]
    assert tokened
    server.receive(tokened[0], ("192.0.2.2", 5000), now)  # the attacker's copy
    server._flush()
    assert server.stats["invalid_token"] == 1 and not server._connections
    (close,) = _answers(wire)
    peer.receive_datagram(close, SERVER_ADDR, now=now)
    peer.handle_timer(now=peer.get_timer())
    ends = [e for e in iter(peer.next_event, None) if isinstance(e, lib.ConnectionTerminated)]
    assert [e.error_code for e in ends] == [INVALID_TOKEN]
    server.close()


def test_the_agent_follows_a_retry_and_resumes_with_0rtt_after_it(quic_library, tmp_path, pki):
    """With every new connection asked to validate its address (a gateway under pressure),
    the real agent follows the Retry: welcomed one round trip later than without it (3 RTTs
    for a full handshake, 2 resumed), its 0-RTT hello sent again after the Retry, every
    reading stored once."""
    (costs, stored), _ = emuclock.run(_restart_twice(tmp_path, pki, retry=True))
    assert costs == pytest.approx([3 * RTT_S, 2 * RTT_S], abs=1e-3), costs
    assert stored == list(range(1, 11))


def test_a_real_agent_gets_in_through_a_flood_of_handshakes_on_the_wire(quic_library, tmp_path,
                                                                       pki):
    """The real gateway on loopback, FLOOD crafted Initials on its socket (none finishes),
    then the real agent: it gets a Retry, follows it, is welcomed and its readings are
    stored, never refused `busy`. Before, the flood held every slot and the agent's
    connects were refused until the flood's handshakes were abandoned (10 s)."""
    stored, _ = emuclock.run(_flood_then_agent(tmp_path, pki))
    assert stored == list(range(1, 6))


async def _flood_then_agent(tmp_path, pki) -> list[int]:
    from tests.integration.net.rig import AgentRig, GatewayRig, until

    gw = await GatewayRig(tmp_path, pki).start()
    edge = gw.gateway._server
    token = await gw.provision("through")
    loop = asyncio.get_running_loop()
    flood, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=(gw.host, gw.port))
    try:
        _, (template, *_) = _initial(library(), pki, loop.time())
        # in bursts the gateway reads before the next: the whole flood at once (~1.4 MB of
        # socket buffer) outgrows a receive buffer capped by a default net.core.rmem_max
        # (208 KiB), and the kernel drops what does not fit
        for start in range(0, FLOOD, FLOOD_BURST):
            end = min(start + FLOOD_BURST, FLOOD)
            for _ in range(end - start):
                flood.sendto(_spoofed(template, os.urandom(8)))
            await until(lambda n=end: edge.stats["datagrams_in"] >= n, 10, "the flood read")
        assert edge.admission.handshaking == RETRY_ABOVE
        retries = edge.stats["retry"]
        agent = AgentRig(tmp_path / "state", "through", token, gw.host, gw.port, pki["ca"],
                         boottime=loop.time).start()
        try:
            await agent.add(5)
            await until(lambda: agent.uplink.stats.readings_acked >= 5, 15, "acked")
        finally:
            await agent.stop()
        assert edge.stats["retry"] > retries, "the agent was not asked to validate"
        assert edge.stats["refused_busy"] == 0, "the agent was refused"
        return await gw.seqs("through")
    finally:
        flood.close()
        await gw.stop()
