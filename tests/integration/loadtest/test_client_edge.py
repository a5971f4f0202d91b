"""The load generator's client edge (loadtest/edge.py): many QUIC connections on one UDP
socket per local address, each datagram handed to its connection by connection ID, against
the gateway's own UDP edge on loopback; a connection moved to another address keeps going."""

import asyncio
import socket
import ssl
from types import SimpleNamespace

import pytest

from agent.quic_link import UNANSWERED_AFTER_REFUSAL_S
from backend.gateway_edge import EdgeConnection, EdgeServer, UdpEdge
from backend.pki import generate
from geostream import ALPN
from geostream.quic import LIBRARIES, library
from loadtest.driver import CONNECT_TIMEOUT_S, _Probe
from loadtest.edge import MAX_DATAGRAMS_PER_WAKEUP, READ_BATCH, ClientEdge, EdgeLink
from tests import emuclock
from tests.integration.net.rig import until
from tests.integration.net.test_quic_tls_trim import certs, ticket_and_hole  # noqa: F401

CONNECTIONS = 12


class Echo(EdgeConnection):
    """Answers each stream's data with "echo:" and the data, on the same stream."""

    def quic_event_received(self, event) -> None:
        if isinstance(event, self._lib.StreamDataReceived) and event.data:
            self._quic.send_stream_data(event.stream_id, b"echo:" + event.data)
            self.transmit()


async def echo_fleet(tmp_path, lib, count: int):
    """An `Echo` gateway edge on loopback and `count` connections of one client edge to it,
    started: (server, edge, links, answers by connection, handshaken connections)."""
    pki = generate(str(tmp_path / "pki"), ["localhost", "127.0.0.1"])
    server_cfg = lib.QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
    server_cfg.load_cert_chain(pki["cert"], pki["key"])
    server = EdgeServer(lib, configuration=server_cfg, create_protocol=Echo)
    udp = await UdpEdge.open(server, "127.0.0.1", 0)
    port = udp.get_extra_info("sockname")[1]
    cfg = lib.QuicConfiguration(is_client=True, alpn_protocols=[ALPN],
                                server_name="localhost", verify_mode=ssl.CERT_REQUIRED)
    cfg.load_verify_locations(cafile=pki["ca"])
    edge = ClientEdge(lib, cfg.connection_id_length)
    got: dict[int, list[bytes]] = {i: [] for i in range(count)}
    up: set[int] = set()
    links = []
    for i in range(count):
        link = EdgeLink(edge, cfg, ("127.0.0.1", port),
                        on_stream_data=lambda lk, data, end, i=i: got[i].append(data),
                        on_handshake=lambda lk, i=i: up.add(i), ack_delay_s=0.2)
        link.start("127.0.0.1")
        links.append(link)
    return server, edge, links, got, up


async def close_fleet(server, edge, links) -> None:
    for link in links:
        link.close()
        link.abort()
    await asyncio.sleep(0)
    edge.close()
    server.close()


@pytest.mark.parametrize("name", sorted(LIBRARIES))
async def test_many_connections_share_a_socket_and_get_their_own_answers(tmp_path, name):
    lib = library(name)
    server, edge, links, got, up = await echo_fleet(tmp_path, lib, CONNECTIONS)
    try:
        await until(lambda: len(up) == CONNECTIONS, 30, "every handshake")
        assert len(edge._sockets) == 1            # one socket carries them all
        assert edge.connections == CONNECTIONS
        for i, link in enumerate(links):
            link.send(link.conn.get_next_available_stream_id(), b"v%d" % i)
        await until(lambda: all(got.values()), 30, "every answer")
        assert {i: b"".join(d) for i, d in got.items()} == {
            i: b"echo:v%d" % i for i in range(CONNECTIONS)}

        # a datagram nobody's connection ID names is counted and dropped
        sock = edge.socket_for("127.0.0.1")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"\x40" + b"\x00" * 40, sock.getsockname()[:2])
        await until(lambda: edge.stats["unroutable"] == 1, 10, "the stray datagram")

        # half move to another address (a new socket, a new connection ID) and go on
        for i in range(0, CONNECTIONS, 2):
            links[i].migrate("127.0.0.2")
        for d in got.values():
            d.clear()
        for i, link in enumerate(links):
            link.send(0, b"w%d" % i)
        await until(lambda: all(got.values()), 30, "every answer after the moves")
        assert {i: b"".join(d) for i, d in got.items()} == {
            i: b"echo:w%d" % i for i in range(CONNECTIONS)}
        assert len(edge._sockets) == 2
        assert all(not link.closed for link in links)
    finally:
        await close_fleet(server, edge, links)


