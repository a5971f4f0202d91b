"""Several gateway processes on one port (backend/cluster/reuseport.py): the kernel steers each
datagram by the server id of its destination CID, so a migrated connection stays on the
process that holds it; a CID without the server id (qh3's after the first) is relayed to
its owner (backend/cluster/relay.py). Loopback, real kernel, real QUIC (both libraries)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import pytest

from agent.quic_link import QuicLink
from backend.cluster.cids import CidLayout, issue_routable_cids
from backend.cluster.relay import RelayBook
from backend.cluster.relay_edge import RelayEdge
from backend.cluster.reuseport import attach, program, reuseport_socket, select
from backend.gateway_edge import EdgeConnection, EdgeServer, UdpEdge
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


@contextlib.asynccontextmanager
async def _client(lib, pki, group: list[socket.socket]):
    """The agent's link (QUIC library `lib`) connected to the group; yields it, its stream
    and the answers it received, and closes it."""
    cfg = client_config(pki["ca"], lib=lib)
    cfg.alpn_protocols = ALPN
    answers: list[bytes] = []
    link = QuicLink(cfg, group[0].getsockname(), lambda sid, d, end: answers.append(d), lib=lib)
    try:
        await link.connect(HOST)
        yield link, link.conn.get_next_available_stream_id(), answers
    finally:
        link.close()
        link.abort()


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
    try:
        async with _client(lib, pki, socks) as (link, stream, answers):
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
        for _, server in nodes:
            server.close()


class _EchoConn(EdgeConnection):
    """A gateway process's connection on the UDP edge: its first CID carries the server id
    (the seam's hook, as `ReuseportNode.adopt`), every stream message is recorded and
    answered."""

    server_id = 0
    received: list

    def __init__(self, quic, edge):
        super().__init__(quic, edge)
        issue_routable_cids(self._lib, quic, CidLayout(), self.server_id)

    def quic_event_received(self, event) -> None:
        if isinstance(event, self._lib.StreamDataReceived):
            self.received.append(event.data)
            self._quic.send_stream_data(event.stream_id, b"ok:" + event.data)
            self.transmit()


# Moves until the connection used a CID the kernel steers to the other process (each of
# qh3's random CIDs does with one chance in two: 2^-40 that none of 40 does).
MAX_MOVES = 40


@pytest.mark.parametrize("name", ["qh3", "aioquic"])
async def test_cids_without_the_server_id_are_relayed_to_their_owner(pki, name):
    """Two 'processes' on the UDP edge (EdgeServers with server ids 0 and 1, each on its own
    member socket, joined by a relay channel as `--reuseport` workers are): a client of the
    agent's link moves to a new address and the next CID of the gateway's until one of them
    is steered by the kernel to the process that does not hold the connection, then its
    address changes under the same CID (a NAT rebinding). With qh3 (which draws those CIDs
    without the server id) every message still reaches the one owner, through the other
    process's relay; with aioquic nothing is relayed."""
    lib = library(name)
    socks = _group(2)
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    channels = [{1: left}, {0: right}]
    cfg = lib.QuicConfiguration(is_client=False, alpn_protocols=ALPN)
    cfg.load_cert_chain(pki["cert"], pki["key"])
    servers, conns = [], []
    for sid, sock in enumerate(socks):
        sock.setblocking(False)
        conn = type(f"Echo{sid}", (_EchoConn,), {"server_id": sid, "received": []})
        server = EdgeServer(lib, configuration=cfg, create_protocol=conn)
        UdpEdge(sock, server)
        server.relay = RelayEdge(RelayBook(sid, 2), channels[sid], server)
        servers.append(server)
        conns.append(conn)
    try:
        async with _client(lib, pki, socks) as (link, stream, answers):
            owner, sent = None, 0
            for i in range(MAX_MOVES + 1):
                link.send(stream, b"m%02d" % i)
                sent += 1
                await until(lambda n=i: len(answers) > n, 10, f"answer {i}")
                if owner is None:
                    (owner,) = [sid for sid, c in enumerate(conns) if c.received]
                if servers[1 - owner].stats["relay_out"] >= 3 or i == MAX_MOVES:
                    break
                await link.migrate(f"127.0.0.{2 + i % 10}")
            moves = link.migrations
            assert moves == sent - 1
            # a NAT rebinding: a new source address with the same CID (the link's socket changes,
            # its connection is not told): the datagrams still reach the owner
            await link._bind("127.0.0.42")
            link.send(stream, b"m%02d" % sent)
            sent += 1
            await until(lambda: len(answers) >= sent, 10, "an answer after the rebinding")
            assert link.migrations == moves
            assert conns[owner].received == [b"m%02d" % i for i in range(sent)]
            assert conns[1 - owner].received == [], "the other process never holds it"
            assert link.handshakes == 1
            out, into = servers[1 - owner].stats, servers[owner].stats
            relayed = out["relay_out"]
            if name == "qh3":
                assert relayed >= 3, f"{moves} moves, nothing relayed"
                # each one reaches the owner (a last ACK may still be in the channel)
                await until(lambda: into["relay_in"] == out["relay_out"], 5, "relayed delivered")
            else:
                assert moves == MAX_MOVES and relayed == 0, "aioquic's CIDs carry the server id"
    finally:
        for server in servers:
            server.close()
        left.close()
        right.close()
