"""The floor under a vehicle's probe timeout (geostream/quic_acks.py `PROBE_TIMEOUT_FLOOR_S`,
the seam's `floor_probe_timeout`): a connection whose peer is only slow sends no probe before
the floor, doubling with each unanswered probe; a batch lost on the way is still sent again
once the floor passed; a peer that answers is left to the library's own timers.

Sans-IO, a client and a server connection of the same library on an emulated clock: each
datagram is handed over by the test (or not: "lost", or "queued at a slow gateway")."""

from __future__ import annotations

import ssl

import pytest

from backend.quic_tuning import ACK_DELAY_S as GATEWAY_ACK_DELAY_S
from geostream.quic import LIBRARIES, library

ADDR_C, ADDR_S = ("127.0.0.1", 50000), ("127.0.0.1", 4433)
RTT_S = 0.02  # the emulated path's round trip
FLOOR_S = 1.0
EXCHANGES = 8  # batches acked before the one that goes unanswered: the RTT estimate settles


class Pair:
    """A client and a server connection of one library, datagrams carried by hand."""

    def __init__(self, name: str, pki: dict[str, str],
                 gateway_ack_delay_s: float = GATEWAY_ACK_DELAY_S,
                 agent_ack_delay_s: float | None = None) -> None:
        """`gateway_ack_delay_s`: what the server advertises and holds (the gateway's,
        backend/quic_tuning.py); `agent_ack_delay_s`: what the client advertises and holds
        after its handshake (a paced agent's, geostream/quic_acks.py; None: the library's)."""
        self.lib = lib = library(name)
        scfg = lib.QuicConfiguration(is_client=False, alpn_protocols=["c"])
        scfg.load_cert_chain(pki["cert"], pki["key"])
        ccfg = lib.QuicConfiguration(is_client=True, alpn_protocols=["c"],
                                     server_name="localhost", verify_mode=ssl.CERT_REQUIRED)
        ccfg.load_verify_locations(cafile=pki["ca"])
        self.now = 1.0
        self.client = lib.QuicConnection(configuration=ccfg)
        if agent_ack_delay_s:
            lib.advertise_max_ack_delay(self.client, agent_ack_delay_s)
        self.client.connect(ADDR_S, now=self.now)
        out = self.client.datagrams_to_send(now=self.now)
        self.server = lib.QuicConnection(configuration=scfg, original_destination_connection_id=(
            lib.destination_cid(out[0][0], 8)))
        lib.advertise_max_ack_delay(self.server, gateway_ack_delay_s)
        lib.delay_acks_up_to(self.server, gateway_ack_delay_s)
        for _ in range(10):  # bounded: the handshake takes two or three flights
            back = self.to_server(out)
            out = self.to_client(back)
            if not out and not back:
                break
        self.drain()
        if agent_ack_delay_s:
            lib.delay_acks_up_to(self.client, agent_ack_delay_s)
        self.stream = self.client.get_next_available_stream_id()

    def to_server(self, datagrams) -> list:
        self.now += RTT_S / 2
        for data, _ in datagrams:
            self.server.receive_datagram(data, ADDR_C, now=self.now)
        return self.server.datagrams_to_send(now=self.now)

    def to_client(self, datagrams) -> list:
        self.now += RTT_S / 2
        for data, _ in datagrams:
            self.client.receive_datagram(data, ADDR_S, now=self.now)
        return self.client.datagrams_to_send(now=self.now)

    def drain(self) -> None:
        while self.client.next_event() is not None:
            pass
        while self.server.next_event() is not None:
            pass

    def batch(self) -> list:
        """The client sends a batch: its datagrams."""
        self.client.send_stream_data(self.stream, b"b" * 200)
        return self.client.datagrams_to_send(now=self.now)

    def exchange(self) -> None:
        """A batch, the gateway's ack with its QUIC ACK, and a second of quiet."""
        self.to_server(self.batch())
        self.drain()
        self.server.send_stream_data(self.stream, b"ack")
        self.lib.ack_with_data(self.server)
        self.to_client(self.server.datagrams_to_send(now=self.now))
        self.drain()
        self.quiet(1.0)

    def quiet(self, seconds: float) -> None:
        """Let `seconds` pass, both sides' timers firing as they come due and what they send
        delivered (bounded)."""
        self.timers_until(self.now + seconds, 100)

    def timers_until(self, end: float, at_most: int) -> None:
        """Both sides' timers fire as they come due until `end` (at most `at_most` of them),
        what each sends handed on by `after_timer`."""
        for _ in range(at_most):
            timers = [(at, conn) for conn in (self.client, self.server)
                      if (at := conn.get_timer()) is not None and at <= end]
            if not timers:
                break
            at, conn = min(timers, key=lambda timer: timer[0])
            self.now = max(self.now, at)
            conn.handle_timer(now=self.now)
            self.after_timer(conn)
        self.now = max(self.now, end)

    def after_timer(self, conn) -> None:
        """What `conn` sends once its timer fired goes to the peer, the answer back."""
        if conn is self.client:
            self.to_client(self.to_server(self.client.datagrams_to_send(now=self.now)))
        else:
            self.to_server(self.to_client(self.server.datagrams_to_send(now=self.now)))
        self.drain()

    def sends_until(self, seconds: float) -> list[float]:
        """When the client sent something in the next `seconds` (its timers fired as due;
        nothing it sends is delivered)."""
        start, sent = self.now, []
        for _ in range(100):  # bounded
            at = self.client.get_timer()
            if at is None or at > start + seconds:
                break
            self.now = max(self.now, at)
            self.client.handle_timer(now=self.now)
            if self.client.datagrams_to_send(now=self.now):
                sent.append(round(self.now - start, 3))
        return sent


