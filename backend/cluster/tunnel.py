"""The router ⇄ node tunnel's datagrams, authenticated, sans-IO (docs/scaling.md §4).

    header:    version (4 bits) | from-router (1 bit) | kind (3 bits) | sender (2) | counter (8)
    data:      header | client address (16, IPv4 as ::ffff:a.b.c.d) | port (2) | QUIC | tag (16)
    heartbeat: header | tag (16)
    cids:      header | CID announcements (relay.py's CIDS message) | tag (16), node → router

`sender` is the node's server id (0 from the router); `counter` is the sender's clock in
microseconds since the Unix epoch, made strictly increasing per sender (`Sealer`), and `tag` is
HMAC-SHA256 under the cluster's key over everything before it, truncated to 16 bytes.

A data datagram carries the vehicle's address both ways: to the node (where its QUIC server
sees the real client address, so path validation and migration work as on one machine) and
back to the router (which sends the payload to that address). No flow table anywhere.

Replay protection (`Opener`): per sender, the highest counter seen and the counters accepted in
the `REORDER_WINDOW_US` below it; a counter seen before, or older than that window, is a
replay or too late. A sender that restarts continues from its clock, above what it sent
before. A receiver that restarts knows no history, so it also refuses counters from before its
own start (a datagram captured earlier cannot be replayed to it) and counters further from its
clock than `MAX_CLOCK_SKEW_US`: the cluster's clocks must agree within that (NTP).
"""

from __future__ import annotations

import hmac
import os
import socket
from collections import deque
from dataclasses import dataclass, field

from geostream.secretfile import read_private, write_private

VERSION = 2
DATA = 0
HEARTBEAT = 1
# a node's announcement of CIDs it issued without its server id (qh3's), so the router routes
# them to it (router.py); a router of before session 10 drops it as malformed
CIDS = 2
_FROM_ROUTER = 0x08
ROUTER_SENDER = 0
HEADER_BYTES = 11
ADDRESS_BYTES = 18
TAG_BYTES = 16  # 128-bit tags: a forgery needs ~2^128 tries, far beyond any datagram budget
KEY_BYTES = 32  # HMAC-SHA256's block-size-friendly key length, from os.urandom
# Datagrams of one sender may arrive out of order by this much of their send clock; later ones
# are dropped like lost ones (QUIC retransmits). A LAN reorders by microseconds; 100 ms also
# covers a busy host's scheduling.
REORDER_WINDOW_US = 100_000
# The cluster's clocks must agree within this (NTP keeps them within milliseconds): a datagram
# whose counter is further ahead of, or behind, the receiver's clock is refused.
MAX_CLOCK_SKEW_US = 10_000_000
# Counters remembered per sender: at most this many inside the window (85,000 packets/s for
# 100 ms is 8,500); beyond it the oldest are forgotten and their counters treated as too old.
MAX_REMEMBERED = 65_536
_V4_MAPPED = bytes(10) + b"\xff\xff"
DROP_REASONS = ("malformed", "bad_tag", "wrong_direction", "stale", "replayed", "unknown_peer")


def generate_key() -> bytes:
    return os.urandom(KEY_BYTES)


def write_key(path: str) -> None:
    """A new cluster key as a hex line in `path`, created with mode 0600 (atomically)."""
    write_private(path, generate_key().hex().encode() + b"\n")


def load_key(path: str) -> bytes:
    """The cluster key in `path`; ValueError if the file is readable by others or not a key."""
    text = read_private(path).decode("ascii", "replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path}: not a cluster key ({KEY_BYTES} bytes as hex; "
                         "`python -m backend gen-cluster-key`)")
    return key


def _pack_address(host: str, port: int) -> bytes:
    """(socket.inet_pton, not ipaddress: the router does this per packet, ~10× cheaper.)"""
    host = host.split("%")[0]
    try:
        packed = _V4_MAPPED + socket.inet_pton(socket.AF_INET, host)
    except OSError:
        packed = socket.inet_pton(socket.AF_INET6, host)
    return packed + port.to_bytes(2, "big")


def _unpack_address(raw: bytes) -> tuple[str, int]:
    if raw[:12] == _V4_MAPPED:
        host = socket.inet_ntop(socket.AF_INET, raw[12:16])
    else:
        host = socket.inet_ntop(socket.AF_INET6, raw[:16])
    return host, int.from_bytes(raw[16:18], "big")


