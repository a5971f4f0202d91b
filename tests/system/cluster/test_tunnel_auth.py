"""The router ⇄ node tunnel authenticates every datagram and refuses replays (docs/scaling.md
§4): the sans-IO core on a given clock, then the real router and node sockets on loopback, then
the defaults (no key, the wildcard) refused."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from backend.cli import DEFAULT_TUNNEL
from backend.cluster import tunnel
from backend.cluster.edge import RouterEdge, now_us, serve_behind_router
from backend.cluster.node import ClusterNode, check_tunnel_host, parse_addr
from backend.cluster.relay import ISSUED, encode_cids
from backend.config import BackendConfig
from backend.metrics import cluster_families
from geostream import ALPN
from geostream.quic import library
from tests.integration.net.rig import client_config, until

_lib = library()
QuicConfiguration, QuicConnection = _lib.QuicConfiguration, _lib.QuicConnection

REPO = Path(__file__).resolve().parents[3]
KEY = bytes(range(32))
T0 = 1_800_000_000_000_000  # µs: the receivers' clock in the sans-IO tests


def _node_opener(started=T0) -> tunnel.Opener:
    return tunnel.Opener(KEY, from_router=True, started_us=started)


def _router_opener(started=T0) -> tunnel.Opener:
    return tunnel.Opener(KEY, from_router=False, started_us=started)


def _refused(opener, datagram, now, reason) -> None:
    before = opener.dropped[reason]
    assert opener.open(datagram, now) is None
    assert opener.dropped[reason] == before + 1, opener.dropped


def test_a_sealed_datagram_opens_with_its_address_and_payload():
    router = tunnel.Sealer(KEY, tunnel.ROUTER_SENDER, from_router=True)
    node = _node_opener()
    for host in ("192.0.2.7", "2001:db8::5"):
        d = node.open(router.data(host, 40_000, b"quic", T0 + 1), T0 + 2)
        assert (d.kind, d.host, d.port, d.payload) == (tunnel.DATA, host, 40_000, b"quic")
    beat = tunnel.Sealer(KEY, 7, from_router=False).heartbeat(T0 + 5)
    assert _router_opener().open(beat, T0 + 6) == tunnel.Datagram(tunnel.HEARTBEAT, 7)
    assert not any(node.dropped.values())


def test_forged_unsigned_truncated_and_tampered_datagrams_are_dropped_and_counted():
    good = tunnel.Sealer(KEY, tunnel.ROUTER_SENDER, from_router=True).data(
        "192.0.2.7", 1, b"x" * 100, T0 + 1)
    forged = tunnel.Sealer(b"\x01" * 32, tunnel.ROUTER_SENDER, from_router=True).data(
        "192.0.2.7", 1, b"x" * 100, T0 + 1)
    unsigned_v1 = bytes(1) + bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 7]) + b"\x00\x01" + b"x"
    node = _node_opener()
    _refused(node, forged, T0 + 2, "bad_tag")
    _refused(node, unsigned_v1, T0 + 2, "malformed")  # the old tunnel's format
    _refused(node, b"\x01\x00\x07", T0 + 2, "malformed")  # the old 3-byte heartbeat
    _refused(node, good[:-1], T0 + 2, "bad_tag")  # truncated
    _refused(node, good[:40], T0 + 2, "bad_tag")
    _refused(node, good[:5], T0 + 2, "malformed")
    flipped = bytearray(good)
    flipped[30] ^= 1  # the vehicle's address or payload changed in flight
    _refused(node, bytes(flipped), T0 + 2, "bad_tag")
    assert node.open(good, T0 + 2) is not None, "the genuine one still opens"


def test_a_replayed_datagram_is_dropped_and_reordering_within_the_window_is_not():
    node = tunnel.Sealer(KEY, 3, from_router=False)
    router = _router_opener()
    sent = [node.data("192.0.2.1", 9, bytes([i]), T0 + 10 + i) for i in range(5)]
    for i in (0, 3, 1, 4, 2):  # reordered in the network
        assert router.open(sent[i], T0 + 100) is not None
    for d in sent:  # captured and replayed
        _refused(router, d, T0 + 200, "replayed")
    later = node.data("192.0.2.1", 9, b"late", T0 + 10 + tunnel.REORDER_WINDOW_US + 50)
    assert router.open(later, T0 + tunnel.REORDER_WINDOW_US + 60) is not None
    # one sent more than the window before the newest, arriving after it: too late
    slow = tunnel.Sealer(KEY, 3, from_router=False).data("192.0.2.1", 9, b"x", T0 + 20)
    _refused(router, slow, T0 + tunnel.REORDER_WINDOW_US + 70, "stale")


def test_replays_across_restarts_and_far_clocks_are_refused():
    node = tunnel.Sealer(KEY, 3, from_router=False)
    captured = node.heartbeat(T0 - 1_000)  # before the receiver (re)started: no history there
    _refused(_router_opener(), captured, T0 + 1, "stale")
    ahead = tunnel.Sealer(KEY, 4, from_router=False).heartbeat(T0 + tunnel.MAX_CLOCK_SKEW_US + 10)
    _refused(_router_opener(), ahead, T0 + 5, "stale")
    router = _router_opener()
    assert router.open(node.heartbeat(T0 + 10), T0 + 10) is not None
    restarted = tunnel.Sealer(KEY, 3, from_router=False)  # the node restarts: new clock
    assert router.open(restarted.heartbeat(T0 + 500), T0 + 500) is not None


def test_a_datagram_reflected_back_to_its_own_side_is_refused():
    node_beat = tunnel.Sealer(KEY, 3, from_router=False).heartbeat(T0 + 1)
    _refused(_node_opener(), node_beat, T0 + 2, "wrong_direction")
    router_data = tunnel.Sealer(KEY, 0, from_router=True).data("192.0.2.1", 1, b"q", T0 + 1)
    _refused(_router_opener(), router_data, T0 + 2, "wrong_direction")


def test_counters_forgotten_for_memory_cannot_be_replayed(monkeypatch):
    monkeypatch.setattr(tunnel, "MAX_REMEMBERED", 4)
    node = tunnel.Sealer(KEY, 3, from_router=False)
    router = _router_opener()
    sent = [node.heartbeat(T0 + i) for i in range(10)]
    for d in sent:
        assert router.open(d, T0 + 20) is not None
    for d in sent[:6]:  # no longer remembered: refused as too old, not taken as new
        _refused(router, d, T0 + 30, "stale")
    for d in sent[6:]:
        _refused(router, d, T0 + 30, "replayed")


# --- the real sockets -----------------------------------------------------------------------


def _udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    return s


async def _recv(sock: socket.socket) -> bytes:
    return await asyncio.to_thread(lambda: sock.recv(4096))


async def test_the_router_relays_only_authentic_new_datagrams_of_live_nodes():
    edge = await RouterEdge(KEY).start(("127.0.0.1", 0), ("127.0.0.1", 0))
    public, tun = edge.ports()
    node, stranger, vehicle = _udp(), _udp(), _udp()
    to = ("127.0.0.1", tun)
    vhost, vport = vehicle.getsockname()
    mine = tunnel.Sealer(KEY, 1, from_router=False)
    theirs = tunnel.Sealer(KEY, 2, from_router=False)  # a key holder the router never heard
    try:
        stranger.sendto(b"\x01\x00\x09", to)  # the old 3-byte heartbeat of anyone
        stranger.sendto(tunnel.Sealer(os.urandom(32), 9, False).heartbeat(now_us()), to)
        node.sendto(mine.heartbeat(now_us()), to)
        await until(lambda: edge.router.live(edge.loop.time()) == [1], 5, "the node's beat")
        # an open relay would send these to the "vehicle": none of them may arrive
        unsigned = bytes(1) + bytes(10) + b"\xff\xff" + socket.inet_aton(vhost) + \
            vport.to_bytes(2, "big") + b"relay me"
        stranger.sendto(unsigned, to)
        stranger.sendto(theirs.data(vhost, vport, b"unknown peer", now_us()), to)
        stranger.sendto(mine.data(vhost, vport, b"node 1 from elsewhere", now_us()), to)
        genuine = mine.data(vhost, vport, b"genuine", now_us())
        node.sendto(genuine, to)
        node.sendto(genuine, to)  # replayed
        node.sendto(mine.data(vhost, vport, b"after", now_us()), to)
        # loopback keeps each socket's order, and the router handles datagrams in order: the
        # first two to arrive are the node's genuine ones, so nothing before them was relayed
        assert await _recv(vehicle) == b"genuine"
        assert await _recv(vehicle) == b"after"
        d = edge.dropped()
        assert d["malformed"] == 2 and d["bad_tag"] == 1, d
        assert d["unknown_peer"] == 2 and d["replayed"] == 1, d
        assert edge.router.live(edge.loop.time()) == [1], "no stranger became a node"
    finally:
        edge.close()
        for s in (node, stranger, vehicle):
            s.close()


async def test_a_node_hands_its_quic_server_only_its_routers_authentic_datagrams(pki):
    cfg = QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
    cfg.load_cert_chain(pki["cert"], pki["key"])
    router, stranger = _udp(), _udp()
    server, endpoint = await serve_behind_router(
        _lib, "127.0.0.1", 0, 1, router.getsockname(), KEY, configuration=cfg)
    to = endpoint.transport.get_extra_info("sockname")
    initials = []
    for _ in range(3):  # three vehicles' first datagrams: each would open a connection
        client = QuicConnection(configuration=client_config(pki["ca"]))
        client.connect(("127.0.0.1", 4433), now=0.0)
        initials.append(client.datagrams_to_send(now=0.0)[0][0])
    sealer = tunnel.Sealer(KEY, tunnel.ROUTER_SENDER, from_router=True)
    try:
        assert tunnel.Opener(KEY, False, 0).open(await _recv(router), now_us()).kind == \
            tunnel.HEARTBEAT, "the node beats, authenticated"
        stranger.sendto(sealer.data("192.0.2.9", 5000, initials[0], now_us()), to)
        forged = tunnel.Sealer(os.urandom(32), 0, True).data("192.0.2.9", 5001, initials[1],
                                                              now_us())
        router.sendto(forged, to)
        genuine = sealer.data("192.0.2.9", 5002, initials[2], now_us())
        router.sendto(genuine, to)
        router.sendto(genuine, to)
        await until(lambda: endpoint.opener.dropped["replayed"] == 1, 5, "the replay")
        assert endpoint.opener.dropped["unknown_peer"] == 1
        assert endpoint.opener.dropped["bad_tag"] == 1
        connections = {id(p) for p in server._protocols.values()}  # keyed by each of its CIDs
        assert len(connections) == 1, "one connection: the genuine Initial's only"
        node = ClusterNode(1, router.getsockname(), KEY)
        node.endpoint = endpoint
        (family,) = cluster_families(node, None)  # what /metrics shows for this node
        assert {s.labels["reason"]: s.value for s in family.samples} == {
            **dict.fromkeys(tunnel.DROP_REASONS, 0.0), "replayed": 1.0, "unknown_peer": 1.0,
            "bad_tag": 1.0}
    finally:
        endpoint.close()
        server.close()
        router.close()
        stranger.close()


# --- the defaults are not open ---------------------------------------------------------------


def test_default_tunnel_is_loopback_and_the_wildcard_is_refused():
    host, _ = parse_addr(DEFAULT_TUNNEL)
    assert host == "127.0.0.1"
    for wildcard in ("::", "0.0.0.0", "[::]", ""):
        with pytest.raises(ValueError):
            check_tunnel_host(wildcard, "--tunnel")
    check_tunnel_host("10.0.0.5", "--tunnel")  # a private address is what it wants


def test_a_node_needs_the_cluster_key_and_a_private_key_file(tmp_path):
    with pytest.raises(ValueError, match="cluster_key_file"):
        BackendConfig(server_id=1, router="10.0.0.1:4434")
    key = tmp_path / "cluster.key"
    tunnel.write_key(str(key))
    assert key.stat().st_mode & 0o777 == 0o600
    assert len(tunnel.load_key(str(key))) == tunnel.KEY_BYTES
    key.chmod(0o644)
    with pytest.raises(ValueError, match="others"):
        tunnel.load_key(str(key))
    (tmp_path / "short.key").write_text("abcd\n")
    (tmp_path / "short.key").chmod(0o600)
    with pytest.raises(ValueError, match="not a cluster key"):
        tunnel.load_key(str(tmp_path / "short.key"))


def _backend(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "backend", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=60)


def test_the_router_refuses_to_start_without_a_key_or_on_the_wildcard(tmp_path):
    no_key = _backend("router", "--listen", "127.0.0.1:0")
    assert no_key.returncode == 2 and "--cluster-key-file" in no_key.stderr
    key = tmp_path / "cluster.key"
    made = _backend("gen-cluster-key", "--out", str(key))
    assert made.returncode == 0 and key.stat().st_mode & 0o777 == 0o600
    wild = _backend("--cluster-key-file", str(key), "router", "--listen", "127.0.0.1:0",
                    "--tunnel", "[::]:4434")
    assert wild.returncode == 2 and "every interface" in wild.stderr
    node = _backend("--server-id", "1", "--router", "127.0.0.1:4434", "migrate")
    assert node.returncode == 2 and "cluster_key_file" in node.stderr


def test_a_nodes_cid_announcement_opens_at_the_router_only():
    """The CIDS kind (a node's CIDs without its server id, for the router to route): opened
    with its message at the router; the same kind sealed by the router is refused by a node."""
    message = encode_cids([(ISSUED, b"\x11" * 8)])[0]
    sealed = tunnel.Sealer(KEY, 4, from_router=False).cids(message, T0 + 1)
    assert _router_opener().open(sealed, T0 + 2) == tunnel.Datagram(tunnel.CIDS, 4,
                                                                     payload=message)
    forged = tunnel.Sealer(KEY, 0, from_router=True).cids(message, T0 + 1)
    _refused(_node_opener(), forged, T0 + 2, "malformed")
