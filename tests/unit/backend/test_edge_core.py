"""The UDP edge's pure parts: the invariant header, the peer's address, the admission of new
connections and their refusal."""

from __future__ import annotations

import pytest

from backend.edge_core import (
    ABANDONED_AFTER_S,
    ADMIT,
    AMPLIFICATION_FACTOR,
    CONNECTION_REFUSED,
    MAX_HANDSHAKES_IN_PROGRESS,
    MAX_HANDSHAKES_PER_ADDRESS,
    MAX_VALIDATED_ADDRESSES,
    REFUSE,
    RETRY,
    RETRY_ABOVE,
    RETRY_TOKEN_LIFETIME_S,
    SHED_HOLD_S,
    SHED_QUEUE_DELAY_S,
    Admission,
    PeerAddress,
    RetryTokens,
    initial_refusal,
    route_header,
    version_negotiation,
)
from geostream.quic import library


def test_short_and_long_headers():
    short = bytes([0x40]) + b"12345678" + b"payload"
    h = route_header(short, 8)
    assert (h.long, h.destination_cid, h.version) == (False, b"12345678", None)
    initial = bytes([0xC0]) + (1).to_bytes(4, "big") + b"\x08" + b"D" * 8 + b"\x04SSSS" + b"x"
    h = route_header(initial, 8)
    assert (h.long, h.version, h.destination_cid, h.source_cid, h.initial) == (
        True, 1, b"D" * 8, b"SSSS", True)
    handshake = bytes([0xE0]) + initial[1:]  # long header, type Handshake
    assert route_header(handshake, 8).initial is False
    for cut in (0, 3, 6, 14, 16):
        assert route_header(initial[:cut], 8) is None or cut >= 19
    assert route_header(short[:5], 8) is None


def test_version_negotiation_answers_with_swapped_ids():
    probe = bytes([0xC0]) + (0x1A2A3A4A).to_bytes(4, "big") + b"\x03abc" + b"\x02xy"
    vn = version_negotiation(route_header(probe, 8), [1])
    h = route_header(vn, 8)
    assert (h.version, h.destination_cid, h.source_cid) == (0, b"xy", b"abc")
    assert vn.endswith((1).to_bytes(4, "big"))


A, B, C = ("192.0.2.1", 1000), ("198.51.100.7", 2000), ("203.0.113.9", 3000)


def test_only_an_authenticated_packet_moves_the_peer():
    peer = PeerAddress(A)
    assert not peer.arrived(B, 100, authenticated=False), "spoofed or replayed: stays"
    assert peer.current == A and peer.validated
    assert peer.arrived(B, 100, authenticated=True)
    assert peer.current == B and not peer.validated
    assert peer.library_address == A, "the library keeps seeing the first address"


def test_an_unvalidated_address_gets_three_times_what_it_sent():
    peer = PeerAddress(A)
    peer.arrived(B, 100, authenticated=True)
    assert peer.allow(AMPLIFICATION_FACTOR * 100 - 50)
    assert not peer.allow(51), "over the anti-amplification budget"
    assert peer.allow(50)
    peer.arrived(B, 40, authenticated=False)  # more bytes from it raise the budget
    assert peer.allow(AMPLIFICATION_FACTOR * 40) and not peer.allow(1)


def test_an_acknowledged_probe_validates_and_a_lost_one_is_replaced():
    peer = PeerAddress(A)
    peer.arrived(B, 100, authenticated=True)
    assert peer.wants_probe()
    peer.probe_sent(7, losses=2)
    assert not peer.wants_probe()
    assert not peer.probe_settled(outstanding=True, losses=2) and not peer.validated
    assert not peer.probe_settled(outstanding=False, losses=3), "lost, not acknowledged"
    assert not peer.validated and peer.wants_probe()
    peer.probe_sent(9, losses=3)
    assert peer.probe_settled(outstanding=False, losses=3)
    assert peer.validated and peer.allow(10**6), "validated: no budget any more"