class Sealer:
    """Builds one sender's datagrams: the router's (to any node) or one node's (to its router)."""

    def __init__(self, key: bytes, sender: int, from_router: bool):
        self._key = key
        self._first = (VERSION << 4) | (_FROM_ROUTER if from_router else 0)
        self._sender = sender.to_bytes(2, "big")
        self._counter = 0

    def _header(self, kind: int, now_us: int) -> bytes:
        self._counter = max(self._counter + 1, now_us)
        return (bytes([self._first | kind]) + self._sender
                + self._counter.to_bytes(8, "big"))

    def _seal(self, body: bytes) -> bytes:
        return body + hmac.digest(self._key, body, "sha256")[:TAG_BYTES]

    def data(self, host: str, port: int, payload: bytes, now_us: int) -> bytes:
        return self._seal(self._header(DATA, now_us) + _pack_address(host, port) + payload)

    def heartbeat(self, now_us: int) -> bytes:
        return self._seal(self._header(HEARTBEAT, now_us))

    def cids(self, message: bytes, now_us: int) -> bytes:
        return self._seal(self._header(CIDS, now_us) + message)


@dataclass(frozen=True)
class Datagram:
    kind: int
    sender: int
    host: str = ""
    port: int = 0
    payload: bytes = b""


@dataclass
class _Window:
    """One sender's recent counters: refused at or below `floor`, or if seen."""

    highest: int = 0
    forgotten: int = 0  # the highest counter evicted for MAX_REMEMBERED
    seen: set[int] = field(default_factory=set)
    order: deque[int] = field(default_factory=deque)

    def accept(self, counter: int) -> str | None:
        """None (new: remembered) or why not ("stale", "replayed")."""
        if counter <= max(self.highest - REORDER_WINDOW_US, self.forgotten):
            return "stale"
        if counter in self.seen:
            return "replayed"
        self.highest = max(self.highest, counter)
        self.seen.add(counter)
        self.order.append(counter)
        floor = self.highest - REORDER_WINDOW_US
        while self.order and (self.order[0] <= floor or len(self.order) > MAX_REMEMBERED):
            old = self.order.popleft()
            self.seen.discard(old)
            if old > floor:
                self.forgotten = max(self.forgotten, old)
        return None


class Opener:
    """Checks datagrams from the other side: `from_router` for a node, not for the router.
    Counts every refusal in `dropped` by reason."""

    def __init__(self, key: bytes, from_router: bool, started_us: int):
        self._key = key
        self._direction = _FROM_ROUTER if from_router else 0
        self.started_us = started_us
        self._windows: dict[int, _Window] = {}
        self.dropped = dict.fromkeys(DROP_REASONS, 0)

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def open(self, datagram: bytes, now_us: int) -> Datagram | None:
        """The datagram's content if it is authentic, fresh and new; else None (counted)."""
        if len(datagram) < HEADER_BYTES + TAG_BYTES or datagram[0] >> 4 != VERSION:
            self.drop("malformed")
            return None
        body, tag = datagram[:-TAG_BYTES], datagram[-TAG_BYTES:]
        if not hmac.compare_digest(hmac.digest(self._key, body, "sha256")[:TAG_BYTES], tag):
            self.drop("bad_tag")
            return None
        if datagram[0] & _FROM_ROUTER != self._direction:
            self.drop("wrong_direction")  # our own kind's datagram reflected back at us
            return None
        kind = datagram[0] & 0x07
        sender = int.from_bytes(body[1:3], "big")
        counter = int.from_bytes(body[3:11], "big")
        if (kind == DATA and len(body) < HEADER_BYTES + ADDRESS_BYTES) or kind > CIDS \
                or (kind == CIDS and self._direction):
            self.drop("malformed")
            return None
        if counter < self.started_us or abs(counter - now_us) > MAX_CLOCK_SKEW_US:
            self.drop("stale")
            return None
        # windows exist only for authenticated senders: at most 65,536 (2-byte ids)
        window = self._windows.get(sender)
        if window is None:
            window = self._windows[sender] = _Window()
        refused = window.accept(counter)
        if refused is not None:
            self.drop(refused)
            return None
        if kind == HEARTBEAT:
            return Datagram(HEARTBEAT, sender)
        if kind == CIDS:
            return Datagram(CIDS, sender, payload=body[HEADER_BYTES:])
        host, port = _unpack_address(body[HEADER_BYTES:HEADER_BYTES + ADDRESS_BYTES])
        return Datagram(DATA, sender, host, port, body[HEADER_BYTES + ADDRESS_BYTES:])


def socket_host(host: str, ipv6_socket: bool) -> str:
    """The address as a socket of that family wants it (dual-stack: IPv4 mapped)."""
    if ipv6_socket and ":" not in host:
        return "::ffff:" + host
    return host
