"""A gateway connection without its TLS context after the handshake (the seam's
`trim_after_handshake`, both libraries): data, key updates and session tickets still work, and
a TLS message a client sends afterwards closes that connection with unexpected_message
instead of reaching a context that is gone. Sans-IO, in memory, each library with its own
client; the hostile message is sent by hand by an aioquic client (qh3's client core cannot),
and for qh3 handed to its bridge's stand-in the way its connection hands CRYPTO data over."""

from __future__ import annotations

import socket

import pytest

from backend.pki import generate
from geostream import ALPN
from geostream.quic import aioquic_lib, library
from geostream.quic.spent import ListQueue

SERVER, CLIENT = ("127.0.0.1", 4433), ("127.0.0.1", 50000)
UNEXPECTED_MESSAGE = 0x100 + 10  # RFC 9000 §20.1 CRYPTO_ERROR + TLS alert 10


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return generate(str(tmp_path_factory.mktemp("pki")), ["localhost", "127.0.0.1"])


def pump(a, b, a_addr, now):
    for data, _ in a.datagrams_to_send(now=now):
        b.receive_datagram(data, a_addr, now=now)


def events(conn):
    out = []
    while (ev := conn.next_event()) is not None:
        out.append(ev)
    return out


def ticket_and_hole(lib, certs) -> tuple[list, socket.socket]:
    """A session ticket from a trimmed server of `lib` (for a resumed attempt with 0-RTT), and
    a UDP socket bound on loopback and never read: everything sent to it is lost. The caller
    closes the socket."""
    tickets: list = []
    trimmed_pair(lib, certs, tickets)
    assert tickets
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hole.bind(("127.0.0.1", 0))
    return tickets, hole


def trimmed_pair(server_lib, certs, tickets: list, now=100.0, client_ack_delay=None):
    """A client and a server of `server_lib`, the server trimmed as the gateway trims it at
    HandshakeCompleted; `tickets` collects the session tickets the client receives; the client
    advertises `client_ack_delay` (seconds) as its max_ack_delay, as the agent does."""
    server_cfg = server_lib.QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
    server_cfg.load_cert_chain(certs["cert"], certs["key"])
    client_cfg = server_lib.QuicConfiguration(is_client=True, alpn_protocols=[ALPN],
                                              server_name="localhost")
    client_cfg.load_verify_locations(cafile=certs["ca"])
    client = server_lib.QuicConnection(configuration=client_cfg,
                                       session_ticket_handler=tickets.append)
    if client_ack_delay is not None:
        server_lib.advertise_max_ack_delay(client, client_ack_delay)
    client.connect(SERVER, now=now)
    first = client.datagrams_to_send(now=now)
    server = server_lib.QuicConnection(
        configuration=server_cfg,
        original_destination_connection_id=server_lib.destination_cid(first[0][0], 8),
        session_ticket_handler=lambda ticket: None)  # the gateway issues tickets
    server_lib.trim_new_connection(server)
    for data, _ in first:
        server.receive_datagram(data, CLIENT, now=now)
    for _ in range(10):  # bounded: a handshake takes 2-3 round trips
        now += 0.05
        pump(server, client, SERVER, now)
        pump(client, server, CLIENT, now)
        if any(isinstance(e, server_lib.HandshakeCompleted) for e in events(server)):
            server_lib.trim_after_handshake(server)
            break
    else:
        raise AssertionError("handshake did not complete")
    for _ in range(3):
        now += 0.05
        pump(server, client, SERVER, now)
        pump(client, server, CLIENT, now)
    return client, server, now


def exchange(client, server, lib, now, payload: bytes, client_addr=CLIENT) -> None:
    sid = client.get_next_available_stream_id()
    client.send_stream_data(sid, payload)
    pump(client, server, client_addr, now)
    assert [e.data for e in events(server) if isinstance(e, lib.StreamDataReceived)] == [payload]
    server.send_stream_data(sid, b"ack " + payload)
    pump(server, client, SERVER, now + 0.01)
    got = [e.data for e in events(client) if isinstance(e, lib.StreamDataReceived)]
    assert got == [b"ack " + payload]


@pytest.mark.parametrize("name", ["aioquic", "qh3"])
def test_data_key_updates_and_tickets_go_on_without_the_tls_context(name, certs):
    lib = library(name)
    tickets: list = []
    client, server, now = trimmed_pair(lib, certs, tickets)
    spent = server.tls if name == "aioquic" else server._tls
    assert type(spent).__name__ == "_SpentServerTls"  # the context was dropped
    assert len(tickets) == 1  # the ticket went out in the handshake's last step (0-RTT)
    exchange(client, server, lib, now + 0.1, b"batch 1")
    client.request_key_update()  # QUIC's key update needs nothing from TLS
    exchange(client, server, lib, now + 0.2, b"batch 2")
    exchange(client, server, lib, now + 0.3, b"batch 3")
    assert not lib.trim_after_handshake(server)  # a second trim changes nothing