def _connected(name: str, pki, floor: bool) -> Pair:
    pair = Pair(name, pki)
    if floor:
        pair.lib.floor_probe_timeout(pair.client, FLOOR_S)
    for _ in range(EXCHANGES):
        pair.exchange()
    return pair


@pytest.mark.parametrize("name", sorted(LIBRARIES))
def test_no_probe_before_the_floor_while_the_gateway_is_silent(name, pki):
    """A batch the gateway has queued and not answered: the first probe leaves at the floor,
    the next one two floors later (the backoff), not after srtt + 4·rttvar + max_ack_delay."""
    without = _connected(name, pki, floor=False)
    without.batch()
    early = without.sends_until(3 * FLOOR_S)
    assert early and early[0] < FLOOR_S / 2, early  # the library's own: ~0.1–0.3 s

    pair = _connected(name, pki, floor=True)
    pair.batch()
    sent = pair.sends_until(3 * FLOOR_S + 0.5)
    assert sent, "a lost batch is still sent again"
    assert sent[0] == pytest.approx(FLOOR_S, abs=0.01), sent
    assert sent[-1] >= 3 * FLOOR_S - 0.01, sent  # the second probe after two floors
    assert all(t == pytest.approx(FLOOR_S, abs=0.01) or t >= 3 * FLOOR_S - 0.01
               for t in sent), sent


@pytest.mark.parametrize("name", sorted(LIBRARIES))
def test_a_probe_after_the_floor_repairs_a_lost_batch(name, pki):
    """The batch is lost on the way: the probe at the floor carries it, the gateway gets it
    and acknowledges it, and nothing more is sent for it."""
    pair = _connected(name, pki, floor=True)
    pair.batch()  # lost
    at = pair.client.get_timer()
    assert at == pytest.approx(pair.now + FLOOR_S, abs=0.01)
    pair.now = at
    pair.client.handle_timer(now=pair.now)
    probe = pair.client.datagrams_to_send(now=pair.now)
    assert probe
    received = []
    pair.now += RTT_S / 2
    for data, _ in probe:
        pair.server.receive_datagram(data, ADDR_C, now=pair.now)
    while (event := pair.server.next_event()) is not None:
        if isinstance(event, pair.lib.StreamDataReceived):
            received.append(event.data)
    assert b"".join(received).endswith(b"b" * 200)
    pair.server.send_stream_data(pair.stream, b"ack")
    pair.lib.ack_with_data(pair.server)
    pair.to_client(pair.server.datagrams_to_send(now=pair.now))
    pair.drain()
    # the batch is acknowledged: at most the client's ACK of the `ack` follows, no probe
    probes = pair.lib.recovery_counts(pair.client)
    assert len(pair.sends_until(5 * FLOOR_S)) <= 1
    assert pair.lib.recovery_counts(pair.client) == probes


def test_the_client_receive_without_the_event_queue_keeps_what_the_floor_reads(pki):
    """qh3's `receive_on_client` (the load tester's vehicles): the gateway's answer comes back
    as the facade's events would, and counts as heard, so the floor's rule (a peer heard since
    the newest send is left to the library's timers) sees it as `receive_datagram` does."""
    pair = _connected("qh3", pki, floor=True)
    lib = pair.lib
    pair.to_server(pair.batch())
    pair.drain()
    pair.server.send_stream_data(pair.stream, b"ack")
    lib.ack_with_data(pair.server)
    [(answer, _)] = pair.server.datagrams_to_send(now=pair.now)
    pair.now += RTT_S / 2
    assert pair.client._seam_heard_at < pair.client._seam_sent_at < pair.now
    events = lib.receive_on_client(pair.client, answer, ADDR_S, pair.now)
    assert events == [lib.StreamDataReceived(b"ack", False, pair.stream)]
    assert pair.client._seam_heard_at == pair.now
    assert lib.receive_on_client(pair.client, b"\xc0" + answer[1:], ADDR_S, pair.now) is None, \
        "a long header: the general path"
