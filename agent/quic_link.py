"""One QUIC client connection over a UDP socket the agent owns.

The QUIC libraries' `connect()` hides the socket inside its protocol; owning it around the
sans-IO `QuicConnection` (of the library chosen behind the seam, geostream/quic/) is what lets
the agent move a live connection to a new local address (`migrate()`), and makes keepalive
PINGs and timers explicit.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import socket
from collections.abc import Callable
from types import ModuleType

from geostream.limits import KEEPALIVE_S
from geostream.quic import library
from geostream.quic_acks import PROBE_TIMEOUT_FLOOR_S

from .version_probe import VersionProbe

log = logging.getLogger(__name__)

# How long an attempt that has heard nothing from the gateway lives on after its QUIC core
# first refused to send. qh3 2.1.0 sends no Initial retransmission after its first probe on a
# resumed attempt whose first flight was lost (docs/upstream/qh3-initial-retransmission.md), so
# such an attempt would only wait for the uplink's 10 s connect timeout; it ends here and the
# uplink starts a fresh one. Not at once: the gateway may have the first flight or the probe
# and its answer be on the way (then it took the attempt's 0-RTT and spent its ticket, and a
# fresh attempt could not resume). A gateway answers a datagram within 2 s of its arrival or
# refuses it as busy (backend/edge_core.py SHED_QUEUE_DELAY_S); the rest is margin for the
# round trip.
UNANSWERED_AFTER_REFUSAL_S = 3.0
# The liveness probe (`probe_version`, docs/protocol.md §8) is sent again this long after it
# went unanswered, doubling, as a handshake's first flight is (RFC 9002's initial probe timeout
# of ~1 s): a probe lost on the radio is not yet "not reachable".
PROBE_RESEND_S = 1.0

def v6_address(addr: tuple) -> tuple:
    """Address tuple for a dual-stack AF_INET6 socket (IPv4 as ::ffff:a.b.c.d)."""
    host, port = addr[0], addr[1]
    ip = ipaddress.ip_address(host)
    if ip.version == 4:
        return (f"::ffff:{host}", port, 0, 0)
    return (host, port, 0, 0)


def spki_sha256(certificate) -> str:
    """Pin of a certificate (a `cryptography` certificate or its DER): hex SHA-256 of its DER
    SubjectPublicKeyInfo."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if isinstance(certificate, bytes):
        certificate = x509.load_der_x509_certificate(certificate)
    der = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def plain_host(host: str) -> str:
    """An IPv4-mapped IPv6 address as plain IPv4; anything else unchanged."""
    return host.removeprefix("::ffff:") if host.startswith("::ffff:") and "." in host else host


def _udp_socket(local_host: str = "::") -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setblocking(False)
    host = f"::ffff:{local_host}" if ipaddress.ip_address(local_host).version == 4 else local_host
    sock.bind((host, 0, 0, 0))
    return sock


class _VersionProbeProtocol(asyncio.DatagramProtocol):
    """Resolves `answered` on the first datagram that answers the probe; others are ignored."""

    def __init__(self, probe: VersionProbe, answered: asyncio.Future):
        self._probe, self._answered = probe, answered

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if self._probe.answered_by(data) and not self._answered.done():
            self._answered.set_result(None)

    def error_received(self, exc: Exception) -> None:
        log.debug("probe: udp error: %s", exc)  # ICMP: the timeout decides


async def probe_version(server_addr: tuple, local_host: str, timeout_s: float,
                        resend_s: float = PROBE_RESEND_S) -> bool:
    """The liveness probe (docs/protocol.md §8): whether the gateway's process answers a
    `VersionProbe` from a fresh UDP socket on `local_host` within `timeout_s`; the probe goes
    again `resend_s` after, doubling, while unanswered. No handshake, no state at the gateway."""
    loop = asyncio.get_running_loop()
    probe, answered = VersionProbe(), loop.create_future()
    addr = v6_address(server_addr)
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _VersionProbeProtocol(probe, answered), sock=_udp_socket(local_host))
    try:
        async with asyncio.timeout(timeout_s):
            wait = resend_s
            while True:  # bounded by the timeout
                transport.sendto(probe.datagram, addr)
                done, _ = await asyncio.wait((answered,), timeout=wait)
                if done:
                    return True
                wait *= 2
    except TimeoutError:
        return False
    finally:
        transport.close()
        if not answered.done():
            answered.cancel()


