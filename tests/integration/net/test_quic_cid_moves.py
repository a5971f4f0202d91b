"""Two moves within one round trip (the peer's next connection ID not there yet) on both QUIC
libraries of the seam: the move keeps the current CID and the connection goes on, as aioquic
always did (qh3 raised ValueError, which stopped the load tester's moves and would reach the
agent's link). Sans-IO, against an aioquic gateway connection."""

from __future__ import annotations

import pytest

from geostream import ALPN
from geostream.quic import library
from tests.integration.net.test_quic_tls_trim import certs, pump  # noqa: F401 (a fixture)

SERVER, CLIENT, MOVED = ("127.0.0.1", 4433), ("127.0.0.1", 5555), ("127.0.0.2", 5556)


@pytest.mark.parametrize("client_lib", ["qh3", "aioquic"])
def test_moves_faster_than_the_peers_new_cids_keep_the_connection(client_lib, certs):  # noqa: F811
    srv, cl = library("aioquic"), library(client_lib)
    scfg = srv.QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
    scfg.load_cert_chain(certs["cert"], certs["key"])
    ccfg = cl.QuicConfiguration(is_client=True, alpn_protocols=[ALPN], server_name="localhost")
    ccfg.load_verify_locations(cafile=certs["ca"])
    now = 100.0
    client = cl.QuicConnection(configuration=ccfg)
    client.connect(SERVER, now=now)
    first = client.datagrams_to_send(now=now)
    server = srv.QuicConnection(configuration=scfg,
                                original_destination_connection_id=srv.destination_cid(
                                    first[0][0], 8))
    for data, _ in first:
        server.receive_datagram(data, CLIENT, now=now)
    for _ in range(12):  # bounded: the handshake and the first NEW_CONNECTION_IDs
        now += 0.05
        pump(server, client, SERVER, now)
        pump(client, server, CLIENT, now)
    for _ in range(5):  # more moves than spare CIDs, none answered in between
        client.change_connection_id()
    stream = client.get_next_available_stream_id()
    client.send_stream_data(stream, b"after the moves")
    got = b""
    for _ in range(12):
        now += 0.05
        pump(client, server, MOVED, now)
        pump(server, client, SERVER, now)
        while (ev := server.next_event()) is not None:
            got += getattr(ev, "data", b"") if type(ev).__name__ == "StreamDataReceived" else b""
    assert got == b"after the moves"
