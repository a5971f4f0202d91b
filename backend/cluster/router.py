"""The router's decision, sans-IO: which node a QUIC datagram goes to (docs/scaling.md §4).

A CID a live node announced (one its QUIC library drew without the server id: qh3's
NEW_CONNECTION_ID CIDs, relay.py) goes to that node, even when its random first byte makes
it look like one of our layout; a CID of our layout naming a live node goes to that node;
any other destination CID (the client's random first one) goes to the live node with the
highest rendezvous hash of it, so every packet of one handshake lands on the same
node and a node's death moves only the handshakes that hashed to it. Node liveness comes from
heartbeats, passed in with `now`.
"""

from __future__ import annotations

import hashlib

from .cids import CID_LENGTH, CidLayout
from .relay import ISSUED, decode_cids

# Nodes send a heartbeat this often; after DEAD_AFTER_S without one a node gets no new packets.
# Three missed beats: one lost datagram or a busy second is not a death.
HEARTBEAT_S = 0.5
DEAD_AFTER_S = 1.6
# QUIC's long header: first byte, 4-byte version, DCID length byte (RFC 9000 §17.2)
_LONG_DCID_AT = 6
MAX_CID_LENGTH = 20
# Announced CIDs the router keeps (~100 bytes each): qh3 offers one spare CID per connection
# to a qh3 client and one more per move, up to 7 to an aioquic client; a million covers
# 100,000+ vehicles. Past it a new announcement is refused (counted): that CID routes by hash
# and its connection ends as before announcements existed.
MAX_ANNOUNCED_CIDS = 1 << 20
# An announced CID routes to its node this long after the node last announced it; nodes
# announce their live ones every 5 s (edge.py REANNOUNCE_BEATS), so three datagrams in a row
# may be lost before a live CID lapses, and a dead connection's CIDs are gone within it. A
# node's heartbeats missing briefly (a busy node) forget nothing.
ANNOUNCED_TTL_S = 20.0


def destination_cid(datagram: bytes, short_cid_length: int = CID_LENGTH) -> bytes | None:
    """The destination connection ID of the first packet in a datagram, or None if it is not
    a QUIC packet (RFC 9000 §17: the fixed bit is set)."""
    if len(datagram) < 1 + short_cid_length or not datagram[0] & 0x40:
        return None
    if datagram[0] & 0x80:  # long header
        if len(datagram) < _LONG_DCID_AT:
            return None
        n = datagram[5]
        if n > MAX_CID_LENGTH or len(datagram) < _LONG_DCID_AT + n:
            return None
        return datagram[_LONG_DCID_AT:_LONG_DCID_AT + n]
    return datagram[1:1 + short_cid_length]


def rendezvous(key: bytes, nodes) -> int | None:
    """The node (server id) with the highest hash of (node, key); None without nodes."""
    best, best_score = None, b""
    for sid in nodes:
        score = hashlib.blake2b(key, digest_size=8, key=sid.to_bytes(2, "big")).digest()
        if best is None or score > best_score:
            best, best_score = sid, score
    return best


class Router:
    """Live nodes (server id → address, last heartbeat) and the routing decision."""

    def __init__(self, layout: CidLayout | None = None, dead_after_s: float = DEAD_AFTER_S):
        self.layout = layout or CidLayout()
        self.dead_after_s = dead_after_s
        self._nodes: dict[int, tuple[tuple, float]] = {}
        # CID without a server id → (the node that announced it, when it last did)
        self._announced: dict[bytes, tuple[int, float]] = {}
        self.max_announced = MAX_ANNOUNCED_CIDS
        self.stats = {"forwarded": 0, "by_cid": 0, "by_hash": 0, "dropped": 0,
                      "by_announced": 0, "announced_refused": 0}

    def heartbeat(self, server_id: int, addr: tuple, now: float) -> None:
        self._nodes[server_id] = (addr, now)

    def announced(self, server_id: int, message: bytes, now: float) -> None:
        """A node's CIDS message (relay.py's format): CIDs it issued (or announces again) or
        retired. An announcement holds for ANNOUNCED_TTL_S: a node announces its live ones
        again more often than that, so those of a connection that died with its node (no
        retirement ever comes) expire."""
        try:
            changes = decode_cids(message)
        except ValueError:
            self.stats["dropped"] += 1
            return
        table = self._announced
        for op, cid in changes:
            if op == ISSUED:
                if cid not in table and len(table) >= self.max_announced:
                    self._expire(now)
                    if len(table) >= self.max_announced:
                        self.stats["announced_refused"] += 1
                        continue
                table[cid] = (server_id, now)
            elif (entry := table.get(cid)) is not None and entry[0] == server_id:
                del table[cid]

    def _expire(self, now: float) -> None:
        table = self._announced
        for cid in [c for c, (_, at) in table.items() if now - at > ANNOUNCED_TTL_S]:
            del table[cid]

    def live(self, now: float) -> list[int]:
        return sorted(sid for sid, (_, seen) in self._nodes.items()
                      if now - seen <= self.dead_after_s)

    def is_node(self, server_id: int, addr: tuple, now: float) -> bool:
        """Whether `server_id` is a live node at `addr` (its heartbeats come from there)."""
        node = self._nodes.get(server_id)
        return (node is not None and node[0][:2] == addr[:2]
                and now - node[1] <= self.dead_after_s)

    def address(self, server_id: int) -> tuple:
        return self._nodes[server_id][0]

    def route(self, datagram: bytes, now: float) -> tuple | None:
        """The address of the node this datagram goes to, or None (drop it)."""
        dcid = destination_cid(datagram)
        if dcid is None:
            self.stats["dropped"] += 1
            return None
        # an announcement first: a random CID whose first byte is our layout's (1 in 256 of
        # qh3's) parses as one with a made-up server id, usually no node's, and went by hash
        # to a node that did not have the connection (the vehicle's move onto it was lost)
        entry = self._announced.get(dcid)
        if entry is not None and now - entry[1] <= ANNOUNCED_TTL_S:
            sid, key = entry[0], "by_announced"
        else:
            sid, key = self.layout.server_id(dcid), "by_cid"
        node = self._nodes.get(sid) if sid is not None else None
        if node is not None and now - node[1] <= self.dead_after_s:
            self.stats[key] += 1
        else:
            sid = rendezvous(dcid, self.live(now))
            if sid is None:
                self.stats["dropped"] += 1
                return None
            self.stats["by_hash"] += 1
        self.stats["forwarded"] += 1
        return self._nodes[sid][0]