async def test_a_connection_whose_transmit_fails_leaves_the_others_and_the_timer_going(tmp_path):
    """qh3's core can refuse one transmit ("missing OneRtt packet key" on a resumed
    connection asked to send before its 1-RTT keys exist): that connection's failure is
    counted, the others' datagrams in the same flush still leave, the worker's one timer is
    still armed, and the failed connection sends what it holds at its next transmit."""
    lib = library("qh3")
    server, edge, links, got, up = await echo_fleet(tmp_path, lib, 3)
    try:
        await until(lambda: len(up) == 3, 30, "every handshake")
        conn = links[0].conn
        real = conn.datagrams_to_send
        failures = []

        def refuse_once(now):  # the core's refusal, once; then the real transmit again
            if not failures:
                failures.append(now)
                raise RuntimeError("missing OneRtt packet key")
            return real(now)

        conn.datagrams_to_send = refuse_once
        for i, link in enumerate(links):
            link.send(link.conn.get_next_available_stream_id(), b"v%d" % i)
        await until(lambda: all(got.values()), 30, "every answer, the refused one's too")
        assert failures and edge.stats["transmit_errors"] == 1
        assert {i: b"".join(d) for i, d in got.items()} == {i: b"echo:v%d" % i for i in range(3)}
        assert edge._wake_handle is not None  # the one timer is still armed
    finally:
        await close_fleet(server, edge, links)


async def _unanswered_resumed_attempt(certs) -> tuple[str, float, int]:  # noqa: F811
    """A resumed attempt of the load tester's link to a socket that never answers: (why it
    closed, emulated seconds from its start, the core's refusals)."""
    lib = library("qh3")
    tickets, hole = ticket_and_hole(lib, certs)
    loop = asyncio.get_running_loop()
    cfg = lib.QuicConfiguration(is_client=True, alpn_protocols=[ALPN], server_name="localhost")
    cfg.load_verify_locations(cafile=certs["ca"])
    cfg.session_ticket = tickets[0]
    edge = ClientEdge(lib, cfg.connection_id_length)
    closed = loop.create_future()
    link = EdgeLink(edge, cfg, hole.getsockname(), on_stream_data=lambda *a: None,
                    on_closed=lambda lk: closed.done() or closed.set_result(loop.time()),
                    session_ticket_handler=tickets.append)
    start = loop.time()
    try:
        link.start("127.0.0.1")
        link.send(link.conn.get_next_available_stream_id(), b"hello as 0-RTT")
        at = await asyncio.wait_for(closed, CONNECT_TIMEOUT_S)
        return link.close_reason, at - start, edge.stats["transmit_errors"]
    finally:
        link.abort()
        edge.close()
        hole.close()


def test_an_unanswered_resumed_attempt_ends_before_the_connect_timeout(certs):  # noqa: F811
    """qh3 sends one probe of a resumed attempt's lost first flight, then refuses every later
    one: the link ends the attempt UNANSWERED_AFTER_REFUSAL_S after the first refusal (the
    agent's rule, agent/quic_link.py), so its vehicle tries a fresh one instead of waiting out
    the 10 s connect timeout (loadtest/driver.py CONNECT_TIMEOUT_S)."""
    (reason, took, refusals), _ = emuclock.run(_unanswered_resumed_attempt(certs))
    assert reason == "no answer to the first flight", reason
    assert refusals >= 1
    assert UNANSWERED_AFTER_REFUSAL_S < took < CONNECT_TIMEOUT_S, took



class _Counted:
    """A connection stand-in that keeps the datagrams routed to it."""

    def __init__(self) -> None:
        self.got: list[bytes] = []

    def datagram_received(self, data: bytes, addr, now: float) -> None:
        self.got.append(data)