@pytest.mark.parametrize("name", ["aioquic", "qh3"])
def test_a_spent_connection_carries_data_follows_a_move_and_closes(name, certs):
    """A server connection after `trim_after_handshake`, its Python state shrunk (both: its
    FIFO deques as lists; qh3: also its facade's seam closures, the peer's transport
    parameters but max_ack_delay, and the attributes every spent connection shares), still
    exchanges data, reports the peer's max_ack_delay, follows the client to a new address and
    delivers the close the client sends."""
    lib = library(name)
    client, server, now = trimmed_pair(lib, certs, [], client_ack_delay=0.2)
    assert isinstance(server._events, ListQueue)
    if name == "qh3":
        assert "_create_core" not in vars(server) and "_handshake_complete" not in vars(server)
        assert len(vars(server)) <= 20
    else:
        assert isinstance(server._datagrams_pending, ListQueue)
    assert lib.ack_delays(server)[1] == 0.2  # the client's max_ack_delay, still read
    exchange(client, server, lib, now + 0.1, b"batch 1")
    moved = ("127.0.0.1", 50001)
    client.change_connection_id()
    client.send_ping(7)
    for _ in range(4):  # bounded: path validation takes a round trip
        now += 0.05
        pump(client, server, moved, now)
        pump(server, client, SERVER, now)
    assert lib.peer_address(server) == moved
    exchange(client, server, lib, now + 0.1, b"batch 2", client_addr=moved)
    client.close(error_code=0, reason_phrase="bye")
    pump(client, server, moved, now + 0.2)
    server.handle_timer(now + 60)  # the end of the server's draining period: the event
    closed = [e for e in events(server) if isinstance(e, lib.ConnectionTerminated)]
    assert closed and closed[0].reason_phrase == "bye", closed


def test_a_spent_qh3_connection_shares_its_empty_stream_set_and_can_still_open_one(certs):
    """qh3's facade keeps a set of the streams the server opened; a spent gateway connection,
    which opens none, shares one empty set (`_NoLocalStreams`) and drops the session-ticket
    callbacks only TLS read. A stream the server opens afterwards gets a set of its own and
    carries data; the vehicle's stream finishing forgets nothing it should not."""
    lib = library("qh3")
    client, server, now = trimmed_pair(lib, certs, [])
    mine = vars(server)
    assert not {"_created_local_stream_ids", "_session_ticket_handler",
                "_session_ticket_fetcher"} & set(mine)
    assert type(server._created_local_stream_ids).__name__ == "_NoLocalStreams"
    exchange(client, server, lib, now + 0.1, b"batch 1")
    sid = server.get_next_available_stream_id()
    server.send_stream_data(sid, b"from the gateway", end_stream=True)
    assert server._created_local_stream_ids == {sid}  # its own set now
    assert "_created_local_stream_ids" in vars(server)
    pump(server, client, SERVER, now + 0.2)
    got = [(e.stream_id, e.data) for e in events(client) if isinstance(e, lib.StreamDataReceived)]
    assert got == [(sid, b"from the gateway")]
    other = lib.QuicConnection.__dict__["_created_local_stream_ids"]
    assert not other  # the shared one took nothing


def test_a_tls_message_after_the_handshake_closes_that_connection(certs):
    lib = aioquic_lib
    client, server, now = trimmed_pair(lib, certs, [])
    # a KeyUpdate handshake message (type 24), which QUIC forbids, on the 1-RTT crypto stream
    client._crypto_streams[aioquic_lib.Epoch.ONE_RTT].sender.write(b"\x18\x00\x00\x01\x00")
    client.send_ping(1)
    pump(client, server, CLIENT, now + 0.1)
    pump(server, client, SERVER, now + 0.2)
    client.handle_timer(now + 60)  # the end of the client's draining period: the event
    closed = [e for e in events(client) if isinstance(e, aioquic_lib.ConnectionTerminated)]
    assert closed and closed[0].error_code == UNEXPECTED_MESSAGE, closed


def test_qh3s_stand_in_refuses_crypto_data_as_its_bridge_would():
    """qh3's connection turns a QuicTlsBridgeError from `receive_crypto` into a close with
    its code (its `_drain_core`); the stand-in raises one for any CRYPTO data."""
    lib = library("qh3")
    with pytest.raises(lib.QuicTlsBridgeError) as exc:
        lib._SpentServerTls().receive_crypto(3, 0, b"\x18\x00\x00\x01\x00", version=1)
    assert exc.value.error_code == UNEXPECTED_MESSAGE
