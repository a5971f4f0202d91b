"""The gateway's memory adjustments of aioquic keep real connections working: a shared frame
table, shared post-handshake TLS buffers and no-op key callbacks (sans-IO, in memory)."""

import pytest

from backend.pki import generate
from geostream import ALPN
from geostream.quic import aioquic_lib as lib

# the memory trims are aioquic's (qh3's native core needs none): its adapter's private names
Buffer, NoCallback, Epoch = lib.Buffer, lib.NoCallback, lib.Epoch
QuicConfiguration, QuicConnection = lib.QuicConfiguration, lib.QuicConnection
HandshakeCompleted, StreamDataReceived = lib.HandshakeCompleted, lib.StreamDataReceived
pull_quic_header = lib.pull_quic_header
drop_key_log_callbacks, share_frame_table = lib.drop_key_log_callbacks, lib.share_frame_table
shrink_handshake_buffers = lib.shrink_handshake_buffers

SERVER, CLIENT = ("127.0.0.1", 4433), ("127.0.0.1", 50000)


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    certs = generate(str(tmp_path_factory.mktemp("pki")), ["localhost", "127.0.0.1"])
    server = QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
    server.load_cert_chain(certs["cert"], certs["key"])
    client = QuicConfiguration(is_client=True, alpn_protocols=[ALPN], server_name="localhost")
    client.load_verify_locations(cafile=certs["ca"])
    return server, client


def pump(a, b, a_addr, now):
    for data, _ in a.datagrams_to_send(now=now):
        b.receive_datagram(data, a_addr, now=now)


def events(conn):
    out = []
    while (ev := conn.next_event()) is not None:
        out.append(ev)
    return out


def connected_pair(configs, now=100.0):
    server_cfg, client_cfg = configs
    client = QuicConnection(configuration=client_cfg)
    client.connect(SERVER, now=now)
    first = client.datagrams_to_send(now=now)
    header = pull_quic_header(Buffer(data=first[0][0]), host_cid_length=8)
    server = QuicConnection(configuration=server_cfg,
                            original_destination_connection_id=header.destination_cid)
    assert share_frame_table(server)
    for data, _ in first:
        server.receive_datagram(data, CLIENT, now=now)
    done = False
    for _ in range(10):  # bounded: a handshake takes 2-3 round trips
        now += 0.05
        pump(server, client, SERVER, now)
        pump(client, server, CLIENT, now)
        if any(isinstance(e, HandshakeCompleted) for e in events(server)):
            shrink_handshake_buffers(server)
            drop_key_log_callbacks(server)
            done = True
            break
    assert done, "handshake did not complete"
    return client, server, now


def test_shared_tables_and_buffers_carry_data_both_ways(configs):
    pairs = [connected_pair(configs) for _ in range(2)]  # shared: one buffer per epoch
    (_, s1, _), (_, s2, _) = pairs
    assert all(s1._crypto_buffers[e] is s2._crypto_buffers[e] for e in s1._crypto_buffers)
    assert Epoch.ONE_RTT in s1._crypto_buffers
    for n, (client, server, now) in enumerate(pairs):
        sid = client.get_next_available_stream_id()
        client.send_stream_data(sid, b"batch %d" % n)
        pump(client, server, CLIENT, now + 0.01)
        got = [e.data for e in events(server) if isinstance(e, StreamDataReceived)]
        assert got == [b"batch %d" % n]
        server.send_stream_data(sid, b"ack %d" % n)
        pump(server, client, SERVER, now + 0.02)
        got = [e.data for e in events(client) if isinstance(e, StreamDataReceived)]
        assert got == [b"ack %d" % n]


def test_the_shared_frame_table_refuses_unknown_frame_types(configs):
    _, server, _ = connected_pair(configs)
    table = server._QuicConnection__frame_handlers
    with pytest.raises(KeyError):
        table[0x7F]
    handler, epochs = table[0x06]  # CRYPTO: bound to this connection
    assert handler.__self__ is server and len(epochs) == 3
    keys = server._cryptos[Epoch.ONE_RTT]  # no qlog: the key callbacks are the shared no-op
    assert keys.send._setup_cb is NoCallback and keys.recv._teardown_cb is NoCallback
