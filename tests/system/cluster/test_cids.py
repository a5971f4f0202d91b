"""The QUIC-LB plaintext CID layout, and the aioquic behaviours `issue_routable_cids` relies on
(docs/scaling.md §3). If an aioquic release changes how it draws server CIDs, these fail."""

from __future__ import annotations

import asyncio
import os

import pytest

from backend.cluster.cids import CID_LENGTH, CidLayout, issue_routable_cids, refuse_unroutable
from geostream.quic import library
from tests.integration.net.rig import client_config

# the aioquic behaviours the hook relies on
lib = library("aioquic")
QuicConfiguration, QuicConnection = lib.QuicConfiguration, lib.QuicConnection
QuicConnectionProtocol, connect, serve = lib.QuicConnectionProtocol, lib.connect, lib.serve

ALPN = ["cid-test"]


def test_layout_round_trip_and_refusals():
    layout = CidLayout(config=2)
    cid = layout.encode(513, nonce=b"\x01\x02\x03\x04\x05")
    assert cid == bytes([0b010_00111, 0x02, 0x01, 1, 2, 3, 4, 5])
    assert layout.server_id(cid) == 513
    assert CidLayout(config=1).server_id(cid) is None, "another config is not ours"
    assert layout.server_id(cid[:7]) is None
    with pytest.raises(ValueError):
        layout.encode(70_000)
    with pytest.raises(ValueError):
        CidLayout(config=7)
    # two CIDs of one node differ (nonce), so they stay unlinkable to each other
    assert len({layout.encode(5) for _ in range(100)}) == 100


def _server_quic(pki) -> QuicConnection:
    cfg = QuicConfiguration(is_client=False, alpn_protocols=ALPN)
    cfg.load_cert_chain(pki["cert"], pki["key"])
    return QuicConnection(configuration=cfg, original_destination_connection_id=os.urandom(8))


def test_pins_aioquic_draws_host_cids_in_init_and_replenish(pki):
    quic = _server_quic(pki)
    # pinned: the first host CID is one object whose cid is also host_cid and the initial
    # source CID of the transport parameters, all of the configured length
    assert quic._configuration.connection_id_length == CID_LENGTH
    assert len(quic._host_cids) == 1
    assert quic.host_cid == quic._host_cids[0].cid == quic._local_initial_source_connection_id
    issue_routable_cids(lib, quic, CidLayout(), 42)
    assert CidLayout().server_id(quic.host_cid) == 42
    assert quic._local_initial_source_connection_id == quic.host_cid
    # pinned: _replenish_connection_ids appends new CIDs up to the peer's limit
    quic._remote_active_connection_id_limit = 8
    quic._replenish_connection_ids()
    assert len(quic._host_cids) == 8, "aioquic no longer replenishes in _replenish_connection_ids"
    assert {CidLayout().server_id(c.cid) for c in quic._host_cids} == {42}
    assert len({c.cid for c in quic._host_cids}) == 8


class _Adopting(QuicConnectionProtocol):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        issue_routable_cids(lib, self._quic, CidLayout(), 7)


async def test_pins_real_handshake_uses_only_routable_cids(pki):
    """Over loopback with aioquic's own serve(): every CID the client learns carries the server
    id, and packets to them reach the connection (QuicServer registers connection.host_cid
    after create_protocol, and NEW_CONNECTION_ID frames carry the replenished CIDs)."""
    cfg = QuicConfiguration(is_client=False, alpn_protocols=ALPN)
    cfg.load_cert_chain(pki["cert"], pki["key"])
    server = await serve("127.0.0.1", 0, configuration=cfg, create_protocol=_Adopting)
    port = server._transport.get_extra_info("sockname")[1]
    try:
        ccfg = client_config(pki["ca"])
        ccfg.alpn_protocols = ALPN
        async with asyncio.timeout(10), connect("127.0.0.1", port, configuration=ccfg) as client:
            await client.ping()
            quic = client._quic
            for _ in range(50):  # NEW_CONNECTION_ID frames follow the handshake
                if len(quic._peer_cid_available) >= 7:
                    break
                await asyncio.sleep(0.02)
            cids = [quic._peer_cid.cid] + [c.cid for c in quic._peer_cid_available]
            assert len(cids) == 8
            assert {CidLayout().server_id(c) for c in cids} == {7}
            # switch to the next CID and still reach the server
            quic.change_connection_id()
            await client.ping()
            assert CidLayout().server_id(quic._peer_cid.cid) == 7
    finally:
        server.close()


