"""The gateway's UDP edge: every connection's datagrams in and out, and their timers.

It replaces the QUIC library's asyncio server and per-connection protocol (`QuicServer`,
`QuicConnectionProtocol`, whose cost per reading was measured in docs/benchmarks.md, "The
gateway's UDP edge"): there, every datagram was one `datagram_received` callback followed by
a `transmit` (a packet-building pass that found nothing to send after most receives, since
ACKs wait for the geostream ack), every other send a `transmit` of its own, and every
connection one asyncio timer re-armed on each of them. Here:

- `UdpEdge`: one `add_reader` callback drains the socket until EAGAIN, at most
  `MAX_DATAGRAMS_PER_WAKEUP` per wakeup so that one flood cannot starve the loop, by batch
  reads where the library has one (qh3: `recvmmsg`), else a `recvfrom` per datagram;
- `EdgeServer`: routes each datagram to its connection by destination CID (new ones by their
  Initial), and transmits **once per dirty connection per event-loop tick**, all the tick's
  datagrams handed to the socket together; after a receive that does not need an answer at
  once, the transmit waits up to `RECEIVE_FLUSH_DELAY_S` for the geostream ack it will carry;
- one `TimerWheel` for all connections' timers (geostream/timer_wheel.py, slots of
  `TIMER_TICK_S`: a timer that moves later files nothing), the receive-flushes in a FIFO, and
  one loop timer for the earliest of both, re-armed only when that moved earlier;
- an established connection's datagram from its peer's validated address goes through the
  library's `receive_established` (qh3) into `quic_event_received` in one frame, without the
  library's event queue or the edge's address bookkeeping, which runs only when the address
  is not that one (docs/benchmarks.md, "The gateway's transport path, session 11").

The QUIC connection itself is the library's sans-IO `QuicConnection` (geostream/quic/), so
path validation (migration, NAT rebinding), 0-RTT, CID issue and retirement and the ACK
rules stay the library's. `EdgeServer` has `QuicServer`'s asyncio face
(`connection_made(transport)`, `datagram_received`, `close`), so a cluster node's tunnel
endpoint (backend/cluster/edge.py) feeds it like the library's server.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

from geostream.timer_wheel import TimerWheel

from .edge_core import (
    BUSY_REASON,
    CONNECTION_REFUSED,
    INVALID_TOKEN,
    INVALID_TOKEN_REASON,
    MIN_INITIAL_BYTES,
    REFUSE,
    RETRY,
    Admission,
    Handshake,
    PeerAddress,
    RetryTokens,
    initial_refusal,
    route_header,
    version_negotiation,
)
from .edge_intake import HandshakeIntake, RefusalCache
from .quic_tuning import ACK_DELAY_S

log = logging.getLogger("backend.gateway")

# Datagrams read per readable-socket wakeup before the loop runs its other callbacks (acks,
# timers, other sockets): at ~0.1–0.3 ms of work each, ~10–20 ms per wakeup at most, so one
# sender's flood delays everyone else's work by one such slice, never until it stops.
MAX_DATAGRAMS_PER_WAKEUP = 64
# Datagrams one read returns at most: qh3's `recvmmsg` batch (`UdpSocketState.recv`), and
# the plain reader's. A shorter read found the socket empty: the wakeup ends there, without
# the read that would only say so (the socket's next datagram wakes the loop again). A wakeup
# reads again only while a whole batch fits in what is left of MAX_DATAGRAMS_PER_WAKEUP.
READ_BATCH = 32
# Connections transmitted per loop callback (`EdgeServer._flush`, and the deadlines and
# receive-flushes one `_wake` handles): at ~20–40 µs each (a packet built and handed to the
# socket), ~5–10 ms per callback. The rest go in the next callback, after what the loop has
# ready meanwhile (a socket drain, a commit's acks), first come first served: a backlog of
# thousands (a commit's acks, the receive-flushes that came due in a stall) is never one
# callback of hundreds of ms that every other vehicle waits for.
MAX_TRANSMITS_PER_CALLBACK = 256
# The connections' timers are served in slots this long (`TimerWheel`): a QUIC timer fires at
# most this much late, never early (below what any of them is: the gateway's probe timeouts
# include its vehicles' max_ack_delay, ≥ 25 ms; its ACKs are held 400 ms), and the deadlines
# of a slot, however many connections, are one loop-timer wakeup (at most 1 / TIMER_TICK_S a
# second). A heap per deadline cost 2–3× as much per move, and rebuilds (docs/benchmarks.md,
# "The gateway's transport edge, session 13").
TIMER_TICK_S = 0.005
# Largest datagram read: QUIC's maximum UDP payload (RFC 9000 §18.2 max_udp_payload_size).
MAX_DATAGRAM_BYTES = 65527
# A receive after the handshake that needs no answer at once (the QUIC ACK waits for the
# geostream ack, ACK_DELAY_S) transmits at the latest this much later: a commit's ack usually
# carries whatever it produced (PATH_CHALLENGE, MAX_DATA, a retransmission) before that, and
# nothing waits longer than an ACK may already wait (the max_ack_delay the gateway advertises).
RECEIVE_FLUSH_DELAY_S = ACK_DELAY_S
# Datagrams kept while the socket's send buffer is full (EAGAIN), then dropped: QUIC
# retransmits what is lost, and memory stays bounded (~1,500 bytes each).
SEND_QUEUE_MAX = 8192
# Linux's SO_TIMESTAMP (asm-generic, x86-64 and arm64; Python does not name it): every datagram
# carries its arrival time, read for the first datagram of a wakeup only (`UdpEdge`, at most
# every `LAG_SAMPLE_INTERVAL_S`), which tells how long the oldest waiting datagram waited: the
# gateway's lag (`Admission`).
SO_TIMESTAMP = 29
# At most one wakeup in this long reads its first datagram with its arrival time (a
# `recvmsg` and its control message, against a plain `recvfrom`): the lag it samples matters
# above `SHED_QUEUE_DELAY_S` (2 s), so a sample every 50 ms answers as fast as one per wakeup.
LAG_SAMPLE_INTERVAL_S = 0.05
_TIMEVAL = struct.Struct("@ll")
# Room for a stamped read's control messages: the timestamp, and those a batch reader's socket
# options add to every `recvmsg` (qh3's: packet info, TOS), so the timestamp is never cut off.
_CONTROL_SPACE = 256


class EdgeConnection:
    """One QUIC connection at the edge: its sans-IO `QuicConnection` (`_quic`), its events,
    `transmit` (queued for the end of the tick). Subclasses handle `quic_event_received`."""

    def __init__(self, quic, edge: EdgeServer):
        self._quic = quic
        self._edge = edge
        self._lib = edge.lib
        self._handshaken = False
        # its handshake as the admission counts it (`EdgeServer._open`), until it ends
        self._admitted: Handshake | None = None
        self._terminated = False
        self._dirty = False
        # the peer's address when the edge owns it (the library's adapter says whether):
        # set by the first datagram
        self._peer: PeerAddress | None = None
        self._owns_address = edge.lib.EDGE_OWNS_PEER_ADDRESS
        # the CIDs the edge routes to this connection: forgotten with it without a walk over
        # every connection's (at 20,000 connections that walk took milliseconds per close);
        # a list: it holds 2 to ~10 and changes only when a CID is issued or retired (an
        # empty set is 216 bytes per connected vehicle, a list of two 72)
        self._cids: list[bytes] = []
        # the time this connection's receive-flush is due (`EdgeServer.flush_later`), if any
        self._flush_at: float | None = None
        # the library's receive for an established connection, and the one address it is
        # taken for (the peer's, validated, no probe in flight): see `datagram_received`
        self._receive_established = getattr(edge.lib, "receive_established", None)
        self._settled_address = None

    def peer_address(self):
        """Where the connection sends now (after a migration: the peer's new address)."""
        if self._peer is not None:
            return self._peer.current
        return self._lib.peer_address(self._quic)

    def quic_event_received(self, event) -> None:
        """A QUIC event of this connection (after the edge's own bookkeeping)."""

    def transmit(self) -> None:
        """Send what the connection has to send: at the end of this event-loop tick, once
        for everything queued on it in the tick."""
        if not self._dirty and not self._terminated:
            self._dirty = True
            self._edge.dirty(self)

    def close(self, error_code: int = 0, reason_phrase: str = "") -> None:
        """Close the connection: what was queued on it leaves first (a closing connection
        sends only its CONNECTION_CLOSE), then the close at the end of the tick."""
        if self._dirty:
            self._edge.transmit_now(self)
        self._quic.close(error_code=error_code, reason_phrase=reason_phrase)
        self.transmit()

    def datagram_received(self, data: bytes, addr, now: float) -> None:
        if addr == self._settled_address:  # None once terminated (`_event`)
            # the common case: an established connection, its peer where it was; the library's
            # receive hands the stream data back at once (one Python frame for the datagram,
            # no event queue; docs/benchmarks.md, "The gateway's transport path, session 11")
            events = self._receive_established(self._quic, data, self._peer.library_address,
                                               now)
            if events is not None:
                data_event = self._lib.StreamDataReceived
                for event in events:
                    if type(event) is data_event:
                        self.quic_event_received(event)
                    else:
                        self._event(event)
                if not self._dirty and self._flush_at is None and not self._terminated:
                    self._edge.flush_later(self, now)
                return
        if self._terminated:
            return
        quic = self._quic
        if self._owns_address:
            self._receive_following(data, addr, now)
        else:
            quic.receive_datagram(data, addr, now=now)
        before = self._handshaken
        self._process_events()
        self._settle_address()
        if before and self._handshaken:  # the ACK waits; a commit's ack will carry it
            if not self._dirty and self._flush_at is None:
                self._edge.flush_later(self, now)
        else:  # handshake flights leave at once, each after the datagram that asked for it
            self._edge.transmit_now(self)

    def _settle_address(self) -> None:
        """Whether the next datagram from the peer's address may take the established path:
        handshake done, the edge owns the address and the library receives without it, the
        address validated and no probe of it in flight."""
        peer = self._peer
        self._settled_address = (
            peer.current if (peer is not None and self._handshaken and not self._terminated
                             and self._receive_established is not None
                             and peer.probe is None and peer.validated) else None)

    def _receive_following(self, data: bytes, addr, now: float) -> None:
        """Receive with the edge owning the peer's address (`PeerAddress`): the library
        sees the connection's first address only."""
        quic, peer, lib = self._quic, self._peer, self._lib
        if peer is None:
            peer = self._peer = PeerAddress(addr)
        if addr == peer.current:
            peer.arrived(addr, len(data), True)
            quic.receive_datagram(data, peer.library_address, now=now)
            self._settle_probe()
        elif not self._handshaken:
            # RFC 9000 §9: a server may drop packets from a new address before the
            # handshake is confirmed (a server confirms it at completion)
            self._edge.stats["dropped_before_handshake"] += 1
        else:
            accepted = lib.receive_authenticated(quic, data, peer.library_address, now)
            self._settle_probe()  # the packet that moves the peer may acknowledge the probe
            if peer.arrived(addr, len(data), accepted > 0):
                self._edge.stats["peer_moved"] += 1
                if not peer.validated:
                    self._new_destination_cid()
                # the ACK of the packet that moved the peer is not held for a commit: the
                # vehicle learns its new path works (and the edge's validation probe, the
                # next ack-eliciting packet sent there, goes with it) within this tick
                lib.ack_with_data(quic)
                self.transmit()

    def _settle_probe(self) -> None:
        peer = self._peer
        if peer is not None and peer.probe is not None:
            lib, quic = self._lib, self._quic
            if peer.probe_settled(lib.packet_outstanding(quic, peer.probe),
                                  lib.packets_lost(quic)):
                self._edge.stats["peer_address_validated"] += 1

    def _new_destination_cid(self) -> None:
        """Toward a new address, a CID of the peer's not used on another one (RFC 9000 §9.5:
        the library, which does not see the move, would keep the old one). Without a spare
        CID the old one stays (as after a NAT rebinding, which §9.5 allows)."""
        try:
            self._quic.change_connection_id()
        except Exception as exc:  # no unused CID of the peer's, or a datagram pending
            self._edge.stats["cid_kept_on_move"] += 1
            log.debug("destination CID kept on a move: %s", exc)

    def outgoing(self, datagrams: list) -> list:
        """The library's datagrams, addressed where the peer is when the edge owns its
        address; toward an address not validated yet, within the anti-amplification
        budget (the rest is dropped: QUIC retransmits it)."""
        peer = self._peer
        if peer is None or not datagrams:
            return datagrams
        current = peer.current
        if peer.validated:
            return [(data, current) for data, _ in datagrams]
        out = []
        for i, (data, _) in enumerate(datagrams):
            if not peer.allow(len(data)):
                self._edge.stats["amplification_dropped"] += len(datagrams) - i
                return out  # and no probe: the newest packet did not leave
            out.append((data, current))
        if out and peer.wants_probe():
            newest = self._lib.newest_packet_sent(self._quic)
            if newest is not None:
                peer.probe_sent(newest, self._lib.packets_lost(self._quic))
        return out

    def wake(self, now: float) -> None:
        """Its deadline came: the library's timer if due, then a transmit (which re-arms)."""
        if self._terminated:
            return
        quic = self._quic
        timer = quic.get_timer()
        if timer is not None and timer <= now:
            quic.handle_timer(now=now)
            self._process_events()
        self.transmit()

    def _process_events(self) -> None:
        quic, event_received = self._quic, self.quic_event_received
        data_event = self._lib.StreamDataReceived  # most events: the edge has nothing to do
        while (event := quic.next_event()) is not None:
            if type(event) is data_event:
                event_received(event)
            else:
                self._event(event)

    def _event(self, event) -> None:
        """The edge's bookkeeping for an event other than stream data, then the subclass's."""
        lib, edge = self._lib, self._edge
        if isinstance(event, lib.ConnectionIdIssued):
            edge.register_cid(event.connection_id, self)
        elif isinstance(event, lib.ConnectionIdRetired):
            edge.retire_cid(event.connection_id, self)
        elif isinstance(event, lib.HandshakeCompleted):
            self._handshaken = True
            if self._admitted is not None:
                edge.admission.ended(self._admitted)
                self._admitted = None
        elif isinstance(event, lib.ConnectionTerminated):
            if self._admitted is not None:
                edge.admission.ended(self._admitted)
                self._admitted = None
            self._terminated = True
            self._settled_address = None
            edge.forget(self)
        self.quic_event_received(event)


class EdgeServer:
    """All connections of one gateway socket: routing by destination CID, new connections,
    the per-tick transmit of dirty connections, one timer wheel."""

    def __init__(self, lib, *, configuration, create_protocol: Callable[..., EdgeConnection],
                 session_ticket_fetcher=None, session_ticket_handler=None):
        self.lib = lib
        self._configuration = configuration
        self._cid_length = configuration.connection_id_length
        self._versions = list(configuration.supported_versions)
        self._create_protocol = create_protocol
        self._ticket_fetcher = session_ticket_fetcher
        self._ticket_handler = session_ticket_handler
        self._loop = asyncio.get_running_loop()
        self._transport: Any = None
        self._connections: dict[bytes, EdgeConnection] = {}
        self._dirty: collections.deque[EdgeConnection] = collections.deque()  # FIFO
        self._flush_handle: asyncio.Handle | None = None
        self.timers = TimerWheel(TIMER_TICK_S)
        # receive-flushes in the order they are due (all `RECEIVE_FLUSH_DELAY_S` after their
        # receive, so a FIFO): (when, connection); an entry is live while the connection's
        # `_flush_at` is its time (a transmit clears it)
        self._flush_queue: collections.deque = collections.deque()
        # the bound of one callback's transmits (bench/bench_edge_backlog.py compares it with
        # none)
        self.transmits_per_callback = MAX_TRANSMITS_PER_CALLBACK
        self._wake_handle: asyncio.TimerHandle | None = None
        self._wake_at: float | None = None
        self._closed = False
        self._now = 0.0  # the latest time handed to a connection (`clock`)
        self.stats = collections.Counter()  # datagrams in/out, transmits, unroutable, …
        # new connections refused while the gateway is behind (docs/protocol.md §1, overload)
        self.admission = Admission()
        # address validation under pressure: the Retry tokens, and the source CID of a Retry
        # (a cluster node's and a `--reuseport` worker's carry their server id, so the
        # client's next Initial routes back here: backend/gateway.py)
        self.tokens = RetryTokens()
        self.retry_cid: Callable[[], bytes] = lambda: os.urandom(self._cid_length)
        # a `--reuseport` worker's CID relay (backend/cluster/relay_edge.py), else None: told
        # of the CIDs issued and retired here, handed the datagrams of CIDs not here
        self.relay = None
        # the library's poll of a connection's datagrams to one address (qh3: its core
        # straight into the list sent), else the generic poll and readdressing
        self._datagrams_to = getattr(lib, "datagrams_to", None) or _datagrams_to
        # the Initials of new connections a socket read found, handshaken after the read's
        # established datagrams, within a share of the loop while it is behind
        # (backend/edge_intake.py); whether the latest read left datagrams in the socket
        self.intake = HandshakeIntake()
        self._behind = False
        self._intake_handle: asyncio.Handle | None = None
        # refusals by connection attempt: a retransmitted Initial gets the same bytes
        self.refusals = RefusalCache()

    # --- asyncio face (as the library's QuicServer) -------------------------------------

    def connection_made(self, transport) -> None:
        self._transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        """One datagram (a tunnel endpoint's or a test's); a socket uses `receive` per
        datagram and one `flush_soon` per drain."""
        self.receive(data, addr, self._loop.time())

    def clock(self, now: float | None = None) -> float:
        """The edge's time: `now` (else the loop's), never earlier than a time the edge
        already gave a connection. A QUIC library stamps what it sends with the time of the
        call; an ACK of it handed over with an earlier time is a negative RTT, which qh3's
        core answers by closing the connection (PROTOCOL_VIOLATION "InvalidTime"). Times
        come from several places (a socket drain, a deadline, a handshake's immediate
        transmit), so the edge keeps them in order itself."""
        if now is None:
            now = self._loop.time()
        if now < self._now:
            return self._now
        self._now = now
        return now

    def close(self) -> None:
        """Close every connection (their CONNECTION_CLOSE leaves now) and the socket."""
        for conn in set(self._connections.values()):
            if not conn._terminated:
                conn.close()
        self._flush(limit=sys.maxsize)
        self._closed = True
        self._connections.clear()
        if self.relay is not None:
            self.relay.close()
        for handle in (self._flush_handle, self._wake_handle, self._intake_handle):
            if handle is not None:
                handle.cancel()
        if self._transport is not None:
            self._transport.close()

    # --- in --------------------------------------------------------------------------------

    def receive(self, data: bytes, addr, now: float) -> None:
        """Hand `data` to its connection (a new one for a valid Initial); unroutable
        datagrams are dropped (counted)."""
        self.stats["datagrams_in"] += 1
        now = self.clock(now)
        if data and not data[0] & 0x80:  # a short header (most): routed by its DCID alone
            end = 1 + self._cid_length
            conn = self._connections.get(data[1:end]) if len(data) >= end else None
            if conn is not None:
                conn.datagram_received(data, addr, now)
                return
        self._route(data, addr, now)

    def receive_many(self, datagrams: list, now: float) -> None:
        """`receive` for each `(data, addr)` of one socket read, all of which had arrived by
        `now` (the read's time; a connection's receive that sent meanwhile moves the time on,
        `clock`)."""
        stats = self.stats
        stats["datagrams_in"] += len(datagrams)
        now = self.clock(now)
        get, end = self._connections.get, 1 + self._cid_length
        for data, addr in datagrams:
            if now < self._now:
                now = self._now
            # a short header (most): routed by its DCID alone
            if (len(data) >= end and not data[0] & 0x80
                    and (conn := get(data[1:end])) is not None):
                conn.datagram_received(data, addr, now)
            else:
                self._route(data, addr, now, True)

    def _route(self, data: bytes, addr, now: float, defer: bool = False) -> None:
        """A datagram that is not a short header of a known CID: its invariant header read,
        a new connection for a valid Initial (`defer`: after the read's other datagrams, by
        the intake), the rest answered or dropped (counted)."""
        header = route_header(data, self._cid_length)
        if header is None:
            self.stats["malformed"] += 1
            return
        conn = self._connections.get(header.destination_cid)
        if conn is None and header.long:
            if header.destination_cid in self.intake:  # its connection's Initial waits there
                self.intake.offer((data, header, addr), header.destination_cid, now)
                return
            if header.version == 0:  # a Version Negotiation packet: never answered
                return
            if header.version not in self._versions:
                # RFC 9000 §6.1, §14.1: only a datagram that could open a connection gets
                # one, so a spoofed source is sent far less than was sent in its name (an
                # agent's liveness probe, docs/protocol.md §8, is such a datagram)
                if len(data) >= MIN_INITIAL_BYTES:
                    self.stats["version_negotiation"] += 1
                    self._send([(version_negotiation(header, self._versions), addr)])
                else:
                    self.stats["version_negotiation_too_short"] += 1
                return
            # RFC 9000 §14.1: an Initial opening a connection fills at least 1,200 bytes
            if header.initial and len(data) >= MIN_INITIAL_BYTES:
                refusal = self.refusals.refused(
                    (header.destination_cid, header.source_cid, BUSY_REASON))
                if refusal is not None:  # an attempt refused busy: its Initial again
                    self.stats["refused_busy"] += 1
                    self._send([(refusal, addr)])
                    return
                if defer:
                    pushed = self.intake.offer((data, header, addr), header.destination_cid, now)
                    if pushed is not None:
                        self.stats["refused_intake_full"] += 1
                        self._refuse(pushed[0][1], pushed[0][2])
                    return
                conn = self._intake(data, header, addr, now)
                if conn is None:
                    return
        if conn is None:
            if not (self.relay is not None and not header.long
                    and self.relay.forward(data, header.destination_cid, addr, now)):
                self.stats["unroutable"] += 1
            return
        conn.datagram_received(data, addr, now)

    def _intake(self, data: bytes, header, addr, now: float) -> EdgeConnection | None:
        """A new connection's Initial: a connection if the admission takes it, else a Retry
        or a refusal sent (docs/protocol.md §1, overload; backend/edge_core.py
        `Admission`, `RetryTokens`)."""
        host, retry_cid = addr[0], None
        token = self.lib.initial_token(data, self._cid_length)
        original_dcid = header.destination_cid
        if token:
            original_dcid = self.tokens.open(token, host, header.destination_cid, now)
            if original_dcid is None:
                self.stats["invalid_token"] += 1
                self._refuse(header, addr, INVALID_TOKEN_REASON, INVALID_TOKEN)
                return None
            retry_cid = header.destination_cid
        decision = self.admission.decide(now, host, validated=retry_cid is not None)
        if decision == RETRY:
            self.stats["retry"] += 1
            cid = self.retry_cid()
            self._send([(self.lib.retry_packet(
                header.version, cid, header.source_cid, header.destination_cid,
                self.tokens.seal(host, header.destination_cid, cid, now)), addr)])
            return None
        if decision == REFUSE:
            self.stats["refused_busy"] += 1
            self._refuse(header, addr)
            return None
        return self._open(original_dcid, now, host, retry_cid)

    def _refuse(self, header, addr, reason: bytes = BUSY_REASON,
                error_code: int = CONNECTION_REFUSED) -> None:
        """Refuse the connection attempt `header`'s Initial opens (the same bytes for its
        retransmitted Initials: `RefusalCache`)."""
        packet = self.refusals.get(
            (header.destination_cid, header.source_cid, reason),
            lambda: initial_refusal(header, reason, error_code))
        self._send([(packet, addr)])

    def reads_done(self, behind: bool) -> None:
        """A socket wakeup's reads are over; `behind`: datagrams still wait in the socket.
        The Initials they found are handshaken after what the loop has ready (the transmits
        of the datagrams read)."""
        self._behind = behind
        if self.intake and not self._closed:
            if self._intake_handle is not None:
                self._intake_handle.cancel()
            self._intake_handle = self._loop.call_soon(self._serve_intake)

    def _serve_intake(self) -> None:
        """The intake's Initials: those that waited too long refused `busy`, then handshakes
        while the intake's budget allows (all when the gateway is not behind); the rest at
        the intake's next moment, or with the next read."""
        self._intake_handle = None
        intake, stats = self.intake, self.stats
        now = self.clock()
        for (_, header, addr), *_ in intake.expired(now):
            stats["refused_intake_wait"] += 1
            self._refuse(header, addr)
        clock = time.perf_counter
        while (items := intake.take(now, self._behind)) is not None:
            began = clock()
            for data, _, addr in items:  # the opening Initial first, then the rest of its flight
                self._route(data, addr, now)
            intake.spent(clock() - began)
            now = self.clock()
        self.flush_soon()
        when = intake.ready_at(now)
        if when is not None and not self._closed:
            self._intake_handle = self._loop.call_at(max(when, now), self._serve_intake)

    def totals(self) -> str:
        """The edge's counts so far, for one line at stop: what came in, what new
        connections were answered, what was shed (docs/protocol.md §1, overload)."""
        s, a, i = self.stats, self.admission, self.intake
        return (f"datagrams in {s['datagrams_in']} out {s['datagrams_out']}; "
                f"new connections {s['opened']} opened, {s['retry']} Retry, "
                f"{s['refused_busy']} refused busy by the admission, "
                f"{s['refused_intake_wait']} busy after {i.max_wait:.0f} s in the intake, "
                f"{s['refused_intake_full']} busy from a full intake, "
                f"{s['invalid_token']} invalid token, {self.refusals.reused} refusals repeated; "
                f"{a.abandoned} handshakes abandoned; intake longest wait {i.longest_wait:.2f} s, "
                f"{i.repeated} repeated Initials dropped; longest queue delay sampled "
                f"{a.longest_delay:.2f} s; unroutable {s['unroutable']}, send dropped "
                f"{s['send_dropped']}, amplification dropped {s['amplification_dropped']}")

    def _open(self, original_dcid: bytes, now: float, host=None,
              retry_cid: bytes | None = None) -> EdgeConnection:
        """A new connection; `retry_cid`: the source CID of the Retry its client followed
        (then its Initials come to that CID, not to `original_dcid`)."""
        quic = self.lib.QuicConnection(
            configuration=self._configuration,
            original_destination_connection_id=original_dcid,
            retry_source_connection_id=retry_cid,
            session_ticket_fetcher=self._ticket_fetcher,
            session_ticket_handler=self._ticket_handler)
        conn = self._create_protocol(quic, self)
        for cid in (retry_cid or original_dcid, quic.host_cid):
            self._connections[cid] = conn
            if cid not in conn._cids:
                conn._cids.append(cid)
        conn._admitted = self.admission.begun(now, host, retry_cid is not None)
        self.stats["opened"] += 1
        return conn

    def register_cid(self, cid: bytes, conn: EdgeConnection) -> None:
        self._connections[cid] = conn
        if cid not in conn._cids:
            conn._cids.append(cid)
        if self.relay is not None:
            self.relay.issued(cid)

    def retire_cid(self, cid: bytes, conn: EdgeConnection) -> None:
        if cid in conn._cids:
            conn._cids.remove(cid)
        if self._connections.get(cid) is conn:
            del self._connections[cid]
            if self.relay is not None:
                self.relay.retired(cid)

    def forget(self, conn: EdgeConnection) -> None:
        """A terminated connection: its CIDs route nowhere, its timer is gone."""
        for cid in conn._cids:
            if self._connections.get(cid) is conn:
                del self._connections[cid]
                if self.relay is not None:
                    self.relay.retired(cid)
        conn._cids.clear()
        self.timers.set(conn, None)

    # --- out -------------------------------------------------------------------------------

    def dirty(self, conn: EdgeConnection) -> None:
        """`conn` has something to send: one transmit for it at the end of this tick."""
        self._dirty.append(conn)
        self.flush_soon()

    def transmit_now(self, conn: EdgeConnection) -> None:
        """`conn`'s datagrams now, not at the end of the tick (before it closes, and during
        its handshake, as the library's own protocol sends them)."""
        out = self._poll(conn, self.clock())
        if out:
            self._send(out)
        self.arm()

    def flush_later(self, conn: EdgeConnection, now: float) -> None:
        """`conn` received something that needs no answer at once: it transmits at the
        latest `RECEIVE_FLUSH_DELAY_S` from `now` (usually sooner: with its commit's ack).
        A FIFO, not the timer wheel: every such delay is the same, and most of them never
        come due (the ack leaves first), so a timer entry and a re-armed loop timer per
        receive were wasted (docs/benchmarks.md, "The gateway's transport path, session 11")."""
        when = conn._flush_at = now + RECEIVE_FLUSH_DELAY_S
        self._flush_queue.append((when, conn))
        if self._wake_at is None or when < self._wake_at:
            self.arm()

    def _poll(self, conn: EdgeConnection, now: float) -> list:
        """`conn`'s datagrams to send now, and its next deadline. A library error stays that
        connection's: qh3's core raises "packet builder capacity exhausted" when its first
        flight to an aioquic client does not fit the anti-amplification budget of the
        client's one Initial, and succeeds once the client's next datagram raised it (as
        under its own asyncio protocol, where the same error reached the loop's handler)."""
        quic = conn._quic
        conn._flush_at = None  # whatever it received leaves now (or waits for its timer)
        out: list = []
        settled = conn._settled_address
        try:
            if settled is not None:  # to the peer's validated address: no budget to keep
                out = self._datagrams_to(quic, settled, now)
            else:
                out = conn.outgoing(quic.datagrams_to_send(now=now))
        except Exception as exc:
            self.stats["transmit_errors"] += 1
            log.info("transmit of a connection failed (%s); it goes on", exc)
        self.timers.set(conn, quic.get_timer())
        return out

    def flush_soon(self) -> None:
        if self._flush_handle is None and self._dirty and not self._closed:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self, now: float | None = None, limit: int | None = None) -> None:
        """Transmit the dirty connections once each, at most `limit` of them (default
        `transmits_per_callback`), first dirtied first; re-arm their deadlines; send it all.
        The rest: in another callback."""
        self._flush_handle = None
        now = self.clock(now)
        if limit is None:
            limit = self.transmits_per_callback
        out: list = []
        dirty, poll = self._dirty, self._poll
        while dirty and limit > 0:
            conn = dirty.popleft()
            conn._dirty = False
            if conn._terminated:
                continue
            limit -= 1
            out.extend(poll(conn, now))
        self.stats["transmits"] += 1
        if out:
            self._send(out)
        if dirty:
            self.stats["transmits_deferred"] += 1
            self.flush_soon()
        self.arm()

    def _send(self, datagrams: list) -> None:
        if self.relay is not None:  # a CID's announcement leaves before any offer of it
            self.relay.flush()
        self.stats["datagrams_out"] += len(datagrams)
        transport = self._transport
        if transport is None:
            return
        send_many = getattr(transport, "send_many", None)
        if send_many is not None:
            send_many(datagrams)
        else:
            for data, addr in datagrams:
                transport.sendto(data, addr)

    # --- the one timer ---------------------------------------------------------------------

    def arm(self) -> None:
        """One loop timer, at or before the earliest deadline or receive-flush. Re-armed only
        when that moved earlier than the timer: a timer that fires early finds nothing due
        and arms again (a cancelled loop timer stays in the loop's heap until it comes up,
        and every `call_at` is a push there)."""
        if self._closed:
            when = None
        else:
            when = self.timers.earliest()
            queue = self._flush_queue
            while queue and queue[0][1]._flush_at != queue[0][0]:
                queue.popleft()  # transmitted since: superseded
            if queue and (when is None or queue[0][0] < when):
                when = queue[0][0]
        armed = self._wake_at
        if when is None or armed is not None and armed <= when:
            if when is None and self._wake_handle is not None:
                self._wake_handle.cancel()
                self._wake_handle = self._wake_at = None
            return
        if self._wake_handle is not None:
            self._wake_handle.cancel()
        self._wake_at = when
        self._wake_handle = self._loop.call_at(when, self._wake)

    def _wake(self) -> None:
        # never before the deadline it was armed for (a loop may fire a handle a rounding
        # error early; the library would then find its timer not due and ask again)
        now = self.clock(max(self._loop.time(), self._wake_at or 0.0))
        self._wake_handle = None
        self._wake_at = None
        # at most `transmits_per_callback` deadlines and receive-flushes: those still due
        # re-arm the timer at once (`arm`), for the loop's next turn
        budget = self.transmits_per_callback
        due = self.timers.pop_due(now, budget)
        for conn in due:
            conn.wake(now)
        budget -= len(due)
        queue = self._flush_queue
        while queue and queue[0][0] <= now and budget > 0:
            when, conn = queue.popleft()
            if conn._flush_at == when:
                conn._flush_at = None
                conn.transmit()
                budget -= 1
        if self._dirty:
            self._flush(now)
        else:
            self.arm()


