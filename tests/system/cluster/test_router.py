"""The router's decision without sockets (docs/scaling.md §4)."""

from __future__ import annotations

import os

from backend.cluster.cids import CidLayout
from backend.cluster.relay import ISSUED, RETIRED, encode_cids
from backend.cluster.router import (
    ANNOUNCED_TTL_S,
    DEAD_AFTER_S,
    Router,
    destination_cid,
    rendezvous,
)
from geostream.quic import library
from tests.integration.net.rig import client_config

QuicConnection = library().QuicConnection

A, B, C = ("10.0.0.1", 1), ("10.0.0.2", 1), ("10.0.0.3", 1)


def _router(now=0.0) -> Router:
    r = Router()
    for sid, addr in ((1, A), (2, B), (3, C)):
        r.heartbeat(sid, addr, now)
    return r


def short(dcid: bytes) -> bytes:
    return bytes([0x40 | 0x01]) + dcid + os.urandom(30)


def long_(dcid: bytes) -> bytes:
    version = b"\x00\x00\x00\x01"
    return bytes([0xC0]) + version + bytes([len(dcid)]) + dcid + b"\x08" + os.urandom(40)


def test_destination_cid_of_a_real_aioquic_initial(pki):
    client = QuicConnection(configuration=client_config(pki["ca"]))
    client.connect(("127.0.0.1", 4433), now=0.0)
    (datagram, _), *_ = client.datagrams_to_send(now=0.0)
    assert datagram[0] & 0x80, "an Initial has a long header"
    assert destination_cid(datagram) == client._peer_cid.cid


def test_destination_cid_short_long_and_garbage():
    cid = CidLayout().encode(3)
    assert destination_cid(short(cid)) == cid
    assert destination_cid(long_(cid)) == cid
    assert destination_cid(b"\x00" * 40) is None, "fixed bit clear: not QUIC"
    assert destination_cid(b"\x41\x01") is None, "too short"
    assert destination_cid(bytes([0xC0, 0, 0, 0, 1, 30]) + b"x" * 30) is None, "DCID > 20"


def test_short_and_long_headers_with_our_cid_go_to_their_node():
    r = _router()
    for sid, addr in ((1, A), (2, B), (3, C)):
        cid = CidLayout().encode(sid)
        assert r.route(short(cid), 0.1) == addr
        assert r.route(long_(cid), 0.1) == addr
    assert r.stats["by_cid"] == 6 and r.stats["by_hash"] == 0


def test_client_cids_hash_consistently_and_spread():
    r = _router()
    dcids = [os.urandom(8) for _ in range(300)]
    first = [r.route(long_(d), 0.1) for d in dcids]
    assert [r.route(long_(d), 0.2) for d in dcids] == first, "the same DCID, the same node"
    assert {first.count(a) for a in (A, B, C)} and min(first.count(a) for a in (A, B, C)) > 50


def test_a_dead_node_moves_only_its_own_traffic():
    r = _router()
    dcids = [os.urandom(8) for _ in range(300)]
    before = {d: r.route(long_(d), 0.1) for d in dcids}
    later = DEAD_AFTER_S + 1
    r.heartbeat(1, A, later)
    r.heartbeat(3, C, later)  # node 2 stopped beating
    assert r.live(later) == [1, 3]
    after = {d: r.route(long_(d), later) for d in dcids}
    assert B not in after.values()
    assert all(after[d] == before[d] for d in dcids if before[d] != B), "rendezvous hashing"
    # a connection of the dead node hashes to a live one (which drops it: the agent reconnects)
    assert r.route(short(CidLayout().encode(2)), later) in (A, C)


def test_drops_without_live_nodes_or_for_unknown_server_ids():
    r = Router()
    assert r.route(short(os.urandom(8)), 0.0) is None
    r = _router()
    assert r.route(short(CidLayout().encode(99)), 0.1) in (A, B, C), "unknown id: hashed"
    assert rendezvous(b"k", []) is None


