"""The UDP edge's pure parts: one deadline heap for all connections, the invariant header."""

from __future__ import annotations

from backend.edge_core import COMPACT_SLACK, Deadlines, route_header, version_negotiation


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