def _datagrams_to(quic, addr, now: float) -> list:
    """A connection's datagrams to send now, each addressed to `addr`."""
    return [(data, addr) for data, _ in quic.datagrams_to_send(now=now)]


def _plain_reader(sock) -> Callable[[], list]:
    """A read of up to `READ_BATCH` of `sock`'s waiting datagrams by a `recvfrom` each:
    where the library has no batch read (aioquic), or a loop wraps the socket and counts
    every `recvfrom` (tests/emuclock.py)."""
    recv = sock.recvfrom

    def read() -> list:
        datagrams: list = []
        for _ in range(READ_BATCH):
            try:
                datagrams.append(recv(MAX_DATAGRAM_BYTES))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # an ICMP error of an earlier send: not this socket's end
                log.debug("udp receive: %s", exc)
        return datagrams

    return read


def _enable_timestamps(sock: socket.socket) -> bool:
    """Ask Linux to stamp every datagram `sock` receives with its arrival time."""
    if not sys.platform.startswith("linux") or not hasattr(socket, "CMSG_SPACE"):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
    except OSError:
        return False
    return True


class UdpEdge:
    """The gateway's UDP socket under an `EdgeServer`: an `add_reader` drain and batched
    sends (a DatagramTransport's `sendto`, `get_extra_info`, `close` for the rest of the
    gateway). It reads by batches (the library's `batch_receiver`: qh3's `recvmmsg`, up to
    `READ_BATCH` datagrams a system call), else a `recvfrom` per datagram; a `sendto` per
    datagram: GSO (UDP_SEGMENT, qh3's `UdpSocketState.send`) joins datagrams to one
    destination, and at 1 Hz a tick holds one datagram per connection (measured, with the
    reads: docs/benchmarks.md, "The gateway's transport edge, session 14")."""

    def __init__(self, sock: socket.socket, server: EdgeServer):
        self._loop = asyncio.get_running_loop()
        # a loop that must see every datagram (tests/emuclock.py's emulated clock) wraps it
        wrap = getattr(self._loop, "wrap_datagram_socket", None)
        self._sock = wrap(sock) if wrap is not None else sock
        self._server = server
        lib = getattr(server, "lib", None)
        batch = None if wrap is not None or lib is None else lib.batch_receiver(sock)
        self._read = batch if batch is not None else _plain_reader(self._sock)
        # the lag sample (SO_TIMESTAMP): not under a wrapping loop, whose clock is not the
        # kernel's and which counts the datagrams its own reads see
        self._admission = getattr(server, "admission", None)
        self._stamped = wrap is None and self._admission is not None and _enable_timestamps(sock)
        self._next_stamp = float("-inf")  # the next wakeup that reads its first one stamped
        self._closing = False
        self._backlog: collections.deque = collections.deque()
        # the server's intake of new connections, told when a wakeup's reads are over
        self._reads_done = getattr(server, "reads_done", None)
        self._loop.add_reader(sock.fileno(), self._readable)
        server.connection_made(self)

    @classmethod
    async def open(cls, server: EdgeServer, host: str, port: int) -> UdpEdge:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.bind(addr)
        except OSError:
            sock.close()
            raise
        return cls(sock, server)

    def _readable(self) -> None:
        server, clock = self._server, self._loop.time
        budget = MAX_DATAGRAMS_PER_WAKEUP
        if self._stamped and (now := clock()) >= self._next_stamp:
            self._next_stamp = now + LAG_SAMPLE_INTERVAL_S
            if not self._read_stamped():
                return
            budget -= 1
        read, receive_many = self._read, server.receive_many
        drained = False
        while budget >= READ_BATCH:  # a read may fill a batch: never past the bound
            try:
                datagrams = read()
            except (BlockingIOError, InterruptedError):
                drained = True
                break
            except OSError as exc:  # an ICMP error of an earlier send: not this socket's end
                log.debug("udp receive: %s", exc)
                budget -= 1
                continue
            if datagrams:
                # the read's time for each of its datagrams: all had arrived by then, and an
                # RTT sample must not count the work on the ones before it as network time
                receive_many(datagrams, clock())
            if len(datagrams) < READ_BATCH:
                drained = True
                break  # the socket was empty
            budget -= len(datagrams)
        server.flush_soon()
        if self._reads_done is not None:
            self._reads_done(not drained)

    def _read_stamped(self) -> bool:
        """Read the wakeup's first datagram with its arrival time, and tell the admission how
        long it waited (the gateway's lag); False when there was none."""
        try:
            data, ancdata, _, addr = self._sock.recvmsg(MAX_DATAGRAM_BYTES, _CONTROL_SPACE)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:  # an ICMP error of an earlier send: read on
            log.debug("udp receive: %s", exc)
            return True
        now = self._loop.time()
        for level, kind, value in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP and len(value) >= _TIMEVAL.size:
                sec, usec = _TIMEVAL.unpack_from(value)
                self._admission.queue_delay(max(0.0, time.time() - (sec + usec / 1e6)), now)
        self._server.receive(data, addr, now)
        return True

    # --- a DatagramTransport's face ------------------------------------------------------

    def sendto(self, data: bytes, addr) -> None:
        self.send_many([(data, addr)])

    def send_many(self, datagrams: list) -> None:
        if self._closing:
            return
        if self._backlog:
            self._queue(datagrams)
            return
        send = self._sock.sendto
        for i, (data, addr) in enumerate(datagrams):
            try:
                send(data, addr)
            except (BlockingIOError, InterruptedError):
                self._queue(datagrams[i:])
                self._loop.add_writer(self._sock.fileno(), self._writable)
                return
            except OSError as exc:  # unreachable peer and the like: that datagram only
                log.debug("udp send to %s: %s", addr, exc)

    def _queue(self, datagrams: list) -> None:
        room = SEND_QUEUE_MAX - len(self._backlog)
        self._backlog.extend(datagrams[:max(0, room)])
        self._server.stats["send_dropped"] += max(0, len(datagrams) - max(0, room))

    def _writable(self) -> None:
        send, backlog = self._sock.sendto, self._backlog
        while backlog:
            data, addr = backlog[0]
            try:
                send(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("udp send to %s: %s", addr, exc)
            backlog.popleft()
        self._loop.remove_writer(self._sock.fileno())

    def get_extra_info(self, name: str, default=None):
        if name == "socket":
            return self._sock
        if name == "sockname":
            return self._sock.getsockname()
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        fd = self._sock.fileno()
        self._loop.remove_reader(fd)
        if self._backlog:
            self._loop.remove_writer(fd)
        self._sock.close()