def test_a_return_to_a_recent_address_needs_no_new_validation():
    peer = PeerAddress(A)
    peer.arrived(B, 100, authenticated=True)
    assert peer.arrived(A, 100, authenticated=True) and peer.validated
    for i in range(MAX_VALIDATED_ADDRESSES):  # validate that many others
        peer.arrived(("10.0.0.1", i + 1), 100, authenticated=True)
        peer.probe_sent(i, 0)
        assert peer.probe_settled(outstanding=False, losses=0)
    peer.arrived(A, 100, authenticated=True)
    assert not peer.validated, "forgotten: the list is bounded"
    assert C not in peer._validated


def test_admission_refuses_while_behind_and_while_too_many_handshake():
    a = Admission()
    assert a.admit(0.0)
    a.queue_delay(SHED_QUEUE_DELAY_S + 0.1, 10.0)
    assert not a.admit(10.0) and a.refused == 1
    a.queue_delay(0.0, 10.5)  # one quiet wakeup: still held
    assert not a.admit(10.5)
    assert a.admit(10.0 + SHED_HOLD_S)
    handshakes = [a.begun(20.0) for _ in range(MAX_HANDSHAKES_IN_PROGRESS)]
    assert not a.admit(20.0), "too many handshakes under way"
    a.ended(handshakes[5])
    a.ended(handshakes[5])  # its connection ends after its handshake completed: once
    assert a.admit(20.0) and a.handshaking == MAX_HANDSHAKES_IN_PROGRESS - 1


def test_past_half_the_slots_only_validated_addresses_are_admitted():
    """Below RETRY_ABOVE handshakes a new connection is admitted as it comes; past it one
    without a valid token gets a Retry (no slot), one with a token is admitted up to
    MAX_HANDSHAKES_IN_PROGRESS; a gateway behind refuses both."""
    a = Admission()
    for i in range(RETRY_ABOVE):
        assert a.decide(1.0, f"10.0.{i // 250}.{i % 250}", validated=False) == ADMIT
        a.begun(1.0, f"10.0.{i // 250}.{i % 250}", validated=False)
    assert a.decide(1.0, "192.0.2.1", validated=False) == RETRY and a.retried == 1
    assert a.decide(1.0, "192.0.2.1", validated=True) == ADMIT
    a.queue_delay(SHED_QUEUE_DELAY_S + 0.1, 2.0)
    assert a.decide(2.0, "192.0.2.1", validated=False) == REFUSE
    assert a.decide(2.0, "192.0.2.1", validated=True) == REFUSE


def test_one_address_holds_at_most_its_share_of_each_kind():
    """One address (a host, a NAT) holds at most MAX_HANDSHAKES_PER_ADDRESS handshakes
    without a validated address (then a Retry) and as many with one (then busy); one that
    ends frees its place; other addresses and loopback are not bound by it."""
    a = Admission()
    held = [a.begun(1.0, "192.0.2.7", validated=False) for _ in range(MAX_HANDSHAKES_PER_ADDRESS)]
    assert a.decide(1.0, "192.0.2.7", validated=False) == RETRY
    for _ in range(MAX_HANDSHAKES_PER_ADDRESS):
        assert a.decide(1.0, "192.0.2.7", validated=True) == ADMIT
        a.begun(1.0, "192.0.2.7", validated=True)
    assert a.decide(1.0, "192.0.2.7", validated=True) == REFUSE
    assert a.decide(1.0, "192.0.2.8", validated=False) == ADMIT
    for _ in range(MAX_HANDSHAKES_PER_ADDRESS + 1):
        a.begun(1.0, "127.0.0.1", validated=False)
    assert a.decide(1.0, "127.0.0.1", validated=False) == ADMIT, "loopback is exempt"
    a.ended(held[0])
    assert a.decide(1.0, "192.0.2.7", validated=False) == ADMIT
    assert a.decide(1.0 + ABANDONED_AFTER_S, "192.0.2.7", validated=True) == ADMIT
    assert a.handshaking == 0 and a._per_key == {}, "abandoned: no count, no key left"