def _queued_bytes(sock: socket.socket) -> int:
    """The memory `sock`'s receive queue holds (/proc/net/udp6's rx_queue)."""
    port = sock.getsockname()[1]
    with open("/proc/net/udp6") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port:
                return int(fields[4].split(":")[1], 16)
    return 0


@pytest.mark.parametrize("name", sorted(LIBRARIES))
async def test_a_wakeup_reads_in_batches_where_the_library_can_and_stops_at_its_bound(name):
    """qh3's edge reads the waiting datagrams several per system call (`batch_receiver`);
    either library's edge hands each to its connection once, in order, and a wakeup reads at
    most MAX_DATAGRAMS_PER_WAKEUP, leaving the rest for the next."""
    edge = ClientEdge(library(name), 8)
    try:
        sock = edge.socket_for("127.0.0.1")
        reads = []
        read = edge._reads[sock]
        edge._reads[sock] = lambda: reads.append(1) or read()
        link = _Counted()
        edge.route(b"\x07" * 8, link)  # type: ignore[arg-type]
        sent = [b"\x40" + b"\x07" * 8 + i.to_bytes(2, "big")
                for i in range(MAX_DATAGRAMS_PER_WAKEUP + 40)]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            to = sock.getsockname()[:2]
            s.sendto(sent[0], to)  # one first: what one datagram takes in the queue
            await until(lambda: _queued_bytes(sock) > 0, 10, "the first datagram queued")
            each = _queued_bytes(sock)
            for data in sent[1:]:
                s.sendto(data, to)
            await until(lambda: _queued_bytes(sock) >= each * len(sent), 10, "all queued")
        edge._readable(sock)
        assert link.got == sent[:MAX_DATAGRAMS_PER_WAKEUP]
        assert len(reads) == MAX_DATAGRAMS_PER_WAKEUP // READ_BATCH  # whole batches
        edge._readable(sock)  # the rest: one short read, and none after it
        assert link.got == sent and edge.stats["datagrams_received"] == len(sent)
        assert len(reads) == MAX_DATAGRAMS_PER_WAKEUP // READ_BATCH + 2
        # qh3's is the seam's batch read (one system call a batch), not the recvfrom loop
        assert (read.__qualname__ == "_recvfrom_batch.<locals>.read") == (name != "qh3")
    finally:
        edge.close()



async def _probe_closed_on_its_handshake(tmp_path, name: str) -> tuple[int, int]:
    """A link closed and dropped as soon as its handshake completes, as the liveness probe of
    revision 5 and before did (docs/protocol.md §8): (the gateway's handshakes in progress,
    its connections) two seconds later."""
    server, edge, (link,), _, _ = await echo_fleet(tmp_path, library(name), 1)

    def probe_done(lk) -> None:
        lk.close()
        lk.abort()

    link._on_handshake = probe_done
    try:
        await until(lambda: link.closed, CONNECT_TIMEOUT_S, "the probe's handshake")
        await asyncio.sleep(2.0)
        return server.admission.handshaking, len(set(server._connections.values()))
    finally:
        await close_fleet(server, edge, [])


@pytest.mark.parametrize("name", sorted(LIBRARIES))
def test_a_probe_closed_on_its_handshake_leaves_no_handshake_at_the_gateway(tmp_path, name):
    """The probe's TLS Finished leaves before its CONNECTION_CLOSE: the gateway completes the
    handshake, reads the close and forgets the connection. Without the Finished a qh3
    probe's close (1-RTT alone) was unreadable to the gateway, whose half-open connection
    held one of its MAX_HANDSHAKES_IN_PROGRESS for a minute: 512 such probes made it refuse
    every vehicle's reconnect as busy (docs/benchmarks.md, session 16)."""
    (handshaking, connections), _ = emuclock.run(_probe_closed_on_its_handshake(tmp_path, name))
    assert (handshaking, connections) == (0, 0)


