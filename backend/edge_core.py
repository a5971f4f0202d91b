"""Sans-IO parts of the gateway's UDP edge (backend/gateway_edge.py): the QUIC invariant header
fields the edge routes by, where a connection's peer is (`PeerAddress`), and the admission of
new connections under overload (`Admission`, `initial_refusal`). The connections' timers are
one `TimerWheel` (geostream/timer_wheel.py), shared with the load generator.

`route_header` reads only what RFC 8999 (QUIC's version-independent invariants) fixes: the form
bit, the version, the connection IDs, so the edge can hand a datagram to its connection without
the library's full header parse.
"""

from __future__ import annotations

import collections
import os
import struct
from collections.abc import Callable
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand


class RouteHeader(NamedTuple):
    """What the edge needs of a datagram's first packet to route it."""

    long: bool  # long header (handshake packets, Initial, 0-RTT, version negotiation)
    version: int | None  # None for a short header
    destination_cid: bytes
    source_cid: bytes  # empty for a short header
    initial: bool  # a version-1 Initial packet: may open a connection


# RFC 9000 §17.2: version 1's long-header packet type Initial, bits 4–5 of the first byte
_INITIAL_TYPE = 0
QUIC_V1 = 0x00000001
# RFC 9000 §14.1: a datagram that may open a connection (an Initial, or a packet of another
# version that a Version Negotiation answers) carries at least this many bytes
MIN_INITIAL_BYTES = 1200
# RFC 9000 §17.2: connection IDs in version 1 are at most 20 bytes; RFC 8999 allows 255
MAX_CID_LENGTH = 255


def route_header(data: bytes, short_cid_length: int) -> RouteHeader | None:
    """The invariant header fields of `data`'s first packet (RFC 8999 §5); None when it is
    too short to hold them. A short header's DCID length is the server's own
    (`short_cid_length`): the peer does not send it."""
    if not data:
        return None
    first = data[0]
    if not first & 0x80:
        end = 1 + short_cid_length
        if len(data) < end:
            return None
        return RouteHeader(False, None, data[1:end], b"", False)
    if len(data) < 7:
        return None
    version = int.from_bytes(data[1:5], "big")
    dcid_len = data[5]
    scid_at = 6 + dcid_len
    if len(data) < scid_at + 1:
        return None
    scid_len = data[scid_at]
    if len(data) < scid_at + 1 + scid_len:
        return None
    initial = version == QUIC_V1 and (first & 0x30) >> 4 == _INITIAL_TYPE
    return RouteHeader(True, version, data[6:scid_at], data[scid_at + 1:scid_at + 1 + scid_len],
                       initial)


def version_negotiation(header: RouteHeader, versions: list[int]) -> bytes:
    """A Version Negotiation packet answering `header` (RFC 8999 §6): its connection IDs
    swapped, the versions this server supports."""
    first = 0x80 | (os.urandom(1)[0] & 0x7F)
    return (bytes([first]) + b"\x00\x00\x00\x00"
            + bytes([len(header.source_cid)]) + header.source_cid
            + bytes([len(header.destination_cid)]) + header.destination_cid
            + b"".join(struct.pack("!I", v) for v in versions))


# RFC 9000 §8.1: before an address is validated, a server sends it at most three times the
# bytes it received from it (anti-amplification).
AMPLIFICATION_FACTOR = 3
# Validated addresses a connection remembers (its current one included): a vehicle that
# returns to an uplink it used lately, or a packet reordered across a handover, costs no new
# validation. Bounded: a connection's memory does not grow with its handovers.
MAX_VALIDATED_ADDRESSES = 4