def test_a_retry_token_is_valid_only_from_its_address_for_its_cid_and_briefly():
    tokens = RetryTokens()
    odcid, cid = bytes(range(8)), bytes(range(8, 16))
    token = tokens.seal("192.0.2.1", odcid, cid, now=100.0)
    assert len(token) == 12 + 8 + 8 + 16
    assert tokens.open(token, "192.0.2.1", cid, now=100.5) == odcid
    assert tokens.open(token, "192.0.2.1", cid, now=100.0 + RETRY_TOKEN_LIFETIME_S) == odcid
    assert tokens.open(token, "192.0.2.2", cid, now=100.5) is None, "another address"
    assert tokens.open(token, "192.0.2.1", odcid, now=100.5) is None, "another connection"
    assert tokens.open(token, "192.0.2.1", cid, now=100.1 + RETRY_TOKEN_LIFETIME_S) is None
    assert tokens.open(token, "192.0.2.1", cid, now=99.0) is None, "from the future"
    garbled = token[:-1] + bytes([token[-1] ^ 1])
    assert tokens.open(garbled, "192.0.2.1", cid, now=100.5) is None
    assert tokens.open(b"short", "192.0.2.1", cid, now=100.5) is None
    assert RetryTokens().open(token, "192.0.2.1", cid, now=100.5) is None, "another process"


def test_a_handshake_abandoned_by_its_client_stops_counting():
    """A handshake that neither completes nor ends (its client's Finished or CONNECTION_CLOSE
    lost: a liveness probe's, session 16) counts until ABANDONED_AFTER_S after it began, the
    agent's connect timeout; then it no longer holds the door shut."""
    a = Admission()
    old = [a.begun(100.0) for _ in range(MAX_HANDSHAKES_IN_PROGRESS)]
    assert not a.admit(100.0 + ABANDONED_AFTER_S - 0.1), "still counted: the client may wait"
    a.ended(old[-1])
    young = a.begun(100.0 + ABANDONED_AFTER_S - 0.1)
    assert not a.admit(100.0 + ABANDONED_AFTER_S - 0.1)
    assert a.admit(100.0 + ABANDONED_AFTER_S + 0.2), "the abandoned ones no longer count"
    assert a.handshaking == 1 and a.abandoned == MAX_HANDSHAKES_IN_PROGRESS - 1
    a.ended(old[0])  # an abandoned one's connection ends at last: counted off once only
    a.ended(young)
    assert a.handshaking == 0


@pytest.mark.parametrize("lib_name", ["aioquic", "qh3"])
def test_a_refusal_ends_the_attempt_on_both_libraries(lib_name):
    """The hand-built Initial carrying CONNECTION_CLOSE(CONNECTION_REFUSED) is one each QUIC
    library decrypts and takes as the end of its connection attempt."""
    lib = library(lib_name)
    client = lib.QuicConnection(configuration=lib.QuicConfiguration(
        is_client=True, alpn_protocols=["geostream/1.0"]))
    client.connect(("127.0.0.1", 4433), now=1.0)
    first, _ = client.datagrams_to_send(now=1.0)[0]
    refusal = initial_refusal(route_header(first, 8), b"busy")
    assert len(refusal) < 100, "far below what the Initial allows back (3 x 1,200 bytes)"
    client.receive_datagram(refusal, ("127.0.0.1", 4433), now=1.1)
    client.handle_timer(now=client.get_timer())  # its draining period ends
    ends = [e for e in iter(client.next_event, None) if isinstance(e, lib.ConnectionTerminated)]
    assert [(e.error_code, e.reason_phrase) for e in ends] == [(CONNECTION_REFUSED, "busy")]
    # one bit off: the library drops it as garbage, the attempt goes on
    other = lib.QuicConnection(configuration=lib.QuicConfiguration(
        is_client=True, alpn_protocols=["geostream/1.0"]))
    other.connect(("127.0.0.1", 4433), now=1.0)
    first, _ = other.datagrams_to_send(now=1.0)[0]
    bad = bytearray(initial_refusal(route_header(first, 8)))
    bad[-1] ^= 1
    other.receive_datagram(bytes(bad), ("127.0.0.1", 4433), now=1.1)
    other.handle_timer(now=other.get_timer())  # a retransmission, not an end
    assert not [e for e in iter(other.next_event, None)
                if isinstance(e, lib.ConnectionTerminated)]
