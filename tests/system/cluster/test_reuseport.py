"""Several gateway processes on one port (backend/cluster/reuseport.py): the kernel steers each
datagram by the server id of its destination CID, so a migrated connection stays on the
process that holds it. Loopback, real kernel, real QUIC (aioquic through the seam)."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from agent.quic_link import QuicLink
from backend.cluster.cids import CidLayout, issue_routable_cids
from backend.cluster.reuseport import attach, program, reuseport_socket, select
from geostream.quic import library, protocol_class
from tests.integration.net.rig import client_config, until

HOST = "127.0.0.1"
GROUP = 3
ALPN = ["reuseport-test"]


def _group(n: int = GROUP, base: int = 0) -> list[socket.socket]:
    first = reuseport_socket(HOST, 0)
    port = first.getsockname()[1]
    socks = [first] + [reuseport_socket(HOST, port) for _ in range(n - 1)]
    attach(first, n, base)
    for s in socks:
        s.settimeout(2)
    return socks


def _receiver(socks: list[socket.socket], datagram: bytes) -> int:
    """Send `datagram` to the group; the index of the socket that got it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        out.sendto(datagram, socks[0].getsockname())
    import select as io

    ready, _, _ = io.select(socks, [], [], 2)
    assert len(ready) == 1, "exactly one member of the group gets each datagram"
    got = ready[0].recv(2048)
    assert got == datagram
    return socks.index(ready[0])


def test_the_kernel_steers_by_the_server_id_of_the_destination_cid():
    socks = _group()
    try:
        layout = CidLayout()
        for sid in (0, 1, 2, 2, 0, 1):
            short = bytes([0x40]) + layout.encode(sid) + os.urandom(30)
            assert _receiver(socks, short) == sid, f"short header, server id {sid}"
            # a Handshake packet to our CID: version, DCID length, DCID
            long = bytes([0xE0]) + b"\0\0\0\1" + bytes([8]) + layout.encode(sid) + b"\0" * 30
            assert _receiver(socks, long) == sid, f"long header, server id {sid}"
        # a client's first Initial (its own random DCID): the same member for each resend
        for _ in range(5):
            initial = bytes([0xC0]) + b"\0\0\0\1" + bytes([8]) + os.urandom(8) + b"\0" * 1200
            first = _receiver(socks, initial)
            assert all(_receiver(socks, initial) == first for _ in range(3))
            assert first == select(initial, GROUP)
    finally:
        for s in socks:
            s.close()


def test_server_ids_of_another_host_and_foreign_cids_still_land_somewhere():
    socks = _group(2, base=10)
    try:
        layout = CidLayout()
        assert _receiver(socks, bytes([0x40]) + layout.encode(11) + b"x" * 20) == 1
        assert _receiver(socks, bytes([0x40]) + layout.encode(10) + b"x" * 20) == 0
        for stray in (layout.encode(3), layout.encode(12), os.urandom(8), b"\x40"):
            assert _receiver(socks, bytes([0x40]) + stray) in (0, 1)
        with pytest.raises(ValueError):
            program(0)
    finally:
        for s in socks:
            s.close()


class _Node:
    """A gateway process's part: every connection it accepts issues CIDs with its server id
    and records what arrives."""

    lib = None
    server_id = 0
    received: list

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        issue_routable_cids(self.lib, self._quic, CidLayout(), self.server_id)

    def quic_event_received(self, event) -> None:
        if isinstance(event, self.lib.StreamDataReceived):
            self.received.append(event.data)
            self._quic.send_stream_data(event.stream_id, b"ok:" + event.data)
            self.transmit()


async def test_a_migrated_connection_stays_on_the_process_that_holds_it(pki):
    """Two 'processes' (servers with server ids 0 and 1, each on its own member socket of the
    group); a client connects, moves to a new address and a new CID 20 times: every datagram
    after the handshake reaches the same server, the other never hears of it."""
    lib = library("aioquic")  # the seam's gateway library (qh3 cannot issue routable CIDs)
    loop = asyncio.get_running_loop()
    socks = _group(2)
    cfg = lib.QuicConfiguration(is_client=False, alpn_protocols=ALPN)
    cfg.load_cert_chain(pki["cert"], pki["key"])
    nodes = []
    for sid, sock in enumerate(socks):
        sock.setblocking(False)
        node = protocol_class(lib, _Node)
        node = type(f"Node{sid}", (node,), {"lib": lib, "server_id": sid, "received": []})
        server = lib.QuicServer(configuration=cfg, create_protocol=node)
        await loop.create_datagram_endpoint(lambda s=server: s, sock=sock)
        nodes.append((node, server))
    ccfg = client_config(pki["ca"], lib=lib)
    ccfg.alpn_protocols = ALPN
    answers: list[bytes] = []
    link = QuicLink(ccfg, socks[0].getsockname(), lambda sid, d, end: answers.append(d), lib=lib)
    try:
        await link.connect(HOST)
        stream = link.conn.get_next_available_stream_id()
        for i in range(20):
            link.send(stream, b"m%02d" % i)
            await until(lambda n=i: len(answers) > n, 5, f"answer {i}")
            await link.migrate(f"127.0.0.{2 + i % 10}")
        owner = [i for i, (node, _) in enumerate(nodes) if node.received]
        assert len(owner) == 1, "one process holds the connection"
        node = nodes[owner[0]][0]
        assert node.received == [b"m%02d" % i for i in range(20)]
        assert link.migrations == 20 and link.handshakes == 1
        peer_cid = link.conn._peer_cid.cid  # the CID it uses now, after 20 changes
        assert CidLayout().server_id(peer_cid) == owner[0]
    finally:
        link.close()
        link.abort()
        for _, server in nodes:
            server.close()