def test_tunnel_round_trip_both_families():
    from backend.cluster import tunnel

    key, now = tunnel.generate_key(), 1_800_000_000_000_000
    sealer = tunnel.Sealer(key, tunnel.ROUTER_SENDER, from_router=True)
    opener = tunnel.Opener(key, from_router=True, started_us=now)
    for host in ("10.1.2.3", "fd00::7"):
        d = opener.open(sealer.data(host, 4433, b"quic", now), now)
        assert (d.host, d.port, d.payload) == (host, 4433, b"quic")
    assert opener.open(sealer.data("::ffff:10.1.2.3", 9, b"x", now), now).host == "10.1.2.3"
    assert tunnel.socket_host("10.1.2.3", True) == "::ffff:10.1.2.3"
    beat = tunnel.Sealer(key, 513, from_router=False).heartbeat(now)
    assert tunnel.Opener(key, from_router=False, started_us=now).open(beat, now).sender == 513



def test_announced_cids_go_to_their_node_while_it_lives():
    """A CID a node issued without its server id (qh3's) and announced: routed to that node,
    until retired, the node dead, or the announcement not renewed within ANNOUNCED_TTL_S."""
    r = _router()
    cid = os.urandom(8)
    hashed = r.route(short(cid), 0.1)
    owner = next(sid for sid, addr in ((1, A), (2, B), (3, C)) if addr != hashed)
    other = next(sid for sid in (1, 2, 3) if sid != owner)
    r.announced(owner, encode_cids([(ISSUED, cid)])[0], 0.1)
    assert r.route(short(cid), 0.2) == r.address(owner)
    assert r.stats["by_announced"] == 1
    r.announced(other, encode_cids([(RETIRED, cid)])[0], 0.3)
    assert r.route(short(cid), 0.3) == r.address(owner), "only its owner retires it"
    r.announced(owner, encode_cids([(RETIRED, cid)])[0], 0.4)
    assert r.route(short(cid), 0.4) == hashed, "retired: by hash again"
    r.announced(owner, encode_cids([(ISSUED, cid)])[0], 0.5)
    later = DEAD_AFTER_S + 1
    for sid, addr in ((1, A), (2, B), (3, C)):  # all but the owner beat on
        if sid != owner:
            r.heartbeat(sid, addr, later)
    assert r.route(short(cid), later) != r.address(owner), "a dead node: by hash"
    r.heartbeat(owner, r.address(owner), later + 0.1)  # back (a busy node): it still routes
    assert r.route(short(cid), later + 0.1) == r.address(owner)
    expired = 0.5 + ANNOUNCED_TTL_S + 1
    for sid, addr in ((1, A), (2, B), (3, C)):
        r.heartbeat(sid, addr, expired)
    assert r.route(short(cid), expired) == hashed and r.stats["by_announced"] == 3, \
        "not announced again: expired"


def test_an_announced_cid_that_looks_like_our_layout_goes_to_its_announcer():
    """1 in 256 of qh3's random CIDs begins with our layout's first byte: read as a layout CID
    its made-up server id is no node's (or another node's), and its connection was lost."""
    r = _router()
    layout = CidLayout()
    lookalikes = [layout.encode(sid, os.urandom(5)) for sid in (52200, 2)]
    for cid in lookalikes:
        r.announced(3, encode_cids([(ISSUED, cid)])[0], 0.1)
    for _ in range(20):  # by hash, each would go to node 3 only half of the time or never
        assert [r.route(short(c), 0.2) for c in lookalikes] == [C, C]
    assert r.stats["by_announced"] == 40
    r.announced(3, encode_cids([(RETIRED, lookalikes[1])])[0], 0.3)
    assert r.route(short(lookalikes[1]), 0.3) == B, "retired: its server id's node again"


def test_announcements_are_bounded_and_malformed_ones_change_nothing():
    r = _router()
    r.max_announced = 2
    cids = [os.urandom(8) for _ in range(3)]
    r.announced(1, encode_cids((ISSUED, c) for c in cids)[0], 0.1)
    assert r.stats["announced_refused"] == 1
    dropped = r.stats["dropped"]
    r.announced(2, bytes([1, ISSUED]), 0.1)  # truncated: nothing of it applies
    assert r.stats["dropped"] == dropped + 1
    for c in cids[:2]:
        assert r.route(short(c), 0.1) == A
    assert r.stats["by_announced"] == 2
    r.announced(1, encode_cids([(ISSUED, cids[2])])[0], ANNOUNCED_TTL_S + 1)
    assert r.stats["announced_refused"] == 1, "full of expired ones: they make room"
