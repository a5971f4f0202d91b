"""The gateway's UDP edge (backend/gateway_edge.py): a bounded drain per wakeup, and one
vehicle's flood does not stall the others."""

from __future__ import annotations

import asyncio
import collections
import socket

import pytest

from backend.edge_core import (
    BUSY_REASON,
    CONNECTION_REFUSED,
    SHED_HOLD_S,
    SHED_QUEUE_DELAY_S,
    Admission,
)
from backend.gateway_edge import MAX_DATAGRAMS_PER_WAKEUP, EdgeConnection, EdgeServer, UdpEdge
from geostream import ALPN
from geostream.messages import Ack, Batch, Welcome
from geostream.quic import library
from tests import emuclock
from tests.integration.net.rig import AgentRig, RawClient, client_config, until

# Linux's UDP_GRO socket option (SOL_UDP)
UDP_GRO = 104
# Enough batches for the exchange to overlap the flood for many loop turns.
BATCHES = 20
# The flooding vehicle's journal (the agent keeps up to 20,000 in memory): more than the
# gateway takes in the victim's first few exchanges.
FLOOD_READINGS = 20_000


class _Counting:
    """Stands where the EdgeServer sits: counts datagrams per socket wakeup, keeps what
    arrived (data, address, time). Its QUIC library decides how the edge reads: qh3 by
    batches (`recvmmsg`), aioquic by a `recvfrom` each."""

    def __init__(self, lib=None):
        self.lib = lib or library("qh3")
        self.stats = collections.Counter()
        self.per_wakeup: list[int] = []
        self.got: list = []
        self._now = 0

    def connection_made(self, transport) -> None:
        pass

    def receive(self, data, addr, now) -> None:
        self._now += 1
        self.got.append((data, addr, now))

    def receive_many(self, datagrams, now) -> None:
        for data, addr in datagrams:
            self.receive(data, addr, now)

    def flush_soon(self) -> None:
        self.per_wakeup.append(self._now)
        self._now = 0


@pytest.mark.parametrize("stamped", [False, True])
@pytest.mark.parametrize("quic", ["qh3", "aioquic"])
async def test_one_wakeup_reads_a_bounded_number_of_datagrams(quic, stamped):
    """At most MAX_DATAGRAMS_PER_WAKEUP per wakeup, whichever reader, the wakeup that reads
    its first datagram stamped (the lag sample, then whole batches) included."""
    sink = _Counting(library(quic))
    if stamped:
        sink.admission = Admission()
    edge = await UdpEdge.open(sink, "127.0.0.1", 0)
    port = edge.get_extra_info("sockname")[1]
    total = 3 * MAX_DATAGRAMS_PER_WAKEUP + 5
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(total):  # all in the socket's buffer before the loop runs again
                s.sendto(b"x" * 40, ("127.0.0.1", port))
        await until(lambda: sum(sink.per_wakeup) == total, 10, "every datagram read")
    finally:
        edge.close()
    assert max(sink.per_wakeup) == MAX_DATAGRAMS_PER_WAKEUP, sink.per_wakeup
    assert len(sink.per_wakeup) >= 4, "the loop ran other work between the slices"
    assert [d for d, _, _ in sink.got] == [b"x" * 40] * total
    if stamped and edge._stamped:
        assert sink.per_wakeup[0] < MAX_DATAGRAMS_PER_WAKEUP, sink.per_wakeup


