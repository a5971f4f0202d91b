"""The UDP edge's pure parts: one deadline heap for all connections, the invariant header."""

from __future__ import annotations

from backend.edge_core import (
    AMPLIFICATION_FACTOR,
    COMPACT_SLACK,
    MAX_VALIDATED_ADDRESSES,
    Deadlines,
    PeerAddress,
    route_header,
    version_negotiation,
)


def test_a_newer_deadline_replaces_the_older_one():
    d = Deadlines()
    d.set("a", 5.0)
    d.set("b", 3.0)
    d.set("a", 1.0)  # earlier
    d.set("b", 9.0)  # later
    assert d.earliest() == 1.0
    assert d.pop_due(4.0) == ["a"], "b's superseded 3.0 is not due"
    assert d.earliest() == 9.0 and d.at("b") == 9.0 and d.at("a") is None
    assert d.pop_due(9.0) == ["b"] and d.earliest() is None


def test_cancelled_and_equal_deadlines():
    d = Deadlines()
    d.set("a", 2.0)
    d.set("a", 2.0)  # the same deadline again: due once
    d.set("c", 2.0)
    d.set("c", None)
    assert d.pop_due(2.0) == ["a"]
    d.set_earlier("a", 4.0)
    d.set_earlier("a", 6.0)  # later: ignored
    assert d.at("a") == 4.0 and len(d) == 1


def test_superseded_entries_stay_bounded():
    d = Deadlines()
    for i in range(20_000):  # one connection re-armed on every transmit, its deadline moving
        d.set("conn", 100.0 + i)
    assert len(d._heap) <= 2 * len(d) + COMPACT_SLACK + 1
    assert d.pop_due(1e9) == ["conn"]


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
