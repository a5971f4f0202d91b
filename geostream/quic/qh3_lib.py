"""qh3 behind the QUIC seam (geostream/quic/__init__.py): an aioquic fork whose packet core is
native code (5-9x less server CPU per exchange, docs/benchmarks.md). Its Python facade keeps
aioquic's sans-IO shape, so the public names map one to one; the hooks differ because the
packet core (ACK scheduling, loss recovery, connection IDs after the first) is native.

This is the only module that imports qh3. What each hook costs, how the gateway's edge
follows a migrating peer for qh3's core (which keeps four paths per connection), and the one
gateway must qh3 cannot give through any hook (routable NEW_CONNECTION_ID CIDs) are in
docs/link.md §QUIC library.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable

import qh3.quic.connection as _connection_module
from qh3._hazmat import Buffer, UdpSocketState
from qh3._hazmat import pull_quic_header as _pull_quic_header
from qh3.asyncio import QuicConnectionProtocol, connect, serve
from qh3.asyncio.server import QuicServer
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection as _Qh3Connection
from qh3.quic.connection import QuicConnectionError, QuicErrorCode
from qh3.quic.events import (
    ConnectionIdIssued,
    ConnectionIdRetired,
    ConnectionTerminated,
    HandshakeCompleted,
    PingAcknowledged,
    QuicEvent,
    StreamDataReceived,
)
from qh3.quic.packet import (
    QuicPacketType,
    encode_quic_retry,
)
from qh3.quic.tls_bridge import QuicTlsBridgeError
from qh3.tls import CipherSuite, ExtensionType, SessionTicket

from geostream.quic.spent import ListQueue
from geostream.quic_acks import MAX_ACK_DELAY_LIMIT_MS

log = logging.getLogger(__name__)

NAME = "qh3"


class _PeerCloseIsNotAWarning(logging.Filter):
    """qh3 logs every connection its peer closed as a WARNING ("Native peer close") on the
    "quic" logger, before the ConnectionTerminated event that reports it: one line per
    vehicle that reconnects or closes (5,000+ per load-test run of 5,000 vehicles). A peer's
    close is ordinary: it goes down to DEBUG; everything else qh3 logs stays as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and str(record.msg).startswith("Native peer close"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


logging.getLogger("quic").addFilter(_PeerCloseIsNotAWarning())

__all__ = [
    "NAME", "CipherSuite", "ConnectionIdIssued", "ConnectionIdRetired", "ConnectionTerminated",
    "HandshakeCompleted", "PingAcknowledged", "QuicConfiguration", "QuicConnection",
    "QuicConnectionProtocol", "QuicEvent", "QuicServer", "SessionTicket", "StreamDataReceived",
    "connect", "serve",
]

_TRANSPORT_PARAMETERS = ExtensionType.QUIC_TRANSPORT_PARAMETERS
# How long qh3's native core waits before it sends an ACK by itself: its `ack_application`
# timer, 1 ms after an ack-eliciting packet (see QuicConnection).
_CORE_ACK_DELAY_S = 0.001


def ticket_time(moment: datetime.datetime) -> datetime.datetime:
    """A session ticket's time as qh3 keeps it: naive, in UTC (it compares ticket times with
    a naive `utcnow()`; an aware one would raise TypeError in the handshake)."""
    return moment.astimezone(datetime.UTC).replace(tzinfo=None)


def destination_cid(datagram: bytes, cid_length: int) -> bytes | None:
    """The destination connection ID of the first packet of `datagram` (None: not QUIC)."""
    try:
        return _pull_quic_header(datagram, 0, cid_length)[3]
    except ValueError:
        return None


def initial_token(datagram: bytes, cid_length: int) -> bytes | None:
    """The token of the Initial packet that begins `datagram` (empty: none; None: not an
    Initial, or it does not parse)."""
    try:
        header = _pull_quic_header(datagram, 0, cid_length)
    except ValueError:
        return None
    return header[5] if header[1] == int(QuicPacketType.INITIAL) else None


def retry_packet(version: int, source_cid: bytes, destination_cid: bytes,
                 original_destination_cid: bytes, token: bytes) -> bytes:
    """A Retry packet (RFC 9000 §17.2.5) with its integrity tag (RFC 9001 §5.8)."""
    return encode_quic_retry(version=version, source_cid=source_cid,
                             destination_cid=destination_cid,
                             original_destination_cid=original_destination_cid,
                             retry_token=token)


# --- ACKs that ride with data (geostream/quic_acks.py says why) ----------------------------

# the name of the native core's timer that sends a pending 1-RTT ACK (`get_timer`'s tuple)
_ACK_TIMER = "ack_application"
# the native core's timer of loss detection: a probe timeout, or a loss by time threshold
_LOSS_TIMER = "loss_detection"
# A floored probe timeout doubles with each probe that went unanswered, as the core's own
# (RFC 9002 §6.2.1), up to 2^6 times the floor: past that the connection's idle timeout and the
# agent's liveness probe decide, not QUIC's probes.
_PTO_BACKOFF_MAX = 6


class QuicConnection(_Qh3Connection):
    """qh3's connection facade, which can hold a pending ACK (`delay_acks_up_to`) and, like
    aioquic's, takes data for a connection the peer closed without raising.

    qh3's native core arms its `ack_application` timer 1 ms after an ack-eliciting packet,
    whatever `max_ack_delay` it was built with, and its `datagrams_to_send` writes the ACK once
    that timer is due. Holding it means reporting a later time from `get_timer` (the first
    unacknowledged packet's arrival + the hold) and not firing the core's timers before then:
    anything the endpoint sends meanwhile carries the ACK (the core writes a pending ACK into
    every packet it builds), which is the point. A timer of the core's that another timer can
    hide behind the ACK's (loss detection, path validation) is armed only while packets of ours
    are in flight, so the ACK is held only while none is. A `datagrams_to_send` past the core's
    1 ms (after a datagram that elicits nothing) still sends the ACK alone: polling with an
    earlier clock would falsify the send times of anything else it sends. Off (plain qh3) until
    `delay_acks_up_to`: one attribute test per call; held, two core property reads per
    `get_timer`.
    """

    _seam_ack_hold: float | None = None  # seconds an ACK may wait (None: qh3's own 1 ms)
    _seam_ack_until: float | None = None  # the held ACK's deadline
    _seam_received_at = 0.0  # when the oldest packet the held ACK acknowledges arrived
    _seam_pto_floor: float | None = None  # the least probe timeout (None: the core's own)
    _seam_loss_until: float | None = None  # the floored probe timeout's deadline
    _seam_sent_at = 0.0  # when the newest datagram left
    _seam_heard_at = 0.0  # when the newest datagram arrived

    def receive_datagram(self, data: bytes, addr, now: float) -> None:
        if self._seam_ack_until is None:
            self._seam_received_at = now
        self._seam_heard_at = now
        if self._receive_short(data, addr, now) is None:
            super().receive_datagram(data, addr, now)

    # --- the per-datagram path after the handshake, without the facade's general walk -------
    # After the handshake a datagram with a short header is one 1-RTT packet to its end (RFC
    # 9000 §12.2): the facade's packet walk, its address check (inet_pton), version and retry
    # checks and qlog calls have nothing to do for it; one core call and the event drain do
    # it all. The same for `datagrams_to_send` without a qlog. (Measured: docs/benchmarks.md,
    # "The transport edge", session 10.)

    def _receive_short(self, data: bytes, addr, now: float) -> int | None:
        """A short-header datagram after the handshake straight to the core: the count of
        packets it authenticated (0: garbled, replayed), None when it is not one."""
        core = self._core
        if (core is None or not self._handshake_complete or self._quic_logger is not None
                or not data or data[0] & 0x80):
            return None
        try:
            report = core.receive_datagram(data, addr, now, len(data))
        except RuntimeError as exc:  # as the facade's `_call_core`
            raise QuicConnectionError(QuicErrorCode.INTERNAL_ERROR, None, str(exc)) from exc
        self._drain_core()
        return report[2]

    def datagrams_to_send(self, now: float) -> list:
        core = self._core
        if self._seam_ack_until is _WITH_DATA:
            _ack_rides(self, core, now)
        # bytes in flight before: more after means an ack-eliciting packet left (an ACK-only
        # one counts for nothing), which restarts the floored probe timeout
        before = None if core is None or self._seam_pto_floor is None else core.bytes_in_flight
        if core is None or self._quic_logger is not None:
            datagrams = super().datagrams_to_send(now)
        else:
            datagrams = []
            poll = core.poll_transmit
            try:
                while (transmit := poll(now)) is not None:
                    datagrams.append((transmit[0], transmit[1]))
            except RuntimeError as exc:
                raise QuicConnectionError(QuicErrorCode.INTERNAL_ERROR, None, str(exc)) from exc
        if before is not None and datagrams and core.bytes_in_flight > before:
            self._seam_sent_at = now
        return datagrams

    def receive_many_datagrams(self, datagrams: list[bytes], addr, now: float) -> None:
        if self._seam_ack_until is None:
            self._seam_received_at = now
        self._seam_heard_at = now
        super().receive_many_datagrams(datagrams, addr, now)

    def receive_gro_buffer(self, buffer: bytes, segment_size: int, addr, now: float) -> None:
        if self._seam_ack_until is None:
            self._seam_received_at = now
        self._seam_heard_at = now
        super().receive_gro_buffer(buffer, segment_size, addr, now)

    def get_timer(self) -> float | None:
        core = self._core
        timer = None if core is None else core.get_timer()
        if timer is None:
            self._seam_ack_until = None
            return None
        name, at = timer
        self._seam_loss_until = None
        if name == _LOSS_TIMER and self._seam_pto_floor is not None:
            if self._seam_ack_until is not _WITH_DATA:  # that stays until the data's poll
                self._seam_ack_until = None
            if self._seam_heard_at > self._seam_sent_at:
                return at  # heard since the newest send: a loss by time threshold, or a probe
            # nothing heard since the newest send: a probe timeout, floored (with its backoff)
            floor_at = self._seam_sent_at + self._seam_pto_floor * (
                2 ** min(core.pto_count, _PTO_BACKOFF_MAX))
            if floor_at > at:
                self._seam_loss_until = floor_at
                return floor_at
            return at
        if self._seam_ack_hold is None or name != _ACK_TIMER:
            if self._seam_ack_until is not _WITH_DATA:
                self._seam_ack_until = None
            return at
        if self._seam_ack_until is None:
            if core.outstanding_application_packets:  # a loss timer may hide behind the ACK's
                return at
            self._seam_ack_until = self._seam_received_at + self._seam_ack_hold
        return max(at, self._seam_ack_until)

    def handle_timer(self, now: float) -> None:
        if self._seam_ack_until is not None and now < self._seam_ack_until:
            return  # the only timer due is the held ACK's
        if self._seam_loss_until is not None and now < self._seam_loss_until:
            return  # the core's earliest timer is the floored probe timeout
        super().handle_timer(now)

    # --- sending on a closed connection: nothing, as on aioquic -------------------------------
    # qh3 raises QuicConnectionError("connection is closed") once the peer closed the
    # connection, before the caller has seen the ConnectionTerminated event that follows; aioquic
    # drops the data. The agent sends whenever its journal has a batch: one attribute test.

    def send_stream_data(self, stream_id: int, data, end_stream: bool = False) -> None:
        if self._close_event is not None:
            return
        if (type(data) is bytes and self._handshake_complete and self._core is not None
                and ((stream_id & 1) != (not self._is_client)  # the peer's stream
                     or stream_id in self._created_local_stream_ids)):
            # a stream the peer opened, or one of ours already open, after the handshake: the
            # facade's one core call, less its buffer conversion and its bookkeeping of streams
            # opened before the handshake (RFC 9000 §2.1: bit 0 set, a server's stream)
            self._call_core(self._core.send_stream, stream_id, data, end_stream)
            return
        super().send_stream_data(stream_id, data, end_stream)

    def send_ping(self, uid: int) -> None:
        if self._close_event is None:
            super().send_ping(uid)

    # --- a new path before the peer's next CID came: the current CID, as on aioquic ---------
    # qh3 raises ValueError("... no unused peer connection ID") when an endpoint moves again
    # before the peer's NEW_CONNECTION_ID for the last move arrived (two address changes within
    # one round trip: a flapping modem, a loaded machine); aioquic keeps the current CID. The
    # move itself goes on either way: the socket changes, the peer follows the new address.

    def change_connection_id(self) -> None:
        try:
            super().change_connection_id()
        except ValueError as exc:
            if "no unused peer connection ID" not in str(exc):
                raise
            log.debug("no unused peer CID yet: the move keeps the current one")


# `_seam_ack_until` while stream data waits to carry the pending ACK (`ack_with_data`): the
# next poll decides how, knowing the time
_WITH_DATA = -1.0


def ack_with_data(quic) -> None:
    """Let the next packet carry any pending 1-RTT ACK (call before sending stream data).
    qh3's core writes an ACK frame into a packet only once its `ack_application` timer
    (1 ms after the packet it acknowledges) is due, so stream data sent sooner (a commit
    under 1 ms) left without it, and the ACK followed alone. On the seam's `QuicConnection`
    the next poll (`datagrams_to_send`, `datagrams_to`), which knows the time, fires that
    timer at its own deadline only while the deadline is still ahead (the ACK's ack_delay
    field then overstates the wait by under 1 ms); past it, the core writes the pending ACK
    into the packet by itself, with the true wait in its ack_delay field. Firing the timer
    there at its old deadline made the field say ~1 ms whatever the ACK had waited (a slow
    commit, a vehicle's next batch a second later), and the peer took that wait for round
    trip (RFC 9002 §5.3 subtracts ack_delay up to max_ack_delay from an RTT sample; measured:
    a 300 ms commit made the vehicle's smoothed RTT 0.17-0.19 s on a 20 ms path, docs/link.md).
    Another qh3 connection has its timer fired at once, at its deadline."""
    if isinstance(quic, QuicConnection):
        quic._seam_ack_until = _WITH_DATA  # the held ACK is due: it leaves with the data
        return
    core = quic._core
    timer = None if core is None else core.get_timer()
    if timer is not None and timer[0] == _ACK_TIMER:
        _fire_ack_timer(quic, core, timer[1])


def _fire_ack_timer(quic, core, at: float) -> None:
    """The core's ACK timer, fired at its own deadline `at`; its events (none, as a rule: the
    ACK's timer produces none) through the facade's drain only when there is one."""
    try:
        core.handle_timer(at)
    except RuntimeError as exc:  # as the facade's `_call_core`
        raise QuicConnectionError(QuicErrorCode.INTERNAL_ERROR, None, str(exc)) from exc
    if (native := core.next_event()) is not None:
        _drain_from(quic, core, native)


def _ack_rides(quic, core, now: float) -> None:
    """Before a poll after `ack_with_data`: a pending ACK whose 1 ms has not passed by `now`
    is made due (its timer fired at its deadline); one past it the core writes itself."""
    quic._seam_ack_until = None
    timer = None if core is None else core.get_timer()
    if timer is not None and timer[0] == _ACK_TIMER and timer[1] > now:
        _fire_ack_timer(quic, core, timer[1])


def advertise_max_ack_delay(quic, delay_s: float) -> None:
    """Advertise `max_ack_delay` = delay_s (call before the first packet). qh3 has no setting
    for it: the TLS bridge serializes its transport parameters into the handshake extensions
    as it is built (and again on a version change), so both the extension and the method are
    re-encoded with delay_s, once per connection. That is all: qh3 2.1.0's native core takes a
    `max_ack_delay` argument and ignores it (its Rust constructor discards it), so the ACK is
    held by the seam's `QuicConnection` (`delay_acks_up_to`), not by the core."""
    delay_ms = min(MAX_ACK_DELAY_LIMIT_MS, max(1, round(delay_s * 1000)))
    create_tls = quic._create_tls

    def advertising(encoded: bytes) -> bytes:
        return with_max_ack_delay(encoded, delay_ms)

    def create_tls_advertising(*args, **kwargs):
        bridge = create_tls(*args, **kwargs)
        serialize = bridge.serialize_transport_parameters
        bridge.serialize_transport_parameters = lambda: advertising(serialize())
        bridge.tls.handshake_extensions = [
            (kind, advertising(data) if kind == _TRANSPORT_PARAMETERS else data)
            for kind, data in bridge.tls.handshake_extensions]
        return bridge

    quic._create_tls = create_tls_advertising


# RFC 9000 §18.2: the transport parameter max_ack_delay (a varint of milliseconds)
_MAX_ACK_DELAY_PARAMETER = 0x0B


def _varint(value: int) -> bytes:
    buf = Buffer(capacity=8)
    buf.push_uint_var(value)
    return buf.data


def with_max_ack_delay(encoded: bytes, delay_ms: int) -> bytes:
    """Encoded transport parameters (RFC 9000 §18) with max_ack_delay = `delay_ms`: that one
    parameter's bytes replaced where it stands (appended when absent), the others copied as
    they are. Parsing the whole extension into qh3's dataclass and encoding it again cost
    ~70 µs per connection on each side of a handshake, ~10x this walk (docs/benchmarks.md,
    "What a handshake costs each side, session 18"); ValueError if `encoded` is malformed."""
    buf = Buffer(data=encoded)
    value = _varint(delay_ms)
    ours = _varint(_MAX_ACK_DELAY_PARAMETER) + _varint(len(value)) + value
    parts, copied, replaced, end = [], 0, False, len(encoded)
    while not buf.eof():
        start = buf.tell()
        parameter = buf.pull_uint_var()
        length = buf.pull_uint_var()
        stop = buf.tell() + length
        if stop > end:
            raise ValueError("transport parameters: a value runs past the end")
        buf.seek(stop)
        if parameter == _MAX_ACK_DELAY_PARAMETER:
            parts += (encoded[copied:start], ours)
            copied, replaced = stop, True
    parts.append(encoded[copied:])
    if not replaced:
        parts.append(ours)
    return b"".join(parts)


def delay_acks_up_to(quic, delay_s: float) -> None:
    """Wait up to delay_s (at most what was advertised) before an ACK-only datagram: the
    seam's `QuicConnection` holds the ACK (a connection qh3's server built becomes one)."""
    if type(quic) is _Qh3Connection:
        quic.__class__ = QuicConnection  # adds behaviour only, no state of its own
    if isinstance(quic, QuicConnection):
        quic._seam_ack_hold = delay_s


def floor_probe_timeout(quic, floor_s: float) -> None:
    """Send no probe (PTO) sooner than floor_s after the newest datagram while nothing was
    heard since it (doubling with each unanswered probe): a peer that is only slow, its
    socket queue longer than our RTT estimate allows, gets no copy of data it has queued
    already. A loss by time threshold (something sent later was acknowledged: the peer is
    answering) is left to the core. qh3's core has no setting; the seam's `QuicConnection`
    reports the later deadline from `get_timer` and fires nothing before it."""
    if type(quic) is _Qh3Connection:
        quic.__class__ = QuicConnection  # adds behaviour only, no state of its own
    if isinstance(quic, QuicConnection):
        quic._seam_pto_floor = floor_s


def resend_rejected_early_data(quic, now: float) -> int:
    """Nothing to do: when the server's EncryptedExtensions lack early_data, qh3's facade tells
    its core (`reject_zero_rtt`), which queues the 0-RTT stream data again for 1-RTT; it goes
    with the client's Finished (aioquic_lib's twin says why aioquic needs help)."""
    return 0


def ack_delays(quic) -> tuple[float | None, float | None]:
    """(how long `quic` holds an ACK, the peer's advertised max_ack_delay) in seconds."""
    local = getattr(quic, "_seam_ack_hold", None) or _CORE_ACK_DELAY_S
    params = getattr(quic, "_applied_transport_parameters", None)
    peer = getattr(params, "max_ack_delay", None)
    return local, (None if peer is None else peer / 1000)


# --- routable connection IDs (backend/cluster/cids.py) -------------------------------------

# qh3's native core draws the CIDs it sends in NEW_CONNECTION_ID itself, without a hook: only
# the first (the handshake's) can carry a server id.
ROUTABLE_NEW_CIDS = False


def issue_routable_cids(quic, new_cid: Callable[[], bytes]) -> None:
    """Make the server-side `quic`'s first CID one drawn by `new_cid` (call from the protocol's
    constructor, before the core is built and the server registers `quic.host_cid`). The one
    CID qh3's core issues later is random (`ROUTABLE_NEW_CIDS`)."""
    quic.host_cid = new_cid()


def host_cids(quic) -> list[bytes]:
    """The CIDs of `quic` the seam knows of: the first (the core keeps the others)."""
    return [quic.host_cid]


# --- a gateway edge that owns its peers' addresses (backend/edge_core.py, PeerAddress) -----

# qh3's native core keeps at most four paths per connection (`MAX_PATHS` in its path table)
# and never evicts one: a fifth distinct client address is dropped unanswered. It also fails
# an aioquic client's first move ("packet builder capacity exhausted": it cannot pad the path
# challenge to 1,200 bytes within the anti-amplification budget of a small datagram). So the
# gateway's edge shows the core one address per connection and follows the peer itself.
EDGE_OWNS_PEER_ADDRESS = True


# Linux's UDP_GRO socket option (SOL_UDP; Python does not name it)
_UDP_GRO = 104
_SOL_UDP = 17


def batch_receiver(sock) -> Callable[[], list] | None:
    """A batch read of `sock`'s waiting datagrams: qh3's `UdpSocketState.recv`, one
    `recvmmsg` for up to 32 of them, `[(data, addr), ...]` with `addr` as `recvfrom` gives
    it (IPv4 `(host, port)`, IPv6 `(host, port, flowinfo, scope_id)`, an IPv4 peer of a
    dual-stack socket `::ffff:`-mapped), `[]` when none waits; None where qh3 has no batch
    read for this socket (not Unix). Measured against a `recvfrom` per datagram in
    docs/benchmarks.md, "The gateway's transport edge, session 14".

    The state sets its socket options (quinn-udp's: packet info and TOS control messages,
    Don't Fragment without local fragmentation, as RFC 9000 §14 asks, and UDP GRO). GRO is
    turned off again: it joins datagrams of one sender into one read, which this reader
    splits but a plain `recvmsg` of the same socket (the edge's timestamped read) would hand
    on as one datagram; at one datagram per vehicle a second nothing is there to join."""
    try:
        state = UdpSocketState(sock.fileno())
    except Exception:  # NotImplementedError off Unix; an OSError on a socket it cannot use
        return None
    try:
        sock.setsockopt(_SOL_UDP, _UDP_GRO, 0)
    except OSError:
        return None
    return state.recv


def receive_authenticated(quic, data: bytes, addr, now: float) -> int:
    """`quic.receive_datagram(data, addr, now)`, returning how many packets of `data` the
    core authenticated and had not received before (0: spoofed, garbled or replayed). The
    facade drops the core's receive report; it is read here for this one call only."""
    if isinstance(quic, QuicConnection):
        if quic._seam_ack_until is None:
            quic._seam_received_at = now
        accepted = quic._receive_short(data, addr, now)
        if accepted is not None:
            return accepted
    call_core = quic._call_core
    accepted = 0

    def reporting(operation, *args):
        nonlocal accepted
        result = call_core(operation, *args)
        if getattr(operation, "__name__", "") == "receive_datagram":
            accepted += result[2]  # the report's count of packets processed
        return result

    quic._call_core = reporting
    try:
        quic.receive_datagram(data, addr, now)
    finally:
        del quic._call_core
    return accepted


class _HeldEvent:
    """A connection's core that returns one native event taken from it first, then its own:
    the facade's event drain (`_drain_core`) sees the event it was not given."""

    __slots__ = ("_core", "_held")

    def __init__(self, core, held) -> None:
        self._core = core
        self._held = held

    def next_event(self):
        held, self._held = self._held, None
        return held if held is not None else self._core.next_event()

    def __getattr__(self, name: str):
        return getattr(self._core, name)


def _drain_from(quic, core, native) -> None:
    """The facade's event drain from `native` (taken from `core` already) on."""
    quic._core = _HeldEvent(core, native)
    try:
        quic._drain_core()
    finally:
        quic._core = core


# the native core's event for stream data: ("stream_data", stream_id, data, end_stream)
_STREAM_DATA = "stream_data"


def receive_established(quic, data: bytes, addr, now: float) -> list | None:
    """A short-header datagram of an established server connection (`delay_acks_up_to`
    made it the seam's `QuicConnection`) straight into its core: the events it produced, in
    order, or None when it is not one (the caller takes the general path). Stream data, the
    common event, goes from the core's tuple to its event without the facade's event drain
    and queue; the first event of another kind hands it and the rest to the facade
    (`_HeldEvent`), as its own `receive_datagram` would have. The peer's address does not
    change here: the caller owns it (`EDGE_OWNS_PEER_ADDRESS`) and passes the library's."""
    core = quic._core
    if (core is None or type(quic) is not QuicConnection or not quic._handshake_complete
            or quic._quic_logger is not None or not data or data[0] & 0x80):
        return None
    if quic._seam_ack_until is None:
        quic._seam_received_at = now
    try:
        core.receive_datagram(data, addr, now, len(data))
    except RuntimeError as exc:  # as the facade's `_call_core`
        raise QuicConnectionError(QuicErrorCode.INTERNAL_ERROR, None, str(exc)) from exc
    events = []
    next_event = core.next_event
    while (native := next_event()) is not None:
        if native[0] == _STREAM_DATA:
            events.append(StreamDataReceived(native[2], native[3], native[1]))
            continue
        _drain_from(quic, core, native)
        while (event := quic.next_event()) is not None:
            events.append(event)
        break
    return events


def receive_on_client(quic, data: bytes, addr, now: float) -> list | None:
    """`receive_established` for a client connection (the seam's `QuicConnection`, as
    `connect` builds it here): also keeps when the newest datagram arrived, which the floored
    probe timeout reads (`floor_probe_timeout`), as `QuicConnection.receive_datagram` does.
    The load tester's edge takes each vehicle's datagrams this way (loadtest/edge.py)."""
    events = receive_established(quic, data, addr, now)
    if events is not None:
        quic._seam_heard_at = now
    return events


def datagrams_to(quic, addr, now: float) -> list:
    """`quic.datagrams_to_send(now)`, each addressed to `addr` (the peer's address the edge
    owns): the seam's `QuicConnection` polls its core into the list it returns."""
    core = quic._core
    if core is None or type(quic) is not QuicConnection or quic._quic_logger is not None:
        return [(data, addr) for data, _ in quic.datagrams_to_send(now=now)]
    if quic._seam_ack_until is _WITH_DATA:
        _ack_rides(quic, core, now)
    datagrams = []
    poll = core.poll_transmit
    try:
        while (transmit := poll(now)) is not None:
            datagrams.append((transmit[0], addr))
    except RuntimeError as exc:
        raise QuicConnectionError(QuicErrorCode.INTERNAL_ERROR, None, str(exc)) from exc
    return datagrams


def newest_packet_sent(quic) -> int | None:
    """The number of the newest 1-RTT packet `quic` sent that awaits its acknowledgement."""
    core = quic._core
    outstanding = None if core is None else core.outstanding_application_packets
    return max(p[0] for p in outstanding) if outstanding else None


def packet_outstanding(quic, packet_number: int) -> bool:
    """Whether 1-RTT packet `packet_number` is neither acknowledged nor declared lost."""
    core = quic._core
    return core is not None and any(
        p[0] == packet_number for p in core.outstanding_application_packets)


def packets_lost(quic) -> int:
    """How many packets `quic` declared lost so far."""
    core = quic._core
    return 0 if core is None else core.loss_total


def recovery_counts(quic) -> tuple[int, int] | None:
    """(probe timeouts fired, packets declared lost) so far: what a datagram sent after a timer
    or a receive was for (the load tester's count of datagrams by kind)."""
    core = quic._core
    return None if core is None else (core.pto_total, core.loss_total)


# --- what the agent shows and pins ---------------------------------------------------------

def smoothed_rtt(quic) -> float | None:
    """The smoothed round-trip time in seconds (None before the first sample)."""
    core = getattr(quic, "_core", None)
    return None if core is None else core.smoothed_rtt


def peer_address(quic):
    """The address `quic` sends to now (its validated path after a migration)."""
    core = getattr(quic, "_core", None)
    return None if core is None else core.active_path[2]


def peer_certificate_der(quic) -> bytes | None:
    """DER of the certificate the server presented (None on a resumed session)."""
    cert = quic.get_peercert()
    return None if cert is None else cert.public_bytes()


# --- a gateway's memory per connection -----------------------------------------------------

class _SpentServerTls:
    """Stands in for a server connection's TLS bridge once its handshake completed: the
    answers the connection still reads, and TLS 1.3 over QUIC has no message a client may
    send a server then (key updates are the native core's, session tickets went out in the
    handshake's last step), so any is `unexpected_message` (CRYPTO_ERROR + 10)."""

    __slots__ = ()
    handshake_complete = True
    tls = None
    cipher_suite = peer_certificate = ech_retry_configs = None
    peer_certificate_chain: list = []
    ech_accepted = False

    def receive_crypto(self, *args, **kwargs) -> None:
        raise QuicTlsBridgeError(_CRYPTO_ERROR + 10, "TLS message after the handshake")


_CRYPTO_ERROR = 0x100  # RFC 9000 §20.1: CRYPTO_ERROR + the TLS alert


def drop_tls_bridge(quic) -> bool:
    """Drop a server connection's TLS bridge and context after its handshake (~6.6 KiB of
    heap and ~5 KiB outside it); False (left alone) for a client or a handshake not done."""
    bridge = getattr(quic, "_tls", None)
    if (getattr(quic, "_is_client", True) or not getattr(quic, "_handshake_complete", False)
            or not getattr(bridge, "handshake_complete", False)
            or isinstance(bridge, _SpentServerTls)):
        return False
    quic._tls = _SpentServerTls()
    return True


class _SpentTransportParameters:
    """What a server connection still reads of the peer's transport parameters after its
    handshake (`ack_delays`): the facade applied them to the native core when they came, and
    reads its copy only while TLS runs (the client's 0-RTT, a version change)."""

    __slots__ = ("max_ack_delay",)

    def __init__(self, max_ack_delay: int | None):
        self.max_ack_delay = max_ack_delay


# A spent server connection's facade attributes whose values every such connection shares:
# the class holds them (`QuicConnection`), so each instance's dict need not (it is rebuilt
# without them). Removed only where the instance's value equals the class's (same type):
# the connection reads the same; one it sets again is its own once more.
_SPENT_SHARED = {
    "_is_client": False, "_connect_called": False, "_handshake_complete": True,
    "_handshake_confirmed": True, "_transport_parameters_applied": True,
    "_early_data_attempted": False, "_zero_rtt_resolved": False, "_retry_count": 0,
    "_version_negotiated": False, "_pre_handshake_state_replayed": True,
    "_retry_source_connection_id": None, "_quic_logger": None, "_close_event": None,
    "_remote_max_datagram_frame_size": None, "_peer_token": b"", "_version": 1,
    "_next_stream_id_bidi": 1, "_next_stream_id_uni": 3, "_local_next_stream_id_bidi": 1,
    "_local_next_stream_id_uni": 3,
    # read after the handshake only by `get_send_buffer_size` before the replay (not after)
    "_pre_handshake_streams": (), "_pre_handshake_writes": (),
}
for _name, _value in _SPENT_SHARED.items():
    assert not hasattr(QuicConnection, _name), _name  # qh3 would have a default of its own
    setattr(QuicConnection, _name, _value)
# the facade's state enum, the one value shared attributes need (CONNECTED)
QuicConnection._state = _connection_module.QuicConnectionState.CONNECTED
_SPENT_SHARED["_state"] = QuicConnection._state
QuicConnection._remote_addr = None  # a spent connection's (`spend_facade`)
# read by TLS only, as it is built (`_create_tls`): a spent connection's are gone
QuicConnection._session_ticket_fetcher = QuicConnection._session_ticket_handler = None
_MISSING = object()


class _NoLocalStreams(frozenset):
    """A spent server connection's `_created_local_stream_ids` while it opened no stream of
    its own (a gateway never does): one shared empty set instead of an empty `set` per
    connection (216 bytes). The facade forgets a finished stream with `discard` (nothing to
    forget here); a stream the server opens goes through `_record_local_stream`, which gives
    the connection a set of its own first (`QuicConnection._record_local_stream`)."""

    __slots__ = ()

    def discard(self, stream_id: int) -> None:
        """Nothing to forget: no stream of this connection's was ever recorded here."""


QuicConnection._created_local_stream_ids = _NoLocalStreams()


def _record_local_stream(self, stream_id: int) -> None:
    """The facade's `_record_local_stream`, on a set of the connection's own once its shared
    empty one (`_NoLocalStreams`) would have to take a stream."""
    if "_created_local_stream_ids" not in self.__dict__:
        self._created_local_stream_ids = set()
    _Qh3Connection._record_local_stream(self, stream_id)


QuicConnection._record_local_stream = _record_local_stream


def spend_facade(quic) -> int:
    """Shrink a server connection's Python facade once its handshake and TLS are done: the
    seam's per-connection closure that builds TLS (`advertise_max_ack_delay`: it ran) and the
    session-ticket callbacks TLS read, the peer's transport parameters but the one still read,
    the event deque, an empty set of locally opened streams (`_NoLocalStreams`), and the
    attributes every such connection shares (`_SPENT_SHARED`), the dict rebuilt to its size.
    Returns the attributes dropped (0: left alone)."""
    if (getattr(quic, "_is_client", True) or not getattr(quic, "_handshake_complete", False)
            or not isinstance(getattr(quic, "_tls", None), _SpentServerTls)
            or getattr(quic, "_core", None) is None):
        return 0
    if type(quic) is _Qh3Connection:
        quic.__class__ = QuicConnection  # adds behaviour only when `delay_acks_up_to` is set
    if not isinstance(quic, QuicConnection):
        return 0
    state = quic.__dict__
    # the closure, and the first datagram's address (read only until the core is built:
    # the core keeps the peer's address, the edge its own)
    dropped = [name for name in ("_create_tls", "_remote_addr", "_session_ticket_fetcher",
                                 "_session_ticket_handler")
               if state.pop(name, _MISSING) is not _MISSING]
    if not state.get("_created_local_stream_ids", True):  # empty: the shared one reads the same
        del state["_created_local_stream_ids"]
        dropped.append("_created_local_stream_ids")
    params = state.get("_applied_transport_parameters")
    if params is not None and not isinstance(params, _SpentTransportParameters):
        state["_applied_transport_parameters"] = _SpentTransportParameters(params.max_ack_delay)
    events = state.get("_events")
    if events is not None and not isinstance(events, ListQueue):
        state["_events"] = ListQueue(events)
    for name, value in _SPENT_SHARED.items():
        mine = state.get(name, _MISSING)
        if (type(mine) is type(value) and mine == value) or (
                value == () and type(mine) is list and not mine):  # an emptied list
            del state[name]
            dropped.append(name)
    quic.__dict__ = dict(state)  # a dict never shrinks as keys go: rebuilt at its size
    return len(dropped)


def trim_new_connection(quic) -> None:
    """Nothing to trim: the native core holds its state outside the Python heap."""


def trim_after_handshake(quic) -> None:
    """A server connection's memory trims once its handshake completed."""
    if drop_tls_bridge(quic):
        spend_facade(quic)
