"""The load generator's count of the gateway's datagrams by kind (loadtest/edge.py
`EdgeLink.datagram_received`, the report's "by kind" line), sans-IO with a stand-in QUIC
library: new stream data, ACK-only, a repeat, a handshake's; and a receive that leaves nothing
to send sends nothing."""

import collections
import types

from loadtest.edge import ACK_ONLY_MAX_BYTES, ClientEdge, EdgeLink


class StreamData:
    def __init__(self, data: bytes):
        self.data, self.end_stream = data, False


class Conn:
    """A QUIC connection that hands back the events the test queued for the next datagram."""

    def __init__(self, configuration=None, session_ticket_handler=None):
        self._events: collections.deque = collections.deque()
        self.next: list = []

    def get_timer(self):
        return None

    def datagrams_to_send(self, now):
        return []


def lib() -> types.SimpleNamespace:
    return types.SimpleNamespace(
        QuicConnection=Conn, StreamDataReceived=StreamData,
        receive_on_client=lambda conn, data, addr, now: conn.next,
        recovery_counts=lambda conn: None)


class Loop:
    def time(self) -> float:
        return 1000.0

    def call_soon(self, cb, *args):
        return types.SimpleNamespace(cancel=lambda: None)


def test_the_gateways_datagrams_are_counted_by_kind_and_an_empty_answer_is_not_sent():
    edge = ClientEdge(lib(), 8, Loop())
    got = []
    link = EdgeLink(edge, None, ("127.0.0.1", 4433),
                    on_stream_data=lambda link, data, end: got.append(data))
    receive = link.datagram_received
    receive(b"\x40" * 200, None, 1000.0)  # before the handshake: the handshake's
    link.handshaken = True
    link.conn.next = [StreamData(b"ack")]
    receive(b"\x40" * 60, None, 1000.0)
    link.conn.next = []
    receive(b"\x40" * ACK_ONLY_MAX_BYTES, None, 1000.0)
    receive(b"\x40" * (ACK_ONLY_MAX_BYTES + 1), None, 1000.0)
    receive(b"\x40" * 30, None, 1000.0)
    kinds = {k: v for k, v in edge.stats.items() if k.startswith("received_")}
    assert kinds == {"received_handshake": 1, "received_data": 1, "received_ack": 2,
                     "received_repeat": 1}
    assert got == [b"ack"]
    assert edge.stats["datagrams_sent"] == 0  # five polls, nothing to send, no `_send`