class PeerAddress:
    """Where one connection's peer is, when the edge owns it instead of the QUIC library
    (docs/link.md, QUIC library: qh3's core keeps at most four paths per connection and
    never evicts one). The library always sees the connection's first address; the edge
    sends to `current`, the address of the newest authenticated packet, and keeps RFC 9000
    §8–9's rules for it itself:

    - **anti-amplification**: to an address not validated yet, at most
      `AMPLIFICATION_FACTOR` × the bytes received from it (`allow`);
    - **validation**: an address is validated once the peer acknowledged a packet the edge
      sent only there (`probe_sent`, `probe_settled`): only a peer that received it there
      can acknowledge it, in a packet only the peer can authenticate — what a
      PATH_CHALLENGE/PATH_RESPONSE round proves, without a frame of its own.

    Pure: the caller says what arrived, what the library authenticated and what it sent."""

    __slots__ = ("library_address", "current", "_validated", "_received", "_sent", "_probe")

    def __init__(self, first) -> None:
        self.library_address = first  # what the library knows the peer by, for good
        self.current = first  # where the edge sends
        self._validated: list = [first]  # the newest last; the handshake validated the first
        self._received = 0  # bytes received from `current` while it is not validated
        self._sent = 0  # bytes sent to `current` while it is not validated
        self._probe: tuple[int, int] | None = None  # (packet number, loss count at sending)

    @property
    def validated(self) -> bool:
        return self.current in self._validated

    def arrived(self, addr, size: int, authenticated: bool) -> bool:
        """A datagram of `size` bytes from `addr`, `authenticated` if the library accepted a
        packet of it it had not seen before. Returns True when the edge now sends to `addr`
        (a packet from another address moved the peer, RFC 9000 §9.3)."""
        if addr == self.current:
            if not self.validated:
                self._received += size
            return False
        if not authenticated:  # spoofed, replayed or garbled: the peer is where it was
            return False
        self.current = addr
        self._received, self._sent, self._probe = size, 0, None
        return True

    def allow(self, size: int) -> bool:
        """Whether a datagram of `size` bytes may go to `current` now (counted if so)."""
        if self.validated:
            return True
        if self._sent + size > AMPLIFICATION_FACTOR * self._received:
            return False
        self._sent += size
        return True

    def wants_probe(self) -> bool:
        """Whether the next packet sent to `current` should be its validation probe."""
        return not self.validated and self._probe is None

    def probe_sent(self, packet_number: int, losses: int) -> None:
        """The packet numbered `packet_number` went to `current` only; `losses` is the
        library's count of packets declared lost so far."""
        self._probe = (packet_number, losses)

    def probe_settled(self, outstanding: bool, losses: int) -> bool:
        """What became of the probe: acknowledged (no longer `outstanding` while no loss was
        declared since) validates `current` (returns True); a loss since calls for a new
        probe. Ask before `arrived` with a packet from another address: the packet that
        moves the peer may carry the acknowledgement."""
        if self._probe is None or outstanding:
            return False
        if losses != self._probe[1]:
            self._probe = None  # lost, or unknown which: probe again
            return False
        self._probe = None
        self._validated.append(self.current)
        del self._validated[:-MAX_VALIDATED_ADDRESSES]
        return True

    @property
    def probe(self) -> int | None:
        """The packet number of the probe in flight, if any."""
        return None if self._probe is None else self._probe[0]


# --- admission of new connections under overload (docs/protocol.md §1, overload) -----------

# Connections whose handshake is under way at once: each costs the gateway a TLS handshake
# (a signature, ~1 ms of CPU) and its client's retransmissions while it waits. More than
# this means the gateway is handshaking slower than vehicles arrive; refusing the excess
# lets the ones admitted finish (and send their hello) instead of all of them timing out.
MAX_HANDSHAKES_IN_PROGRESS = 512
# The age of the oldest datagram waiting in the socket at a wakeup (the kernel's receive
# timestamp against now) above which the gateway is behind with the vehicles it already has:
# their acks are this late. New connections are refused until it is back below. A handshake
# and hello pass this queue about three times (Initial, the client's Finished, the hello),
# so one admitted at 2 s still ends within the vehicles' 10 s connect and hello deadlines;
# at 0.5 s, the handshakes of a 20,000-vehicle ramp on a loaded machine were themselves
# enough to refuse most of the ramp (the vehicles then backed off, up to 30 s, while the
# gateway had time to spare).
SHED_QUEUE_DELAY_S = 2.0
# After a sample above SHED_QUEUE_DELAY_S, refuse for at least this long: one quiet wakeup
# in a backlog does not open the door to a burst of handshakes.
SHED_HOLD_S = 1.0
# A handshake stops counting toward MAX_HANDSHAKES_IN_PROGRESS this long after it began: an
# agent gives up a connect after 10 s (agent/uplink.py CONNECT_TIMEOUT_S), so an older one
# is abandoned (its client's last flight or CONNECTION_CLOSE lost, a peer that never
# finishes) and only held the door shut; its connection lives on to its handshake timeout
# (backend/gateway_conn.py HANDSHAKE_TIMEOUT_S) and may still complete. Counted until then,
# 512 abandoned liveness probes made a gateway refuse every reconnect as busy for a minute
# (docs/benchmarks.md, "The vehicles left not drained, session 16").
ABANDONED_AFTER_S = 10.0