@pytest.mark.parametrize("quic", ["qh3", "aioquic"])
@pytest.mark.parametrize(("family", "host", "sender_family", "sender_host"), [
    (socket.AF_INET, "127.0.0.1", socket.AF_INET, "127.0.0.1"),
    (socket.AF_INET6, "::1", socket.AF_INET6, "::1"),
    (socket.AF_INET6, "::", socket.AF_INET, "127.0.0.1"),  # dual stack: an IPv4-mapped peer
])
async def test_a_read_gives_each_datagram_with_its_senders_address_as_recvfrom_does(
        quic, family, host, sender_family, sender_host):
    """Whichever way the edge reads (a batch or a datagram per call), it hands on each
    datagram whole, in order, with the address `recvfrom` gives (what the edge compares
    with a connection's peer and sends to); a datagram of near UDP's largest size too."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    sink = _Counting(library(quic))
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setblocking(False)
    sock.bind((host, 0))
    edge = UdpEdge(sock, sink)
    port = sock.getsockname()[1]
    sizes = [1, 40, 1200, 1500, 65_000, 3]
    try:
        with socket.socket(sender_family, socket.SOCK_DGRAM) as s, \
                socket.socket(family, socket.SOCK_DGRAM) as probe:
            s.bind((sender_host, 0))
            for i, size in enumerate(sizes):
                s.sendto(bytes([i]) * size, (sender_host, port))
            # where a plain recvfrom on such a socket says the sender is
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            probe.bind((host, 0))
            s.sendto(b"p", (sender_host, probe.getsockname()[1]))
            expected = probe.recvfrom(16)[1]
            await until(lambda: len(sink.got) == len(sizes), 10, "every datagram read")
    finally:
        edge.close()
    assert [d for d, _, _ in sink.got] == [bytes([i]) * n for i, n in enumerate(sizes)]
    assert {a for _, a, _ in sink.got} == {expected}
    assert type(sink.got[0][1]) is type(expected)


def test_qh3s_batch_read_leaves_the_socket_without_gro():
    """qh3's batch read (`recvmmsg`) turns UDP GRO off again after its socket state turned
    it on: with GRO, a plain `recvmsg` of the socket (the edge's timestamped read) would
    hand several datagrams of one sender on as one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        read = library("qh3").batch_receiver(sock)
        assert read is not None and read() == []
        assert sock.getsockopt(socket.IPPROTO_UDP, UDP_GRO) == 0
        for i in range(3):
            s.sendto(b"%d" % i, sock.getsockname())
        assert [d for d, _ in read()] == [b"0", b"1", b"2"]
    assert library("aioquic").batch_receiver(sock) is None


def test_under_a_loop_that_counts_its_sockets_reads_the_edge_reads_each_datagram_through_it():
    """Under the emulated clock (tests/emuclock.py), which wraps the edge's socket to count
    what arrives, the edge reads through the wrapped socket (a `recvfrom` each, not the
    library's batch read past it): every datagram is counted as arrived, none written off,
    and the clock does not jump over them."""
    async def main():
        loop = asyncio.get_running_loop()
        sink = _Counting(library("qh3"))
        edge = await UdpEdge.open(sink, "127.0.0.1", 0)
        tx, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                    local_addr=("127.0.0.1", 0))
        t0 = loop.time()
        for i in range(100):
            tx.sendto(b"%d" % i, edge.get_extra_info("sockname"))
        await asyncio.sleep(30)
        tx.close()
        edge.close()
        return sink.got, t0

    (got, t0), loop = emuclock.run(main())
    assert [d for d, _, _ in got] == [b"%d" % i for i in range(100)]
    assert {now - t0 for _, _, now in got} == {0.0}
    assert loop.written_off == 0


async def test_the_lag_is_sampled_at_most_once_per_interval():
    """The first datagram of a wakeup is read with its kernel arrival time and tells the
    admission how long it waited, but not on every wakeup: at most every
    LAG_SAMPLE_INTERVAL_S (each sample is a recvmsg and its control message)."""
    sink = _Counting()
    sink.admission = Admission()
    edge = await UdpEdge.open(sink, "127.0.0.1", 0)
    port = edge.get_extra_info("sockname")[1]
    loop = asyncio.get_running_loop()
    try:
        if not edge._stamped:
            pytest.skip("no SO_TIMESTAMP on this platform")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"x" * 40, ("127.0.0.1", port))  # on loopback: queued when sendto returns
            edge._readable()
            sampled_until = edge._next_stamp
            assert sink.per_wakeup == [1] and sampled_until > loop.time()
            assert 0.0 <= sink.admission.delay < SHED_QUEUE_DELAY_S
            sink.admission.delay = -1.0  # a sample would overwrite it
            s.sendto(b"x" * 40, ("127.0.0.1", port))
            edge._readable()
            assert sink.per_wakeup == [1, 1], "read without its time"
            assert sink.admission.delay == -1.0 and edge._next_stamp == sampled_until
    finally:
        edge.close()


