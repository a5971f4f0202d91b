"""The liveness probe's datagram and the check of its answer (agent/version_probe.py)."""

from __future__ import annotations

import struct

import pytest

from agent.version_probe import CID_BYTES, PROBE_BYTES, VersionProbe, reserved_version
from backend.cluster.router import Router, destination_cid
from backend.edge_core import MIN_INITIAL_BYTES, QUIC_V1, route_header, version_negotiation


def _answer(probe: VersionProbe, versions=(QUIC_V1,)) -> bytes:
    """What the gateway's edge answers (backend/edge_core.py `version_negotiation`)."""
    return version_negotiation(route_header(probe.datagram, 8), list(versions))


def test_the_probe_is_a_padded_long_header_of_a_reserved_version_with_random_ids():
    a, b = VersionProbe(), VersionProbe()
    assert len(a.datagram) == PROBE_BYTES >= MIN_INITIAL_BYTES
    h = route_header(a.datagram, 8)
    assert h.long and not h.initial and h.version == a.version
    assert h.version & 0x0F0F0F0F == 0x0A0A0A0A, "RFC 9000 §15: 0x?a?a?a?a"
    assert (h.destination_cid, h.source_cid) == (a.dcid, a.scid)
    assert len(a.dcid) == len(a.scid) == CID_BYTES
    assert a.datagram[0] & 0x40, "the fixed bit: a cluster's router passes it on"
    assert destination_cid(a.datagram) == a.dcid
    assert {a.dcid, a.scid}.isdisjoint({b.dcid, b.scid})


def test_reserved_versions_keep_their_random_high_nibbles():
    assert reserved_version(0xFFFFFFFF) == 0xFAFAFAFA
    assert reserved_version(0) == 0x0A0A0A0A
    assert reserved_version(0x12345678) == 0x1A3A5A7A


def test_the_gateways_answer_is_accepted():
    probe = VersionProbe()
    assert probe.answered_by(_answer(probe))
    assert probe.answered_by(_answer(probe, (QUIC_V1, 0x6B3343CF)))


def test_an_answer_to_another_probe_is_not():
    probe, other = VersionProbe(), VersionProbe()
    assert not probe.answered_by(_answer(other))


@pytest.mark.parametrize("swap", ["dcid", "scid", "both"])
def test_wrong_connection_ids_are_not_an_answer(swap):
    probe = VersionProbe()
    good = bytearray(_answer(probe))
    # the answer: first, version (4), len, DCID (our SCID), len, SCID (our DCID), versions
    if swap in ("dcid", "both"):
        good[6] ^= 1
    if swap in ("scid", "both"):
        good[7 + CID_BYTES] ^= 1
    assert not probe.answered_by(bytes(good))
    unswapped = (bytes([0x80]) + b"\0\0\0\0" + bytes([CID_BYTES]) + probe.dcid
                 + bytes([CID_BYTES]) + probe.scid + struct.pack("!I", QUIC_V1))
    assert not probe.answered_by(unswapped), "the IDs as sent, not swapped"


def test_truncated_or_short_answers_are_not():
    probe = VersionProbe()
    good = _answer(probe)
    for cut in range(len(good)):
        assert not probe.answered_by(good[:cut]), cut
    assert not probe.answered_by(good + b"\0\0"), "a torn version list"


def test_what_is_not_a_version_negotiation_is_not():
    probe = VersionProbe()
    good = _answer(probe)
    assert not probe.answered_by(bytes([good[0] & 0x7F]) + good[1:]), "a short header"
    assert not probe.answered_by(good[:1] + struct.pack("!I", QUIC_V1) + good[5:])
    assert not probe.answered_by(probe.datagram), "the probe itself, reflected"


def test_an_answer_that_lists_the_probes_own_version_is_discarded():
    probe = VersionProbe()
    assert not probe.answered_by(_answer(probe, (QUIC_V1, probe.version)))


def test_a_clusters_router_forwards_the_probe_to_a_live_node():
    """Behind `python -m backend router` the probe goes to a node like a new connection's
    first Initial (by its DCID's hash), and that node's edge answers it."""
    router = Router()
    router.heartbeat(3, ("10.0.0.3", 4433), now=1.0)
    assert router.route(VersionProbe().datagram, now=1.5) == ("10.0.0.3", 4433)