# Above this many handshakes in progress, a new connection's Initial without a valid token
# is answered with a Retry (RFC 9000 §8.1.2) instead of a connection: only a client that
# receives at its address comes back, with the token, so spoofed sources take no slot past
# here and the other half stays for validated clients. Half: below it a Retry would only
# cost every connect a round trip (the load tester's ramp keeps ≤ 64 connects in flight, a
# gateway past its knee refuses on its queue delay first); above it the door can still
# fill, but only with clients that prove their address.
RETRY_ABOVE = MAX_HANDSHAKES_IN_PROGRESS // 2
# Handshakes in progress one client address (IP, any port) may hold, for each kind (address
# validated by a Retry token, or not): a host or a NAT that opens handshakes and never
# finishes them holds at most 2 × 64 = 128 of the 512 slots, a quarter. A depot's NAT with
# many vehicles is not hurt: a handshake lasts one to a few round trips (~0.1–0.5 s), so 64
# at once is ~100 connects per second from one address, a whole depot reconnecting within
# seconds; past it its vehicles get a Retry (unvalidated) or `busy` and back off (§8).
MAX_HANDSHAKES_PER_ADDRESS = 64
# The answers to a new connection's Initial (`Admission.decide`).
ADMIT, RETRY, REFUSE = "admit", "retry", "refuse"


def _exempt_loopback(host) -> bool:
    """Loopback peers are exempt from the per-address bound: the gateway's own host (the
    load tester's thousands of vehicles on 127.0.0.1, tests); a hostile peer there has won."""
    return isinstance(host, str) and (host.startswith(("127.", "::ffff:127.")) or host == "::1")


class Handshake:
    """One handshake the admission counts (`Admission.begun`): when it began, whether it
    still counts, and the (address, validated) it counts under."""

    __slots__ = ("began", "counting", "key")

    def __init__(self, began: float, key=None) -> None:
        self.began = began
        self.counting = True
        self.key = key


class Admission:
    """Whether the gateway takes a new connection now (`decide`): not while
    `MAX_HANDSHAKES_IN_PROGRESS` handshakes are under way, nor while datagrams wait in its
    socket longer than `SHED_QUEUE_DELAY_S` (and `SHED_HOLD_S` after); past `RETRY_ABOVE`
    (or its address's `MAX_HANDSHAKES_PER_ADDRESS` unvalidated ones) only with a validated
    address (else a Retry); never past its address's `MAX_HANDSHAKES_PER_ADDRESS` validated
    ones. A handshake stops counting when it completes, when its connection ends, or
    `ABANDONED_AFTER_S` after it began. Pure: the edge reports handshakes begun and ended,
    and the queue delay it measured, each with `now`."""

    __slots__ = ("handshaking", "_counted", "_refuse_until", "refused", "abandoned", "delay",
                 "retried", "retry_above", "per_address", "exempt", "_per_key", "longest_delay")

    def __init__(self, retry_above: int = RETRY_ABOVE,
                 per_address: int = MAX_HANDSHAKES_PER_ADDRESS,
                 exempt: Callable[[object], bool] = _exempt_loopback) -> None:
        self.handshaking = 0  # handshakes that count: begun, not ended, not abandoned
        # the counted handshakes in the order they began (ended ones until they reach the
        # front): the oldest is the next to be abandoned
        self._counted: collections.deque[Handshake] = collections.deque()
        self._refuse_until = float("-inf")
        self.refused = 0  # new connections refused so far
        self.retried = 0  # Initials answered with a Retry so far
        self.abandoned = 0  # handshakes that stopped counting at ABANDONED_AFTER_S
        self.delay = 0.0  # the latest queue delay measured (seconds)
        self.longest_delay = 0.0  # the longest measured so far
        self.retry_above = retry_above
        self.per_address = per_address
        self.exempt = exempt  # hosts the per-address bound does not apply to
        # handshakes counting per (host, validated); a key leaves at 0 (≤ 512 keys)
        self._per_key: dict[tuple, int] = {}

    def queue_delay(self, delay: float, now: float) -> None:
        """The oldest datagram waiting at a wakeup at `now` had waited `delay` seconds."""
        self.delay = delay
        if delay > self.longest_delay:
            self.longest_delay = delay
        if delay > SHED_QUEUE_DELAY_S:
            self._refuse_until = now + SHED_HOLD_S

    def decide(self, now: float, host=None, validated: bool = True) -> str:
        """What to answer at `now` a new connection's Initial from `host` (None: no
        per-address bound), `validated` if it brought a valid Retry token: `ADMIT`, `RETRY`
        or `REFUSE` (busy); a refusal and a Retry are counted."""
        self._expire(now)
        if self.handshaking >= MAX_HANDSHAKES_IN_PROGRESS or now < self._refuse_until:
            self.refused += 1
            return REFUSE
        bounded = host is not None and not self.exempt(host)
        if validated:
            if bounded and self._per_key.get((host, True), 0) >= self.per_address:
                self.refused += 1
                return REFUSE
            return ADMIT
        if self.handshaking >= self.retry_above or (
                bounded and self._per_key.get((host, False), 0) >= self.per_address):
            self.retried += 1
            return RETRY
        return ADMIT

    def admit(self, now: float) -> bool:
        """Whether a new connection with a validated address may open at `now`, without a
        per-address bound (counted as refused if not)."""
        return self.decide(now) == ADMIT

    def begun(self, now: float, host=None, validated: bool = True) -> Handshake:
        """A new connection's handshake from `host` began at `now` (times never decrease)."""
        self._expire(now)
        key = None
        if host is not None and not self.exempt(host):
            key = (host, validated)
            self._per_key[key] = self._per_key.get(key, 0) + 1
        handshake = Handshake(now, key)
        self._counted.append(handshake)
        self.handshaking += 1
        return handshake

    def ended(self, handshake: Handshake) -> None:
        """`handshake` completed, or its connection ended before it did."""
        if handshake.counting:
            self._uncount(handshake)

    def _uncount(self, handshake: Handshake) -> None:
        handshake.counting = False
        self.handshaking -= 1
        key = handshake.key
        if key is not None:
            left = self._per_key[key] - 1
            if left:
                self._per_key[key] = left
            else:
                del self._per_key[key]

    def _expire(self, now: float) -> None:
        """Drop the ended handshakes at the front, and stop counting those older than
        ABANDONED_AFTER_S."""
        counted, horizon = self._counted, now - ABANDONED_AFTER_S
        while counted and (not counted[0].counting or counted[0].began <= horizon):
            handshake = counted.popleft()
            if handshake.counting:
                self._uncount(handshake)
                self.abandoned += 1