class QuicLink(asyncio.DatagramProtocol):
    """Drives a `QuicConnection`: datagrams in/out, timers, keepalive, events to a callback."""

    def __init__(
        self,
        configuration,
        server_addr: tuple,
        on_stream_data: Callable[[int, bytes, bool], None],
        keepalive_s: float = KEEPALIVE_S,
        session_ticket_handler: Callable | None = None,
        ack_delay_s: float | None = None,
        lib: ModuleType | None = None,
    ):
        """`configuration`: a `QuicConfiguration` of `lib`, the QUIC library (None: the
        process's, geostream.quic.library). `ack_delay_s`: how long the ACK of what the gateway
        sends may wait for the next batch to ride in (the agent's send interval; None: the
        library's default, at once)."""
        self._loop = asyncio.get_running_loop()
        self.lib = lib = lib or library()
        self.conn = lib.QuicConnection(configuration=configuration,
                                       session_ticket_handler=session_ticket_handler)
        self.server_addr = v6_address(server_addr)
        self._on_stream_data = on_stream_data
        self._ack_delay_s = ack_delay_s
        if ack_delay_s:
            lib.advertise_max_ack_delay(self.conn, ack_delay_s)
        self.datagrams_sent = self.datagrams_received = 0
        self.core_refusals = 0  # transmits or timers the QUIC core refused (_core_refused)
        self._unanswered: asyncio.TimerHandle | None = None  # UNANSWERED_AFTER_REFUSAL_S
        self._keepalive_s = keepalive_s
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._last_send = self._loop.time()
        self._ping_id = 0
        self._keepalive_task: asyncio.Task | None = None
        self.connected = self._loop.create_future()
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.handshakes = 0
        self.migrations = 0
        self.session_resumed = False
        self.early_data_accepted = False
        self.local_host = "::"
        self.last_receive = self._loop.time()
        # observers (the uplink's liveness policy): a datagram arrived, a PING went out
        self.on_datagram: Callable[[float], None] | None = None
        self.on_ping: Callable[[float], None] | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def connect(self, local_host: str = "::") -> None:
        await self.start(local_host)
        await asyncio.shield(self.connected)

    async def start(self, local_host: str = "::") -> None:
        """Send the first flight; stream data sent before `connected` resolves goes as 0-RTT
        when a session ticket is configured, else right after the handshake."""
        await self._bind(local_host)
        self.conn.connect(self.server_addr, now=self._loop.time())
        self.transmit()
        self._keepalive_task = self._loop.create_task(self._keepalive())

    def ping(self) -> None:
        """Send an ack-eliciting PING now (its answer shows the peer still has the connection)."""
        self._ping_id += 1
        self.conn.send_ping(self._ping_id)
        self.lib.ack_with_data(self.conn)
        if self.on_ping is not None:
            self.on_ping(self._loop.time())
        self.transmit()

    def rtt_s(self) -> float | None:
        """The smoothed round-trip time in seconds (None before the first sample)."""
        return self.lib.smoothed_rtt(self.conn)

    def peer_pin(self) -> str | None:
        """Pin of the certificate the server presented (None on a resumed session)."""
        der = self.lib.peer_certificate_der(self.conn)
        return spki_sha256(der) if der is not None else None

    def quiet_for(self) -> float:
        """Seconds since the last datagram from the server."""
        return self._loop.time() - self.last_receive

    async def _bind(self, local_host: str) -> None:
        sock = _udp_socket(local_host)
        transport, _ = await self._loop.create_datagram_endpoint(lambda: self, sock=sock)
        self.local_host = local_host
        old, self._transport = self._transport, transport
        if old is not None:
            old.close()

    async def migrate(self, local_host: str = "::") -> None:
        """Move the connection to a new local socket and a new connection ID."""
        await self._bind(local_host)
        self.conn.change_connection_id()
        self.migrations += 1
        # something ack-eliciting on the new path right away, so the gateway validates it now
        self.ping()
        log.info("connection migrated to %s (migration %d)", local_host, self.migrations)

    def close(self, error_code: int = 0, reason: str = "") -> None:
        if not self.closed.is_set():
            self.conn.close(error_code=error_code, reason_phrase=reason)
            self.transmit()

    def abort(self) -> None:
        """Drop everything without telling the peer (used when the link is already gone)."""
        self._finish("aborted")

    def _finish(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.closed.set()
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(reason))
            self.connected.exception()  # mark retrieved: the caller may be gone already
        if self._timer:
            self._timer.cancel()
        if self._unanswered:
            self._unanswered.cancel()
        if self._keepalive_task:
            self._keepalive_task.cancel()
        if self._transport:
            self._transport.close()

    # --- data -----------------------------------------------------------------------------

    def send(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        if data or end_stream:
            self.conn.send_stream_data(stream_id, data, end_stream)
            self.lib.ack_with_data(self.conn)  # a pending ACK rides in this datagram
            self.transmit()

    def transmit(self) -> None:
        if self._transport is None:
            return
        now = self._loop.time()
        try:
            datagrams = self.conn.datagrams_to_send(now=now)
        except Exception as exc:  # noqa: BLE001 - the QUIC core's refusal, this attempt's
            self._core_refused(exc)
            datagrams = []
        for data, addr in datagrams:
            self._transport.sendto(data, addr)
            self.datagrams_sent += 1
            self._last_send = now
        self._process_events()
        at = self.conn.get_timer()
        if at != self._timer_at:
            if self._timer:
                self._timer.cancel()
            self._timer = self._loop.call_at(at, self._on_timer) if at is not None else None
            self._timer_at = at

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        try:
            self.conn.handle_timer(now=self._loop.time())
        except Exception as exc:  # noqa: BLE001 - as in transmit
            self._core_refused(exc)
        self.transmit()

    def _core_refused(self, exc: Exception) -> None:
        """The library's core refused a transmit or a timer. qh3 2.1.0 does so on a resumed
        attempt whose first flight was lost: its second probe raises "missing OneRtt packet
        key", and so does every later one. The error stays this connection's: the timer is
        re-armed and the receive path stays open, so a late answer from the gateway still
        completes the handshake (the gateway may already hold the attempt's 0-RTT); an attempt
        that has heard nothing ends UNANSWERED_AFTER_REFUSAL_S later."""
        self.core_refusals += 1
        log.debug("the QUIC core refused to go on (%s); the connection stays", exc)
        if (self._unanswered is None and not self.connected.done()
                and self.datagrams_received == 0):
            self._unanswered = self._loop.call_later(UNANSWERED_AFTER_REFUSAL_S,
                                                     self._give_up_unanswered)

    def _give_up_unanswered(self) -> None:
        """UNANSWERED_AFTER_REFUSAL_S after the core's first refusal: an attempt that still
        has heard nothing from the gateway ends (the uplink starts a fresh one)."""
        self._unanswered = None
        if not self.connected.done() and self.datagrams_received == 0:
            log.info("no answer to the first flight and the QUIC core sends no more: "
                     "a fresh attempt")
            self._finish("no answer to the first flight")

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.last_receive = self._loop.time()
        self.datagrams_received += 1
        if self.on_datagram is not None:
            self.on_datagram(self.last_receive)
        self.conn.receive_datagram(data, addr, now=self._loop.time())
        self.transmit()

    def error_received(self, exc: Exception) -> None:
        # ICMP unreachable and the like: QUIC's own timers decide when the path is dead
        log.debug("udp error: %s", exc)

    def _process_events(self) -> None:
        while (event := self.conn.next_event()) is not None:
            self._event(event)

    def _event(self, event) -> None:
        lib = self.lib
        if isinstance(event, lib.HandshakeCompleted):
            self.handshakes += 1
            if self._ack_delay_s:
                lib.delay_acks_up_to(self.conn, self._ack_delay_s)
            # no probe of data the gateway may have queued sooner than the floor (quic_acks)
            lib.floor_probe_timeout(self.conn, PROBE_TIMEOUT_FLOOR_S)
            self.session_resumed = event.session_resumed
            self.early_data_accepted = event.early_data_accepted
            log.info("handshake completed (resumed=%s, early data=%s)", event.session_resumed,
                     event.early_data_accepted)
            # 0-RTT the gateway rejected (a ticket it no longer holds): its stream data, the
            # hello, goes again in 1-RTT now (this runs after a transmit: the next one sends it)
            if (not event.early_data_accepted
                    and lib.resend_rejected_early_data(self.conn, self._loop.time())):
                self._loop.call_soon(self.transmit)
            if not self.connected.done():
                self.connected.set_result(event.session_resumed)
        elif isinstance(event, lib.StreamDataReceived):
            self._on_stream_data(event.stream_id, event.data, event.end_stream)
        elif isinstance(event, lib.ConnectionTerminated):
            self._finish(f"{event.reason_phrase or 'closed'} (code {event.error_code})")

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(max(0.5, self._last_send + self._keepalive_s - self._loop.time()))
            if self._loop.time() - self._last_send >= self._keepalive_s:
                self.ping()
