"""The load generator's UDP edge: many vehicles' QUIC client connections on a few sockets.

A real agent owns one UDP socket and one connection (agent/quic_link.py); thousands of them in
one process that way cost one socket, one `DatagramTransport` callback per datagram, one
asyncio timer re-armed on every transmit and one keepalive task per vehicle, and the profile
of a client process showed that machinery, not the vehicles, as its largest part. Here, as at
the gateway's edge (backend/gateway_edge.py):

- `ClientEdge`: one UDP socket per local address (a migration moves a connection to the
  next address's socket), read in a loop per wakeup (at most `MAX_DATAGRAMS_PER_WAKEUP`), a
  batch per system call where the library has a batch read (qh3: `recvmmsg`, the seam's
  `batch_receiver`), else a `recvfrom` per datagram; each datagram goes to its connection by
  destination connection ID (the IDs the client issued; `route_header` of
  backend/edge_core.py);
- one `TimerWheel` for every timer of the process (QUIC timers and keepalives here, the
  vehicles' uplink machines in loadtest/driver.py), served a tick at a time, and one loop
  timer for its earliest slot;
- **one transmit per dirty connection per event-loop tick**, not one per send or receive.

`EdgeLink` is the agent's `QuicLink` without its socket, futures and tasks: the same QUIC
configuration (ACK delay advertised and used after the handshake, a pending ACK riding with
data), keepalive PINGs, migration (a new local address and a new connection ID), events to
callbacks. The vehicles' wire traffic stays what agents send.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from types import ModuleType
from typing import Protocol

from agent.quic_link import UNANSWERED_AFTER_REFUSAL_S, v6_address
from backend.edge_core import route_header
from geostream.limits import KEEPALIVE_S
from geostream.quic_acks import PROBE_TIMEOUT_FLOOR_S
from geostream.timer_wheel import TimerWheel

from .fleet import Histogram

log = logging.getLogger("loadtest.edge")

# Datagrams read per readable-socket wakeup before the loop runs its other callbacks (timers,
# the other sockets): bounds how long one burst holds up everything else.
MAX_DATAGRAMS_PER_WAKEUP = 256
# Largest datagram read: QUIC's maximum UDP payload (RFC 9000 §18.2 max_udp_payload_size).
MAX_DATAGRAM_BYTES = 65527
# Datagrams one read returns at most (the seam's `batch_receiver`: qh3's `recvmmsg` of 32; the
# plain reader's `recvfrom` loop the same): a shorter read found the socket empty, and the
# wakeup ends there without one more read that would find nothing.
READ_BATCH = 32
# Socket buffers asked for (the gateway's, backend/quic_tuning.py): thousands of connections
# share one socket, and a burst of their datagrams must not overflow the kernel's default
# 208 KiB while the process is busy with a tick; the kernel caps it at net.core.rmem_max.
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
# The timer wheel's slot: every deadline due in one (vehicles' pacing, QUIC timers) is served
# in one wakeup, so the loop's own cost per wakeup is shared by all vehicles due in it instead
# of paid per vehicle; each fires at most this late (the agent's pacing is 1 s, QUIC's ACK
# delay 25 ms or more).
TICK_S = 0.010
# A keepalive PING that could not leave (the congestion window full of unacknowledged
# packets: nothing goes before an ACK or the probe timeout) is tried again this much later,
# as the agent's link does (agent/quic_link.py `_keepalive`); filed at its overdue deadline, the
# connection was woken again in every wakeup of the process, each one a PING queued for nothing.
KEEPALIVE_RETRY_S = 0.5
# Owners due long ago that `ClientEdge.describe` names (a wheel that does not serve them, or
# owners filing themselves in the past, woken in every wakeup)
DESCRIBED_OVERDUE = 5
# An owner whose wake, receive or transmit raised is woken again this much later
# (`ClientEdge.owner_failed`): never left out of the wheel, never woken in a loop.
OWNER_RETRY_S = 1.0
# RFC 9000 §17.2: the first byte's top bit is set in a long header, clear in a short one
_LONG_HEADER = 0x80
# What a datagram to the gateway was sent for (`EdgeLink`'s count, docs/benchmarks.md "Past the
# knee"), lowest first: a transmit that had several reasons counts as its highest. "ack": an
# answer to a datagram or the ACK timer (ACK-only unless something else was due); "timer":
# another QUIC timer; "ping": a keepalive or liveness PING; "pto": a probe timeout fired
# (retransmitted data, or a PING when nothing is unacknowledged); "loss": packets declared
# lost (their data retransmitted); "data": new stream data (batches, status, answers).
SENT_KINDS = ("ack", "timer", "ping", "pto", "loss", "data")
_ACK, _TIMER, _PING, _PTO, _LOSS, _DATA = range(len(SENT_KINDS))
_SENT_KEYS = tuple(f"sent_{kind}" for kind in SENT_KINDS)  # the edge's stats keys
_SENT_KEY_OF = {kind: f"sent_{kind}" for kind in ("handshake", "resumed", "probe")}
_RECEIVED_KEY_OF = {kind: f"received_{kind}" for kind in ("handshake", "resumed", "probe")}
# A datagram from the gateway that carried no new stream data and is at most this long is
# counted as ACK-only (a 1-RTT packet: 1 + 8-byte CID + packet number + an ACK frame + 16-byte
# tag is ~30-45 bytes); a longer one repeats data (a retransmission or a probe).
ACK_ONLY_MAX_BYTES = 48


class Receiver(Protocol):
    """What a destination CID routes to: a connection (`EdgeLink`) or a liveness probe."""

    def datagram_received(self, data: bytes, addr, now: float) -> None: ...


class EdgeLink:
    """One client connection at the edge: its sans-IO `QuicConnection`, keepalive, and the
    callbacks its vehicle gets (stream data, handshake done, closed)."""

    # the deadline of an attempt the QUIC core refused to go on with before anything was
    # heard from the gateway (`_core_refused`); None: no such refusal
    _give_up_at: float | None = None
    _heard = False  # a datagram came from the gateway
    name = "a connection"  # whose it is, in the edge's log (its vehicle sets it)

    def __init__(self, edge: ClientEdge, configuration, server_addr: tuple, *,
                 on_stream_data: Callable[[EdgeLink, bytes, bool], None],
                 on_handshake: Callable[[EdgeLink], None] = lambda link: None,
                 on_closed: Callable[[EdgeLink], None] = lambda link: None,
                 ack_delay_s: float | None = None, keepalive_s: float = KEEPALIVE_S,
                 session_ticket_handler: Callable | None = None):
        self.edge = edge
        lib = self.lib = edge.lib
        # a ticket in `configuration` resumes the session, and stream data sent before the
        # handshake completes goes as 0-RTT (as the agent's link)
        self.conn = lib.QuicConnection(configuration=configuration,
                                       session_ticket_handler=session_ticket_handler)
        self.server_addr = v6_address(server_addr)
        self._on_stream_data = on_stream_data
        self._on_handshake = on_handshake
        self._on_closed = on_closed
        self._ack_delay_s = ack_delay_s
        if ack_delay_s:
            lib.advertise_max_ack_delay(self.conn, ack_delay_s)
        self._keepalive_s = keepalive_s
        self._last_send = 0.0
        self._ping_id = 0
        self._dirty = False
        self._filed_at: float | None = None  # the deadline the edge's wheel holds for it
        self._cids: set[bytes] = set()
        self.sock: socket.socket | None = None
        self.local_host = ""
        self.handshaken = False
        self.session_resumed = self.early_data_accepted = False
        self.closed = False
        self.close_reason = ""
        self.migrations = 0
        # observers (the uplink's liveness policy): a datagram arrived, a PING went out
        self.on_datagram: Callable[[float], None] | None = None
        self.on_ping: Callable[[float], None] | None = None
        # the count of datagrams by kind: what the next transmit is for (`SENT_KINDS`), how
        # this connection's handshake datagrams count (a liveness probe's count as "probe":
        # driver.py `_Probe`, which is no connection since revision 6), and
        # whether the datagram being received carried new stream data
        self.handshake_kind = "resumed" if getattr(configuration, "session_ticket", None) \
            else "handshake"
        self._why = _ACK
        self._got_data = False
        # probe timeouts and losses at the last transmit that sent (`poll`; None: not yet, or
        # a library without them)
        self._counts: tuple[int, int] | None = None
        # the library's receive of an established connection's datagram that hands its events
        # back without the facade's event queue (qh3: `receive_on_client`; None: the general)
        self._receive_fast = getattr(lib, "receive_on_client", None)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, local_host: str) -> None:
        """Send the first flight from `local_host`; stream data sent before the handshake
        completes goes right after it."""
        self.sock = self.edge.socket_for(local_host)
        self.local_host = local_host
        self._route(self.conn.host_cid)
        now = self.edge.now()
        self.conn.connect(self.server_addr, now=now)
        self._last_send = now
        self.edge.transmit_now(self)

    def send(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        if (data or end_stream) and not self.closed:
            self.conn.send_stream_data(stream_id, data, end_stream)
            self.lib.ack_with_data(self.conn)  # a pending ACK rides in this datagram
            self._why = _DATA
            self.transmit()

    def ping(self) -> None:
        """An ack-eliciting PING (its answer shows the gateway still has the connection)."""
        if self.closed:
            return
        self._ping_id += 1
        self.conn.send_ping(self._ping_id)
        self.lib.ack_with_data(self.conn)
        if self._why < _PING:
            self._why = _PING
        if self.on_ping is not None:
            self.on_ping(self.edge.now())
        self.transmit()

    def migrate(self, local_host: str) -> None:
        """Move the connection to `local_host`'s socket and a new connection ID; a PING on the
        new path at once, so the gateway validates it now (agent/quic_link.py `migrate`)."""
        if self.closed:
            return
        self.sock = self.edge.socket_for(local_host)
        self.local_host = local_host
        self.conn.change_connection_id()
        self.migrations += 1
        self.ping()

    def close(self, error_code: int = 0, reason: str = "") -> None:
        """CONNECTION_CLOSE, sent now (the caller usually drops the link right after), after
        what the connection already has to send. The agent's link sends before it handles
        the events of a datagram; this one handles them first, so a link that closes on its
        handshake's completion (the liveness probe of revisions 1-5 did) still holds its TLS
        Finished here: qh3 sends a close then in 1-RTT alone, which the gateway cannot read
        without that Finished, and the gateway kept the half-open connection as a handshake
        in progress (`Admission`) until its handshake timeout."""
        if not self.closed:
            self.edge.transmit_now(self)
            self.conn.close(error_code=error_code, reason_phrase=reason)
            self.edge.transmit_now(self)

    def abort(self) -> None:
        """Drop the connection without telling the peer."""
        self._finish("aborted")

    def transmit(self) -> None:
        """Send what the connection has: once, at the end of this event-loop tick."""
        if not self._dirty and not self.closed:
            self._dirty = True
            self.edge.dirty(self)

    # --- from the edge --------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr, now: float) -> None:
        if self.closed:
            return
        if self.on_datagram is not None:
            self.on_datagram(now)
        self._got_data = False
        self._heard = True
        events = None if self._receive_fast is None else self._receive_fast(self.conn, data,
                                                                            addr, now)
        if events is None:  # the library's general path (a long header, the handshake)
            self.conn.receive_datagram(data, addr, now=now)
            self._events()
        else:  # an established connection's datagram: its events straight from the core
            stream_data = self.lib.StreamDataReceived
            for event in events:
                if self.closed:
                    break
                if type(event) is stream_data:
                    self._got_data = True
                    self._on_stream_data(self, event.data, event.end_stream)
                else:
                    self._event(event)
        # the count by kind: its handshake, new stream data, ACK-only, or a repeat
        # (retransmitted data, a probe); written here, not in a method: once per datagram
        if not self.handshaken or self.handshake_kind == "probe":
            key = _RECEIVED_KEY_OF[self.handshake_kind]
        elif self._got_data:
            key = "received_data"
        elif len(data) <= ACK_ONLY_MAX_BYTES:
            key = "received_ack"
        else:
            key = "received_repeat"
        self.edge.stats[key] += 1
        # what the datagram asks for leaves now, as the agent's link sends it: within qh3's
        # 1 ms a QUIC ACK still waits for the next batch to ride in; at the end of a long
        # drain it would go alone (one more datagram per reading than an agent sends)
        if not self.closed:
            self._dirty = False
            self.edge.transmit_now(self)

    def wake(self, now: float) -> None:
        """Its deadline came: the QUIC timer if due, a keepalive PING if due, a transmit."""
        self._filed_at = None  # the wheel let it go
        if self.closed:
            return
        now = self.edge.now()  # not the wakeup's start: others may have sent since
        conn = self.conn
        timer = conn.get_timer()
        if timer is not None and timer <= now:
            try:
                conn.handle_timer(now=now)
            except Exception as exc:  # noqa: BLE001 - that connection's
                self._core_refused(exc)
            self._events()
            if self._counts is None and self._why < _TIMER:
                self._why = _TIMER  # a library without recovery counts: any timer's
        if (self._give_up_at is not None and now >= self._give_up_at and not self._heard
                and not self.handshaken):
            log.debug("no answer to the first flight and the QUIC core sends no more")
            self._finish("no answer to the first flight")
            return
        if not self.closed and now - self._last_send >= self._keepalive_s:
            self.ping()
        self.transmit()

    def poll(self, now: float) -> list[tuple[bytes, tuple]]:
        """The datagrams to send now (each with the address the core gives; the edge sends
        all to the server), and the next deadline set."""
        self._dirty = False
        if self.closed:
            return []
        conn = self.conn
        try:
            out = conn.datagrams_to_send(now)
        except Exception as exc:  # noqa: BLE001 - that connection's, as on the gateway's edge
            self._core_refused(exc)
            out = []
        if out:
            self._last_send = now
            # the count by kind: its highest reason since the last transmit that sent; probe
            # timeouts and losses are the library's counts, compared once per such transmit
            # with their value at the last one (they rise only in a receive or a timer, so a
            # rise is what made this one a probe's or a repair's): once per vehicle-second,
            # not before and after every receive and timer
            why = self._why
            if (counts := self.lib.recovery_counts(conn)) is not None:
                before, self._counts = self._counts, counts
                if before is not None and why < _LOSS:
                    if counts[1] > before[1]:
                        why = _LOSS
                    elif counts[0] > before[0] and why < _PTO:
                        why = _PTO
            self.edge.stats[_SENT_KEYS[why] if self.handshaken and self.handshake_kind != "probe"
                            else _SENT_KEY_OF[self.handshake_kind]] += len(out)
        self._why = _ACK
        if conn._events:
            self._events()
        if not self.closed:
            timer = conn.get_timer()
            at = self._last_send + self._keepalive_s
            if at <= now:  # a PING was due and nothing left (a full congestion window)
                at = now + KEEPALIVE_RETRY_S  # as the agent's link: not again at once
            if timer is not None and timer < at:
                at = timer
            if self._give_up_at is not None and self._give_up_at < at:
                at = self._give_up_at
            if at != self._filed_at:
                self._filed_at = at
                self.edge.timers.set(self, at)
        return out

    def _core_refused(self, exc: Exception) -> None:
        """The QUIC core refused a transmit or a timer of this connection: counted, and the
        connection goes on. qh3's core raises "missing OneRtt packet key" on a resumed
        connection asked to send before its 1-RTT keys exist; left to rise, it ended the
        worker's flush before its one timer was re-armed, and every vehicle stopped. As the
        agent's link (agent/quic_link.py `_core_refused`): an attempt that has heard nothing
        from the gateway ends UNANSWERED_AFTER_REFUSAL_S after the first refusal (qh3 sends
        nothing more on it), and its vehicle starts a fresh one instead of waiting out the
        connect timeout; a late answer before then still completes it."""
        self.edge.stats["transmit_errors"] += 1
        log.debug("the QUIC core refused a connection's transmit or timer (%s)", exc)
        if self._give_up_at is None and not self._heard and not self.handshaken:
            self._give_up_at = self.edge.now() + UNANSWERED_AFTER_REFUSAL_S

    def _events(self) -> None:
        # the connection's event queue itself: `next_event()` is one more call per event
        # around `popleft`, in both libraries (aioquic's and qh3's facades keep a deque)
        events, stream_data = self.conn._events, self.lib.StreamDataReceived
        while events and not self.closed:
            event = events.popleft()
            if type(event) is stream_data:
                self._got_data = True
                self._on_stream_data(self, event.data, event.end_stream)
            else:
                self._event(event)

    def _event(self, event) -> None:
        """An event other than stream data."""
        conn, lib = self.conn, self.lib
        kind = type(event)
        if kind is lib.HandshakeCompleted:
            self.handshaken = True
            self.session_resumed = event.session_resumed
            self.early_data_accepted = event.early_data_accepted
            stats = self.edge.stats
            stats["handshakes"] += 1
            stats["resumed"] += event.session_resumed
            stats["early_data_accepted"] += event.early_data_accepted
            if self._ack_delay_s:
                lib.delay_acks_up_to(conn, self._ack_delay_s)
            # no probe of data the gateway may have queued sooner than the floor
            lib.floor_probe_timeout(conn, PROBE_TIMEOUT_FLOOR_S)
            if not event.early_data_accepted:  # rejected 0-RTT goes again now (the agent's)
                lib.resend_rejected_early_data(conn, self.edge.now())
            self._on_handshake(self)
        elif kind is lib.ConnectionIdIssued:
            self._route(event.connection_id)
        elif kind is lib.ConnectionIdRetired:
            self._cids.discard(event.connection_id)
            self.edge.unroute(event.connection_id, self)
        elif kind is lib.ConnectionTerminated:
            self._finish(f"{event.reason_phrase or 'closed'} (code {event.error_code})")

    def _route(self, cid: bytes) -> None:
        self._cids.add(cid)
        self.edge.route(cid, self)

    def _finish(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        for cid in self._cids:
            self.edge.unroute(cid, self)
        self._cids.clear()
        self._filed_at = None
        self.edge.timers.set(self, None)
        self._on_closed(self)


class ClientEdge:
    """One process's sockets (one per local address) under all its client connections:
    routing by destination CID, one transmit per dirty connection per tick, one timer heap
    for every owner with a `wake(now)` (connections here, vehicles in loadtest/driver.py)."""

    def __init__(self, lib: ModuleType, cid_length: int, loop=None):
        """`loop`: the event loop (default the running one; a bench gives an emulated one)."""
        self.lib = lib
        self._cid_length = cid_length
        self._loop = loop or asyncio.get_running_loop()
        # the loop's clock: asyncio's own `time()` is `time.monotonic()` behind one more
        # Python call, asked ~5 times per vehicle-second; an emulated loop's is its own
        self._time = (time.monotonic if type(self._loop).time is asyncio.BaseEventLoop.time
                      else self._loop.time)
        self._sockets: dict[str, socket.socket] = {}
        # each socket's read: a list of (datagram, address) per call, [] when none waits
        self._reads: dict[socket.socket, Callable[[], list]] = {}
        self._routes: dict[bytes, Receiver] = {}
        self._dirty: list[EdgeLink] = []
        self._flush_handle: asyncio.Handle | None = None
        self.timers = TimerWheel(TICK_S)
        self._wake_handle: asyncio.TimerHandle | None = None
        self._wake_at: float | None = None
        self._lag_from = 0.0  # when the armed wakeup was due, or armed if later (`lag`)
        self._closed = False
        # in a wakeup of the edge's own, which flushes and arms at its end (read by owners:
        # an `arm()` then has nothing to do)
        self.serving = False
        self._now = 0.0
        # when the one timer last fired and a socket was last read (`describe`)
        self._woke_at: float | None = None
        self._read_at: float | None = None
        # datagrams_sent / datagrams_received / unroutable / send_dropped / wakeups / …
        self.stats: collections.Counter = collections.Counter()
        # owners' exceptions by kind (`owner_failed`): the worker reports them with its errors
        self.errors: collections.Counter = collections.Counter()
        # how late the one timer fired past its slot's end: the process's own backlog (a
        # client that is behind delays every ack it books by as much)
        self.lag = Histogram()

    def now(self) -> float:
        """The time for a QUIC connection: the loop's, never earlier than one already given
        (a send stamped later than the receive of its ACK is a negative RTT, which qh3's core
        answers by closing the connection, "InvalidTime")."""
        now = self._time()
        if now < self._now:
            return self._now
        self._now = now
        return now

    # --- sockets ---------------------------------------------------------------------------

    def socket_for(self, local_host: str) -> socket.socket:
        """The socket bound to `local_host` (opened on first use, an ephemeral port)."""
        sock = self._sockets.get(local_host)
        if sock is None:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                    sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER_BYTES)
                sock.setblocking(False)
                ip = ipaddress.ip_address(local_host)
                sock.bind((f"::ffff:{local_host}" if ip.version == 4 else local_host, 0, 0, 0))
            except OSError:
                sock.close()
                raise
            self._reads[sock] = self.lib.batch_receiver(sock) or _recvfrom_batch(sock)
            self._loop.add_reader(sock.fileno(), self._readable, sock)
            self._sockets[local_host] = sock
        return sock

    def _readable(self, sock: socket.socket) -> None:
        read, routes, cid_length = self._reads[sock], self._routes, self._cid_length
        clock = self.now
        n = 0
        self.serving = True
        self._read_at = self._time()
        try:
            # each read gives at least one datagram or stops the loop: ≤ the bound's reads
            for _ in range(MAX_DATAGRAMS_PER_WAKEUP):
                try:
                    got = read()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:  # an ICMP error of an earlier send
                    log.debug("udp receive: %s", exc)
                    continue
                if not got:
                    break
                n += len(got)
                empty = len(got) < READ_BATCH  # the socket had no more
                for data, addr in got:
                    if data and not data[0] & _LONG_HEADER:  # 1-RTT: our CID follows the byte
                        link = routes.get(data[1:1 + cid_length])
                    else:
                        header = route_header(data, cid_length)
                        link = (routes.get(header.destination_cid) if header is not None
                                else None)
                    if link is None:
                        self.stats["unroutable"] += 1
                        continue
                    # stamped as read, never earlier: a receive time before the datagram's
                    # arrival makes the RTT sample smaller than the ACK delay the gateway
                    # reports, and qh3's core closes the connection for that ("InvalidTime")
                    try:
                        link.datagram_received(data, addr, clock())
                    except Exception as exc:  # noqa: BLE001 - that link's: the batch goes on
                        self.owner_failed(link, "receive", exc)
                if empty or n >= MAX_DATAGRAMS_PER_WAKEUP:
                    break
        finally:
            self.serving = False
        self.stats["datagrams_received"] += n
        self.stats["reads"] += 1
        self._flush()

    # --- routing ---------------------------------------------------------------------------

    def route(self, cid: bytes, link: Receiver) -> None:
        self._routes[cid] = link

    def unroute(self, cid: bytes, link: Receiver) -> None:
        if self._routes.get(cid) is link:
            del self._routes[cid]

    @property
    def connections(self) -> int:
        """Connections that can receive (those with at least one routed CID; not probes)."""
        return len({r for r in self._routes.values() if type(r) is EdgeLink})

    # --- out -------------------------------------------------------------------------------

    def dirty(self, link: EdgeLink) -> None:
        """`link` has something to send: one transmit for it at the end of this tick."""
        self._dirty.append(link)
        if self._flush_handle is None and not self._closed and not self.serving:
            self._flush_handle = self._loop.call_soon(self._flush)

    def transmit_now(self, link: EdgeLink) -> None:
        """`link`'s datagrams now (its first flight, its CONNECTION_CLOSE, the answer to a
        datagram); the one timer is re-armed at the end of the tick."""
        if datagrams := link.poll(self.now()):  # after a receive, as a rule, none
            self._send(link, datagrams)
        if self._flush_handle is None and not self._closed and not self.serving:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Transmit every dirty connection once (at the time of the transmit: a send time
        stamped earlier would shrink the RTT samples the same way); re-arm the one timer."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        now = self.now()
        while self._dirty:
            dirty, self._dirty = self._dirty, []
            for link in dirty:
                if link._dirty:
                    try:
                        self._send(link, link.poll(now))
                    except Exception as exc:  # noqa: BLE001 - that link's: the others send
                        self.owner_failed(link, "transmit", exc)
        self.arm()

    def send_raw(self, local_host: str, data: bytes, addr: tuple, kind: str) -> None:
        """One datagram that is no connection's (a liveness probe's) from `local_host`'s
        socket, counted as `kind` in the stats."""
        try:
            self.socket_for(local_host).sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.stats["send_dropped"] += 1
        self.stats["datagrams_sent"] += 1
        self.stats[kind] += 1

    def _send(self, link: EdgeLink, datagrams: list[tuple[bytes, tuple]]) -> None:
        sock, addr = link.sock, link.server_addr
        if sock is None or not datagrams:
            return
        for data, _ in datagrams:
            try:
                sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                self.stats["send_dropped"] += 1  # QUIC retransmits what is lost
            except OSError as exc:  # unreachable and the like: that datagram only
                log.debug("udp send to %s: %s", addr, exc)
        self.stats["datagrams_sent"] += len(datagrams)

    # --- the one timer ---------------------------------------------------------------------

    def arm(self) -> None:
        """One loop timer for the earliest deadline of any owner (within a wakeup of the
        edge's own, at its end)."""
        if self.serving:
            return
        when = None if self._closed else self.timers.earliest()
        if when == self._wake_at:
            return
        if self._wake_handle is not None:
            self._wake_handle.cancel()
            self._wake_handle = None
        self._wake_at = when
        if when is not None:
            self._wake_handle = self._loop.call_at(when, self._wake)
            # the loop's own delay is counted from here when the slot had ended already
            self._lag_from = max(when, self._time())

    def _wake(self) -> None:
        # the loop may fire a handle up to its clock resolution early: what was armed for is
        # due, but every owner gets the true time (QUIC cores refuse a clock that goes back)
        now = self._loop.time()
        due = max(now, self._wake_at or now)
        # how late the loop fired it, past its slot's end or past its arming if that came
        # later (a deadline filed overdue is not the loop's delay); measured against `due`,
        # which is never before `now`, every report said 0 ms however far behind it was
        late = now - self._lag_from
        self.lag.add(late if late > 0.0 else 0.0)
        self._wake_handle = self._wake_at = None
        self._woke_at = now
        self.stats["wakeups"] += 1
        self.serving = True
        try:
            owners = self.timers.pop_due(due)
            self.stats["owner_wakes"] += len(owners)
            for owner in owners:
                try:
                    owner.wake(now)
                except Exception as exc:  # noqa: BLE001 - that owner's: the others still wake
                    self.owner_failed(owner, "wake", exc)
        finally:
            self.serving = False
        self._flush()

    def owner_failed(self, owner, what: str, exc: Exception) -> None:
        """An owner (a vehicle, a connection, a probe) raised in its `what` (wake, receive,
        transmit): logged with its name and traceback, counted by kind (`errors`, in the
        worker's result), and the owner woken again OWNER_RETRY_S later, so that it is not
        left out of the wheel (the wheel let it go before its wake; nothing else files it
        again when its own bookkeeping thinks it is filed); the owners after it in the same
        wakeup were woken as usual."""
        kind = f"{what} raised {type(exc).__name__}"
        self.errors[kind] += 1
        name = getattr(owner, "name", None) or type(owner).__name__
        log.warning("%s: %s: %s", name, kind, exc, exc_info=exc)
        if not self._closed:
            self.timers.set(owner, self.now() + OWNER_RETRY_S)

    def describe(self, now: float) -> str:
        """The one timer's state (the load tester logs it with the vehicles not drained): when
        it is armed for and whether its handle is live, the wheel's earliest slot, when it last
        fired and a socket was last read, connections waiting for a transmit."""
        handle = self._wake_handle
        live = "none" if handle is None else ("cancelled" if handle.cancelled() else "live")
        overdue = self.timers.overdue(now - 1.0, DESCRIBED_OVERDUE)
        return (f"edge: armed in {_ahead(now, self._wake_at)} ({live}); wheel {len(self.timers)}"
                f" owners, earliest in {_ahead(now, self.timers.earliest())}; last fired "
                f"{_ago(now, self._woke_at)}, last read {_ago(now, self._read_at)}; serving "
                f"{self.serving}; {len(self._dirty)} dirty, flush "
                f"{'pending' if self._flush_handle is not None else 'none'}; "
                f"{self.stats['wakeups']} wakeups; due over 1 s ago: "
                + (", ".join(f"{getattr(o, 'name', None) or type(o).__name__} "
                             f"({type(o).__name__}) in {_ahead(now, at)}" for o, at in overdue)
                   or "none"))

    def close(self) -> None:
        self._closed = True
        for handle in (self._flush_handle, self._wake_handle):
            if handle is not None:
                handle.cancel()
        for sock in self._sockets.values():
            self._loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()
        self._reads.clear()


def _ago(now: float, then: float | None) -> str:
    return "never" if then is None else f"{now - then:.1f} s ago"


def _ahead(now: float, at: float | None) -> str:
    return "-" if at is None else f"{at - now:.1f} s"


def _recvfrom_batch(sock: socket.socket) -> Callable[[], list]:
    """A socket's read where the library has no batch read: up to READ_BATCH datagrams by a
    `recvfrom` each, [] when none waits (an ICMP error of an earlier send skips that call)."""
    recv = sock.recvfrom

    def read() -> list:
        got = []
        for _ in range(READ_BATCH):
            try:
                got.append(recv(MAX_DATAGRAM_BYTES))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.debug("udp receive: %s", exc)
        return got
    return read