# --- address validation: Retry tokens (RFC 9000 §8.1.2–8.1.4) ----------------------------

# A Retry token is accepted this long after it was issued: the client answers a Retry at
# once (one round trip), but a gateway that is behind reads its socket up to
# SHED_QUEUE_DELAY_S late before it sheds, and the client's Initial may be lost once and
# sent again (its first probe timeout, ~1 s). Short: a captured token is worth little.
RETRY_TOKEN_LIFETIME_S = 5.0
# RFC 9000 §20.1: INVALID_TOKEN, the close of an Initial whose token is not valid (§8.1.3)
INVALID_TOKEN = 0x0B
INVALID_TOKEN_REASON = b"invalid token"
_TOKEN_NONCE = 12
_TOKEN_TIME = struct.Struct("!d")
_TOKEN_TAG = 16


class RetryTokens:
    """Stateless Retry tokens of one gateway process: sealed (AES-128-GCM under a key drawn
    at start) over the time issued and the original destination CID, bound to the client's
    IP address and to the Retry's source CID (the DCID of the client's next Initial), so a
    token is worth nothing from another address, for another connection or after
    `RETRY_TOKEN_LIFETIME_S`. 56 bytes with an 8-byte CID. Pure: the caller gives `now` (the
    edge's clock, one per process: a Retry's answer comes back to the process that sent it,
    since its source CID routes there)."""

    __slots__ = ("_aead", "lifetime")

    def __init__(self, key: bytes | None = None, lifetime: float = RETRY_TOKEN_LIFETIME_S):
        self._aead = AESGCM(key or AESGCM.generate_key(bit_length=128))
        self.lifetime = lifetime

    @staticmethod
    def _bound(host, retry_cid: bytes) -> bytes:
        return str(host).encode() + b"\x00" + retry_cid

    def seal(self, host, original_dcid: bytes, retry_cid: bytes, now: float) -> bytes:
        """The token of a Retry from `retry_cid` to `host`, for the connection the client
        opened with `original_dcid`, issued at `now`."""
        nonce = os.urandom(_TOKEN_NONCE)
        return nonce + self._aead.encrypt(nonce, _TOKEN_TIME.pack(now) + original_dcid,
                                          self._bound(host, retry_cid))

    def open(self, token: bytes, host, dcid: bytes, now: float) -> bytes | None:
        """The original destination CID of a valid `token` in an Initial from `host` to
        `dcid` at `now`; None if it is not one (forged, another address or connection,
        expired)."""
        if len(token) < _TOKEN_NONCE + _TOKEN_TIME.size + _TOKEN_TAG:
            return None
        try:
            plain = self._aead.decrypt(token[:_TOKEN_NONCE], token[_TOKEN_NONCE:],
                                       self._bound(host, dcid))
        except InvalidTag:
            return None
        (issued,) = _TOKEN_TIME.unpack_from(plain)
        if not issued <= now <= issued + self.lifetime:
            return None
        return plain[_TOKEN_TIME.size:]