async def test_a_flooding_vehicle_does_not_stall_another(gw, tmp_path):
    """One vehicle drains a large journal as fast as the gateway lets it (credit and QUIC
    flow control are its only brakes); another vehicle's batches, one at a time, are all
    acknowledged while that drain is still going on."""
    token = await gw.provision("flooder")
    flooder = AgentRig(tmp_path / "agent", "flooder", token, gw.host, gw.port, gw.pki["ca"],
                       send_interval_ms=0)
    await flooder.add(FLOOD_READINGS, rich=True)
    victim = RawClient(gw)
    await victim.connect()
    assert isinstance(await victim.hello("victim", await gw.provision("victim")), Welcome)
    flooder.start()
    try:
        await until(lambda: flooder.uplink.stats.readings_acked > 0, 30, "the flood under way")
        progress = []  # the flooder's acked readings at each of the victim's acks
        for q in range(1, BATCHES + 1):
            victim.send(Batch(epoch=7, readings=({"q": q, "ts": 1_700_000_000_000 + q,
                                                  "k": "pos", "lat": 52.0, "lon": 4.0},)))
            ack = await victim.next_message(Ack, timeout=30)
            assert ack.through >= q, ack
            progress.append(flooder.uplink.stats.readings_acked)
    finally:
        victim.close()
        await flooder.stop()
    # served while the flood went on, not after it
    assert progress[0] < FLOOD_READINGS, progress
    assert progress[0] < progress[BATCHES // 2], f"the two interleave: {progress}"
    assert await gw.seqs("victim") == list(range(1, BATCHES + 1))


class _Sent:
    """Stands where the UDP socket sits: keeps what the edge sends."""

    def __init__(self):
        self.datagrams: list[bytes] = []

    def sendto(self, data: bytes, addr) -> None:
        self.datagrams.append(data)

    def close(self) -> None:
        pass


def _edge_and_client(lib, pki):
    """An `EdgeServer` of QUIC library `lib` writing to a `_Sent`, and a sans-IO client."""
    scfg = lib.QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
    scfg.load_cert_chain(pki["cert"], pki["key"])
    server = EdgeServer(lib, configuration=scfg, create_protocol=EdgeConnection)
    wire = _Sent()
    server.connection_made(wire)
    client = lib.QuicConnection(configuration=client_config(pki["ca"], lib=lib))
    return server, wire, client


SERVER_ADDR = ("127.0.0.1", 4433)


def _exchange(server, wire, client, client_addr, age: float = 0.0) -> list[tuple]:
    """Datagrams both ways until quiet (bounded); each client datagram reaches the edge
    `age` seconds older than the loop's time. Returns what the edge sent, with addresses."""
    loop = asyncio.get_running_loop()
    sent = []
    for _ in range(20):
        out = client.datagrams_to_send(now=loop.time())
        for data, _ in out:
            server.receive(data, client_addr, loop.time() - age)
        server._flush()
        back, wire.datagrams = wire.datagrams, []
        sent.extend(back)
        for data, _ in back:
            client.receive_datagram(data, SERVER_ADDR, now=loop.time())
        if not out and not back:
            break
    return sent


class _Sent:
    """Stands where the UDP socket sits: keeps what the edge sends."""

    def __init__(self):
        self.datagrams: list[tuple[bytes, tuple]] = []

    def sendto(self, data: bytes, addr) -> None:
        self.datagrams.append((data, addr))

    def close(self) -> None:
        pass


@pytest.mark.parametrize("lib_name", ["aioquic", "qh3"])
async def test_a_datagram_handed_over_with_an_earlier_time_keeps_the_connection(lib_name, pki):
    """A socket drain's datagrams may be handed over with a time earlier than the one a
    handshake flight was just sent at (the drain read them first). qh3's core closes the
    connection on an ACK that seems to arrive before the packet it acknowledges was sent
    ("InvalidTime", seen by 3 of 1,000 load-tester vehicles): the edge's clock never goes
    back. Every client datagram here is handed over with a time one second old."""
    lib = library(lib_name)
    server, wire, client = _edge_and_client(lib, pki)
    client.connect(SERVER_ADDR, now=asyncio.get_running_loop().time())
    client.send_stream_data(0, b"hello")
    _exchange(server, wire, client, ("127.0.0.1", 40000), age=1.0)
    (conn,) = set(server._connections.values())
    assert conn._handshaken
    assert not conn._terminated, "the connection was closed"
    closes = [e for e in iter(client.next_event, None) if isinstance(e, lib.ConnectionTerminated)]
    assert closes == []
    server.close()


async def test_qh3_edge_follows_a_moved_peer_and_ignores_a_replay(pki):
    """On qh3 the edge owns the peer's address (gateway_edge.PeerAddress): a datagram
    replayed from another address (an attacker who copied it) does not move the connection;
    the peer's next datagram from there does, the edge then sends at most three times what
    it received there until the peer acknowledged a packet sent only there."""
    lib = library("qh3")
    server, wire, client = _edge_and_client(lib, pki)
    home, away = ("127.0.0.1", 40000), ("127.0.0.2", 40001)
    loop = asyncio.get_running_loop()
    client.connect(SERVER_ADDR, now=loop.time())
    client.send_stream_data(0, b"hello")
    _exchange(server, wire, client, home)
    (conn,) = set(server._connections.values())
    assert conn.peer_address() == home

    client.send_stream_data(0, b"x" * 300)
    (captured, _), = client.datagrams_to_send(now=loop.time())
    server.receive(captured, home, loop.time())
    server.receive(captured, away, loop.time())  # the same packet again, from elsewhere
    server._flush()
    assert conn.peer_address() == home, "a replay moved the connection"
    assert all(addr == home for _, addr in wire.datagrams)

    wire.datagrams = []
    client.send_stream_data(0, b"moved")
    (moved, _), = client.datagrams_to_send(now=loop.time())
    server.receive(moved, away, loop.time())
    assert conn.peer_address() == away and not conn._peer.validated
    conn._quic.send_stream_data(0, b"ok")  # a short answer: within the budget
    conn.transmit()
    server._flush()
    first = wire.datagrams
    assert first and all(addr == away for _, addr in first)
    conn._quic.send_stream_data(0, b"z" * 1000)  # more than the budget allows
    conn.transmit()
    server._flush()
    assert sum(len(d) for d, _ in wire.datagrams) <= 3 * len(moved), "over the amplification limit"
    assert server.stats["amplification_dropped"] >= 1
    for data, _ in first:
        client.receive_datagram(data, SERVER_ADDR, now=loop.time())
    client.send_stream_data(0, b"more")  # with the ACK of what it got there, once due (1 ms)
    for data, _ in client.datagrams_to_send(now=loop.time() + 0.01):
        server.receive(data, away, loop.time())
    assert conn._peer.validated and server.stats["peer_address_validated"] == 1
    assert not conn._terminated
    server.close()


@pytest.mark.parametrize("lib_name", ["aioquic", "qh3"])
async def test_a_gateway_behind_refuses_new_connections_and_keeps_its_own(lib_name, pki):
    """While datagrams wait in its socket longer than SHED_QUEUE_DELAY_S, the edge answers a
    new connection's Initial with CONNECTION_REFUSED (no connection, no TLS) and the client
    ends its attempt; a connection it already has goes on; once the lag is gone, new ones
    are taken again."""
    lib = library(lib_name)
    server, wire, client = _edge_and_client(lib, pki)
    loop = asyncio.get_running_loop()
    client.connect(SERVER_ADDR, now=loop.time())
    client.send_stream_data(0, b"hello")
    _exchange(server, wire, client, ("127.0.0.1", 40000))
    (conn,) = set(server._connections.values())
    assert conn._handshaken and server.admission.handshaking == 0

    server.admission.queue_delay(SHED_QUEUE_DELAY_S + 0.5, loop.time())  # behind
    late = lib.QuicConnection(configuration=client_config(pki["ca"], lib=lib))
    late.connect(SERVER_ADDR, now=loop.time())
    sent = _exchange(server, wire, late, ("127.0.0.1", 40001))
    assert sent and server.stats["refused_busy"] == len(sent)  # one answer per Initial
    assert set(server._connections.values()) == {conn}, "a connection was opened"
    late.handle_timer(now=late.get_timer())  # the end of its draining period
    (end,) = [e for e in iter(late.next_event, None) if isinstance(e, lib.ConnectionTerminated)]
    assert end.error_code == CONNECTION_REFUSED and end.reason_phrase == BUSY_REASON.decode()

    events: list = []
    conn.quic_event_received = events.append
    client.send_stream_data(0, b"still here")  # the established connection is served
    _exchange(server, wire, client, ("127.0.0.1", 40000))
    assert [e.data for e in events if isinstance(e, lib.StreamDataReceived)] == [b"still here"]
    assert not conn._terminated

    later = loop.time() + SHED_HOLD_S + 0.1
    server.admission.queue_delay(0.0, later)
    assert server.admission.admit(later)
    server.close()


@pytest.mark.parametrize("lib_name", ["aioquic", "qh3"])
async def test_a_closed_connection_leaves_no_route_and_the_others_keep_theirs(lib_name, pki):
    lib = library(lib_name)
    server, wire, first = _edge_and_client(lib, pki)
    loop = asyncio.get_running_loop()
    second = lib.QuicConnection(configuration=client_config(pki["ca"], lib=lib))
    for client, port in ((first, 40000), (second, 40001)):
        client.connect(SERVER_ADDR, now=loop.time())
        client.send_stream_data(0, b"hello")
        _exchange(server, wire, client, ("127.0.0.1", port))
    conns = set(server._connections.values())
    assert len(conns) == 2
    gone = next(c for c in conns if c.peer_address() == ("127.0.0.1", 40000))
    stays = (conns - {gone}).pop()
    routes_of_stays = {cid for cid, c in server._connections.items() if c is stays}
    first.close()
    _exchange(server, wire, first, ("127.0.0.1", 40000))
    gone.wake(gone._quic.get_timer())  # its draining period ends
    assert gone._terminated
    assert gone not in server._connections.values()
    assert {cid for cid, c in server._connections.items() if c is stays} == routes_of_stays
    server.close()


@pytest.mark.parametrize("lib_name", ["aioquic", "qh3"])
async def test_a_read_serves_its_established_datagrams_before_a_new_handshake(lib_name, pki):
    """A socket read holding a new connection's Initial and an established connection's
    batch: the batch is taken first, the handshake after the read (docs/protocol.md §1,
    overload; backend/edge_intake.py); while the gateway is behind with no handshake time
    left, the Initial waits, and past its bound it is answered `busy`, without a connection."""
    lib = library(lib_name)
    server, wire, client = _edge_and_client(lib, pki)
    loop = asyncio.get_running_loop()
    client.connect(SERVER_ADDR, now=loop.time())
    _exchange(server, wire, client, ("127.0.0.1", 40000))
    (conn,) = set(server._connections.values())
    events: list = []
    conn.quic_event_received = events.append

    def read(new_addr):
        """A read: a new client's first flight, then a batch of the established client."""
        new = lib.QuicConnection(configuration=client_config(pki["ca"], lib=lib))
        new.connect(SERVER_ADDR, now=loop.time())
        client.send_stream_data(0, b"batch")
        datagrams = [(d, new_addr) for d, _ in new.datagrams_to_send(now=loop.time())]
        datagrams += [(d, ("127.0.0.1", 40000)) for d, _ in client.datagrams_to_send(
            now=loop.time())]
        server.receive_many(datagrams, loop.time())
        return new

    read(("127.0.0.1", 40001))
    assert [e.data for e in events if isinstance(e, lib.StreamDataReceived)] == [b"batch"]
    assert set(server._connections.values()) == {conn}, "handshaken before the batch"
    server.reads_done(behind=False)
    await asyncio.sleep(0)  # the loop's next turn: the handshake
    assert len(set(server._connections.values())) == 2
    assert {addr for _, addr in wire.datagrams} >= {("127.0.0.1", 40001)}, "no first flight"

    events.clear()
    server.intake.spent(1.0)  # behind, no handshake time left
    server.intake.max_wait = 0.0  # and the Initial's wait is over at the next turn
    late = read(("127.0.0.1", 40002))
    assert [e.data for e in events if isinstance(e, lib.StreamDataReceived)] == [b"batch"]
    wire.datagrams = []
    server.reads_done(behind=True)
    await asyncio.sleep(0)
    assert len(set(server._connections.values())) == 2, "a connection was opened"
    assert server.stats["refused_intake_wait"] == 1
    for data, _ in wire.datagrams:
        late.receive_datagram(data, SERVER_ADDR, now=loop.time())
    late.handle_timer(now=late.get_timer())  # the end of its draining period
    (end,) = [e for e in iter(late.next_event, None) if isinstance(e, lib.ConnectionTerminated)]
    assert end.error_code == CONNECTION_REFUSED and end.reason_phrase == BUSY_REASON.decode()
    totals = server.totals()  # the line the gateway logs at stop
    assert "new connections 2 opened" in totals and "1 busy after 0 s in the intake" in totals
    server.close()