class _ProbingVehicle:
    """What the load tester's probe (driver.py `_Probe`) uses of its vehicle: its worker's
    edge, clock and address, the gateway's address, and the machine told the verdict."""

    def __init__(self, edge: ClientEdge, port: int):
        self.w = SimpleNamespace(edge=edge, now=edge.now, local_host="127.0.0.1")
        self.name, self.server, self.link, self.probe = "v1", ("127.0.0.1", port), None, None
        self.verdicts: list[bool] = []
        self.machine = SimpleNamespace(
            probe_done=lambda now, ok: self.verdicts.append(ok) or [])

    def _do(self, actions) -> None:
        pass

    def _after(self) -> None:
        pass


async def _load_tester_probe(tmp_path, name: str) -> tuple[list[bool], int, dict]:
    server, edge, _, _, _ = await echo_fleet(tmp_path, library(name), 0)
    port = server._transport.get_extra_info("sockname")[1]
    vehicle = _ProbingVehicle(edge, port)
    try:
        _Probe(vehicle, None)  # type: ignore[arg-type]
        await until(lambda: vehicle.verdicts, CONNECT_TIMEOUT_S, "the probe's verdict")
        return (vehicle.verdicts, len(server._connections) + server.admission.handshaking,
                {k: edge.stats[k] for k in ("sent_probe", "received_probe")})
    finally:
        await close_fleet(server, edge, [])


@pytest.mark.parametrize("name", sorted(LIBRARIES))
def test_the_load_testers_probe_is_answered_without_a_connection(tmp_path, name):
    """The simulated vehicle's liveness probe is the agent's (a Version Negotiation, one
    datagram each way, counted as the probe's): the gateway answers it and opens nothing."""
    (verdicts, opened, stats), _ = emuclock.run(_load_tester_probe(tmp_path, name))
    assert verdicts == [True] and opened == 0
    assert stats == {"sent_probe": 1, "received_probe": 1}


@pytest.mark.parametrize("name", sorted(LIBRARIES))
def test_a_connect_given_up_is_closed_and_the_gateway_ends_it_at_once(tmp_path, name):
    """A simulated vehicle whose handshake does not complete within its connect timeout (the
    gateway's answers never reach it) closes the attempt, an Initial-level CONNECTION_CLOSE,
    as the agent does: the gateway ends that half-open connection within its draining period.
    Dropped without one, the gateway kept it to its handshake deadline (a minute)."""
    (still_open, seen), _ = emuclock.run(_connect_never_answered(tmp_path, name))
    assert seen == 1 and still_open == 0, (still_open, seen)


async def _connect_never_answered(tmp_path, name: str) -> tuple[int, int]:
    """(the gateway's connections of the one attempt still open CONNECT_TIMEOUT_S + 5 s after
    it began, those it had)."""
    import random
    from types import SimpleNamespace

    from loadtest.driver import Driver
    from loadtest.fleet import SimVehicle

    server, edge, _, _, _ = await echo_fleet(tmp_path, library(name), 0)
    port = server._transport.get_extra_info("sockname")[1]
    cfg = library(name).QuicConfiguration(is_client=True, alpn_protocols=[ALPN],
                                          server_name="localhost", verify_mode=ssl.CERT_NONE)
    opens: list = []
    worker = SimpleNamespace(edge=edge, quic_config=cfg, local_host="127.0.0.1", now=edge.now,
                             rng=random.Random(1), send_interval_s=1.0, stopping=False,
                             request_connect=opens.append, slot_freed=lambda: None,
                             error=lambda kind: None)
    sim = SimVehicle("v1", "tok", epoch=1, rate_hz=1.0, start=edge.now(),
                     wall_ms_at_start=1_790_000_000_000)
    driver = Driver(worker, sim, ("127.0.0.1", port))
    try:
        driver.start()
        assert opens == [driver]  # the machine's Connect: a ramp slot, given at once here
        driver.open()
        driver.link.datagram_received = lambda *a: None  # the gateway's answers are lost
        first = await until(lambda: set(server._connections.values()), 5, "the first Initial")
        await asyncio.sleep(CONNECT_TIMEOUT_S + 5.0)
        assert driver.link is None and len(opens) == 2  # given up, a reconnect asked for
        return len(first & set(server._connections.values())), len(first)
    finally:
        driver.stop()
        await close_fleet(server, edge, [])