# RFC 9000 §20.1: the server refuses to accept a new connection
CONNECTION_REFUSED = 0x02
# The reason phrase of a refusal for overload; the agent backs off before it tries again
# (docs/protocol.md §1).
BUSY_REASON = b"busy: retry later"
# RFC 9001 §5.2: the salt of QUIC version 1's Initial secrets
_INITIAL_SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
# RFC 9000 §19.19: CONNECTION_CLOSE of the transport (the only kind allowed in Initials)
_CONNECTION_CLOSE = 0x1C
# the refusal's packet number length (bytes); its packet number is 0
_PN_LENGTH = 2
# the connection ID the refusal gives as the server's (never used again)
_REFUSAL_SCID_LENGTH = 8


def _hkdf_expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    """TLS 1.3's HKDF-Expand-Label with an empty context (RFC 8446 §7.1), SHA-256."""
    full = b"tls13 " + label
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    return HKDFExpand(hashes.SHA256(), length, info).derive(secret)


def _varint(value: int) -> bytes:
    """A QUIC variable-length integer (RFC 9000 §16), values below 2^30."""
    if value < 0x40:
        return bytes([value])
    if value < 0x4000:
        return struct.pack("!H", 0x4000 | value)
    return struct.pack("!I", 0x80000000 | value)


def initial_refusal(header: RouteHeader, reason: bytes = BUSY_REASON,
                    error_code: int = CONNECTION_REFUSED) -> bytes:
    """A server Initial packet that refuses the connection `header`'s Initial opens:
    CONNECTION_CLOSE with CONNECTION_REFUSED (RFC 9000 §10.2.3, §20.1), protected with the
    Initial keys both ends derive from the client's destination CID (RFC 9001 §5.2), so the
    client ends its attempt at once instead of retransmitting into a gateway that is behind.
    No connection state and no TLS: ~30 µs, against a handshake's signature. Both QUIC
    libraries end their connection attempt on it (tests/unit/backend/test_edge_core.py).

    Hand-written: neither library builds a packet without a connection, and a connection
    would parse the ClientHello and answer it, the work this refusal avoids."""
    initial = HMAC(_INITIAL_SALT_V1, hashes.SHA256())
    initial.update(header.destination_cid)
    secret = _hkdf_expand_label(initial.finalize(), b"server in", 32)
    key = _hkdf_expand_label(secret, b"quic key", 16)
    iv = _hkdf_expand_label(secret, b"quic iv", 12)
    hp = _hkdf_expand_label(secret, b"quic hp", 16)
    frame = (bytes([_CONNECTION_CLOSE]) + _varint(error_code) + _varint(0)
             + _varint(len(reason)) + reason)
    scid = os.urandom(_REFUSAL_SCID_LENGTH)
    length = _PN_LENGTH + len(frame) + 16  # packet number, payload, AEAD tag
    head = (bytes([0xC0 | (_PN_LENGTH - 1)]) + struct.pack("!I", QUIC_V1)
            + bytes([len(header.source_cid)]) + header.source_cid
            + bytes([len(scid)]) + scid + _varint(0) + _varint(length))
    pn_offset = len(head)
    head += bytes(_PN_LENGTH)  # packet number 0: the nonce is the IV itself
    packet = bytearray(head + AESGCM(key).encrypt(iv, frame, head))
    # RFC 9001 §5.4: header protection, sampled 4 bytes after the packet number's start
    encryptor = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
    mask = encryptor.update(bytes(packet[pn_offset + 4:pn_offset + 20])) + encryptor.finalize()
    packet[0] ^= mask[0] & 0x0F
    for i in range(_PN_LENGTH):
        packet[pn_offset + i] ^= mask[1 + i]
    return bytes(packet)