def test_qh3_routes_its_first_cid_only(pki):
    """qh3 through the seam (docs/link.md, QUIC library): the first CID carries the server id
    and the handshake completes on it; the CIDs its native core issues in NEW_CONNECTION_ID
    are random (qh3 2.1.0's `issue_spare_connection_ids` draws them from its own random
    generator, and the core refuses a peer CID limit under 2, so at least one is always
    issued): a gateway node behind the router or SO_REUSEPORT steering stays on aioquic. If
    a qh3 release makes them routable, this fails: then its adapter can say so."""
    qh3 = library("qh3")
    assert qh3.ROUTABLE_NEW_CIDS is False
    cfg = qh3.QuicConfiguration(is_client=False, alpn_protocols=ALPN)
    cfg.load_cert_chain(pki["cert"], pki["key"])
    ccfg = client_config(pki["ca"], lib=qh3)
    ccfg.alpn_protocols = ALPN
    client = qh3.QuicConnection(configuration=ccfg)
    client.connect(("127.0.0.1", 4433), now=1.0)
    first = client.datagrams_to_send(now=1.0)
    server = qh3.QuicConnection(configuration=cfg, original_destination_connection_id=(
        qh3.destination_cid(first[0][0], CID_LENGTH)))
    issue_routable_cids(qh3, server, CidLayout(), 42)
    assert CidLayout().server_id(server.host_cid) == 42
    issued, done = [], False
    for data, _ in first:
        server.receive_datagram(data, ("127.0.0.1", 50000), now=1.0)
    for _ in range(10):  # bounded: the handshake takes two or three flights
        for data, _ in server.datagrams_to_send(now=1.0):
            assert qh3.destination_cid(data, CID_LENGTH) is not None
            client.receive_datagram(data, ("127.0.0.1", 4433), now=1.0)
        for data, _ in client.datagrams_to_send(now=1.0):
            server.receive_datagram(data, ("127.0.0.1", 50000), now=1.0)
        while (ev := server.next_event()) is not None:
            done |= isinstance(ev, qh3.HandshakeCompleted)
            if isinstance(ev, qh3.ConnectionIdIssued):
                issued.append(ev.connection_id)
    assert done, "the handshake completed on the routable first CID"
    assert issued and all(CidLayout().server_id(c) != 42 for c in issued), issued


def test_a_cluster_node_on_a_library_without_routable_cids_is_refused():
    """A cluster node or --reuseport worker handed qh3 refuses to serve, saying why (a vehicle
    that migrates would be lost on another process)."""
    refuse_unroutable(library("aioquic"))
    with pytest.raises(ValueError, match="not routable.*loses its connection"):
        refuse_unroutable(library("qh3"))


async def test_a_gateway_whose_cids_are_routed_without_a_relay_refuses_qh3(tmp_path, pki,
                                                                          monkeypatch):
    """A single gateway and a node behind the router (which announces qh3's random CIDs to
    the router) default to qh3; a cluster hook that routes by server id alone (a --reuseport
    worker without its relay channels) defaults to aioquic, and qh3 named for it is refused at
    construction, or at start() when the hook is set later."""
    from backend.cluster.node import ClusterNode
    from backend.cluster.reuseport import ReuseportNode
    from backend.gateway import Gateway
    from tests.integration.net.rig import GatewayRig

    monkeypatch.delenv("FLEET_QUIC_LIBRARY", raising=False)
    rig = GatewayRig(tmp_path, pki)
    assert rig.gateway.quic.NAME == "qh3"
    node = ClusterNode(1, ("127.0.0.1", 9), b"k" * 32)
    assert Gateway(rig.store, rig.writer, rig.hub, cluster=node).quic.NAME == "qh3"
    bare = ReuseportNode(0, -1)  # no channels: nothing relays a CID without the server id
    assert not bare.relays_cids
    assert Gateway(rig.store, rig.writer, rig.hub, cluster=bare).quic.NAME == "aioquic"
    with pytest.raises(ValueError, match="not routable"):
        Gateway(rig.store, rig.writer, rig.hub, cluster=bare, quic_library="qh3")
    late = Gateway(rig.store, rig.writer, rig.hub, quic_library="qh3")
    late.cluster = bare
    with pytest.raises(ValueError, match="not routable"):
        await late.start("127.0.0.1", 0, pki["cert"], pki["key"])
