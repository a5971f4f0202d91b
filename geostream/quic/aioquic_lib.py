"""aioquic behind the QUIC seam (geostream/quic/__init__.py): its public API under the seam's
names, and the private hooks the seam's callers need, each in one function that leaves a
connection alone when the attribute it touches is not there.

This is the only module that imports aioquic. tests/integration/net/test_quic_seam.py pins
the private behaviours the hooks rely on (ACK scheduling, CID drawing, frame table).
"""

from __future__ import annotations

import datetime
from collections import deque
from collections.abc import Callable

from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.asyncio.server import QuicServer
from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.crypto import NoCallback
from aioquic.quic.events import (
    ConnectionIdIssued,
    ConnectionIdRetired,
    ConnectionTerminated,
    HandshakeCompleted,
    PingAcknowledged,
    QuicEvent,
    StreamDataReceived,
)
from aioquic.quic.packet import (
    QuicPacketType,
    encode_quic_retry,
    pull_quic_header,
    pull_quic_transport_parameters,
    push_quic_transport_parameters,
)
from aioquic.quic.packet_builder import QuicDeliveryState
from aioquic.tls import AlertUnexpectedMessage, CipherSuite, Epoch, SessionTicket, State

from geostream.quic.spent import ListQueue
from geostream.quic_acks import MAX_ACK_DELAY_LIMIT_MS

NAME = "aioquic"

__all__ = [
    "NAME", "CipherSuite", "ConnectionIdIssued", "ConnectionIdRetired", "ConnectionTerminated",
    "HandshakeCompleted", "PingAcknowledged", "QuicConfiguration", "QuicConnection",
    "QuicConnectionProtocol", "QuicEvent", "QuicServer", "SessionTicket", "StreamDataReceived",
    "connect", "serve",
]

# Room for aioquic's transport parameters (~100 bytes) with margin.
_PARAMS_BUFFER = 1024
# After the handshake: room for a NewSessionTicket (~250 bytes) or a TLS alert, with margin.
POST_HANDSHAKE_BUFFER = 1024


def ticket_time(moment: datetime.datetime) -> datetime.datetime:
    """A session ticket's time as aioquic keeps it: aware, in UTC."""
    return moment.astimezone(datetime.UTC)


def destination_cid(datagram: bytes, cid_length: int) -> bytes | None:
    """The destination connection ID of the first packet of `datagram` (None: not QUIC)."""
    try:
        return pull_quic_header(Buffer(data=datagram), host_cid_length=cid_length).destination_cid
    except ValueError:
        return None


def initial_token(datagram: bytes, cid_length: int) -> bytes | None:
    """The token of the Initial packet that begins `datagram` (empty: none; None: not an
    Initial, or it does not parse)."""
    try:
        header = pull_quic_header(Buffer(data=datagram), host_cid_length=cid_length)
    except ValueError:
        return None
    return header.token if header.packet_type == QuicPacketType.INITIAL else None


def retry_packet(version: int, source_cid: bytes, destination_cid: bytes,
                 original_destination_cid: bytes, token: bytes) -> bytes:
    """A Retry packet (RFC 9000 §17.2.5) with its integrity tag (RFC 9001 §5.8)."""
    return encode_quic_retry(version=version, source_cid=source_cid,
                             destination_cid=destination_cid,
                             original_destination_cid=original_destination_cid,
                             retry_token=token)


# --- ACKs that ride with data (geostream/quic_acks.py says why) ----------------------------

def ack_with_data(quic) -> None:
    """Let the next packet carry any pending 1-RTT ACK (call before sending stream data):
    aioquic writes an ACK frame only once its delay expired, even into a packet it builds."""
    spaces = getattr(quic, "_spaces", None)
    space = spaces.get(Epoch.ONE_RTT) if isinstance(spaces, dict) else None
    if space is not None and space.ack_at is not None:
        space.ack_at = 0.0


def advertise_max_ack_delay(quic, delay_s: float) -> None:
    """Advertise `max_ack_delay` = delay_s in the transport parameters (call before the
    first packet: before `connect()` on a client, in the protocol's constructor on a server)."""
    delay_ms = min(MAX_ACK_DELAY_LIMIT_MS, max(1, round(delay_s * 1000)))
    serialize = getattr(quic, "_serialize_transport_parameters", None)
    if serialize is None:
        return

    def with_max_ack_delay() -> bytes:
        params = pull_quic_transport_parameters(Buffer(data=serialize()))
        params.max_ack_delay = delay_ms
        buf = Buffer(capacity=_PARAMS_BUFFER)
        push_quic_transport_parameters(buf, params)
        return buf.data

    quic._serialize_transport_parameters = with_max_ack_delay


def delay_acks_up_to(quic, delay_s: float) -> None:
    """Wait up to delay_s (at most what was advertised) before an ACK-only datagram. On a
    client, call once the handshake completed: handshake ACKs should not wait."""
    if hasattr(quic, "_ack_delay"):
        quic._ack_delay = delay_s


def floor_probe_timeout(quic, floor_s: float) -> None:
    """Send no probe (PTO) sooner than floor_s after the newest ack-eliciting packet (doubling
    with each unanswered probe, as aioquic's own): a peer that is only slow gets no copy of
    data it has queued already. aioquic's loss recovery takes its PTO period from
    `get_probe_timeout`, which is floored here per connection; a loss by time threshold does
    not use it. Its closing period (3 PTOs) grows with it."""
    loss = getattr(quic, "_loss", None)
    if loss is None:
        return
    probe_timeout = type(loss).get_probe_timeout.__get__(loss)

    def floored(**kwargs) -> float:
        return max(floor_s, probe_timeout(**kwargs))

    loss.get_probe_timeout = floored


def resend_rejected_early_data(quic, now: float) -> int:
    """On a client whose 0-RTT the server rejected (its handshake completed with
    `early_data_accepted` False): declare the 0-RTT packets still unacknowledged lost now, so
    their stream data (the agent's hello) goes again in 1-RTT with the next transmit, at the
    same stream offsets (RFC 9001 §4.6.2; RFC 9002 §6.4: they are no longer in flight).
    aioquic itself keeps them in flight until its loss detection gives up on them: the hello
    went again 0.5 s after the handshake over a 100 ms RTT, as a congestion event. Not one: a
    rejection says nothing of the path. Returns how many packets it declared lost."""
    loss, spaces = getattr(quic, "_loss", None), getattr(quic, "_spaces", None)
    space = spaces.get(Epoch.ONE_RTT) if isinstance(spaces, dict) else None
    if loss is None or space is None:
        return 0
    early = [p for p in space.sent_packets.values() if p.packet_type == QuicPacketType.ZERO_RTT]
    if early:
        loss._on_packets_lost(congestion_event=False, now=now, packets=early, space=space)
    return len(early)


_receive_retry_packet = QuicConnection._receive_retry_packet


def _retry_resends_early_data(self, header, packet_without_tag, now: float) -> None:
    """aioquic's Retry handling, then the stream data of its 0-RTT packets sent before the
    Retry handed back as lost: they went to the destination CID the server answered with a
    Retry, which opened no connection there, so their data (the agent's hello) goes again,
    to the Retry's CID, with the next transmit. aioquic starts new packet spaces at a Retry
    and forgets those packets with their data still counted as sent; the server accepts the
    early data of the new ClientHello, so nothing rejects it either, and the hello never
    came (the gateway's 'no hello within 10s': tests/integration/net/test_handshake_flood.py).
    qh3 sends them again itself."""
    retries = self._retry_count
    spaces = getattr(self, "_spaces", None)
    space = spaces.get(Epoch.ONE_RTT) if isinstance(spaces, dict) else None
    early = [] if space is None else [
        p for p in space.sent_packets.values() if p.packet_type == QuicPacketType.ZERO_RTT]
    _receive_retry_packet(self, header, packet_without_tag, now)
    if self._retry_count != retries:
        for packet in early:
            for handler, args in packet.delivery_handlers:
                handler(QuicDeliveryState.LOST, *args)


QuicConnection._receive_retry_packet = _retry_resends_early_data


def ack_delays(quic) -> tuple[float | None, float | None]:
    """(how long `quic` holds an ACK, the peer's advertised max_ack_delay) in seconds."""
    loss = getattr(quic, "_loss", None)
    return getattr(quic, "_ack_delay", None), getattr(loss, "max_ack_delay", None)


# --- routable connection IDs (backend/cluster/cids.py) -------------------------------------

# every CID the server issues can carry a server id
ROUTABLE_NEW_CIDS = True

def issue_routable_cids(quic, new_cid: Callable[[], bytes]) -> None:
    """Make the server-side `quic` issue only CIDs drawn by `new_cid`. aioquic draws them with
    `os.urandom` in two places without a hook: `__init__` (the first CID, also the initial
    source CID of the transport parameters) and `_replenish_connection_ids` (NEW_CONNECTION_ID).
    Call from the protocol's constructor, before the server registers `quic.host_cid`."""
    first = quic._host_cids[0]
    first.cid = new_cid()
    quic.host_cid = first.cid
    quic._local_initial_source_connection_id = first.cid
    replenish = quic._replenish_connection_ids

    def routable_replenish() -> None:
        known = len(quic._host_cids)
        replenish()
        for connection_id in quic._host_cids[known:]:
            connection_id.cid = new_cid()

    quic._replenish_connection_ids = routable_replenish


def host_cids(quic) -> list[bytes]:
    """Every CID `quic` has issued and not retired (the first included)."""
    return [c.cid for c in quic._host_cids]


# --- a gateway edge that owns its peers' addresses ------------------------------------------

# aioquic follows a migrating peer itself (path validation, any number of paths): the edge
# sends where it says; the hooks below belong to a library that needs the edge to.
EDGE_OWNS_PEER_ADDRESS = False


def batch_receiver(sock) -> Callable[[], list] | None:
    """None: aioquic has no batch read (the edge reads with a `recvfrom` per datagram)."""
    return None


def receive_authenticated(quic, data: bytes, addr, now: float) -> int:
    raise NotImplementedError("aioquic follows its peer's address itself")


def newest_packet_sent(quic) -> int | None:
    raise NotImplementedError("aioquic follows its peer's address itself")


def packet_outstanding(quic, packet_number: int) -> bool:
    raise NotImplementedError("aioquic follows its peer's address itself")


def packets_lost(quic) -> int:
    raise NotImplementedError("aioquic follows its peer's address itself")


def recovery_counts(quic) -> tuple[int, int] | None:
    """(probe timeouts fired, packets declared lost) so far; None: aioquic keeps no totals."""
    return None


# --- what the agent shows and pins ---------------------------------------------------------

def smoothed_rtt(quic) -> float | None:
    """The smoothed round-trip time in seconds (None before the first sample); aioquic keeps it
    on its private loss-recovery object only."""
    loss = getattr(quic, "_loss", None)
    if loss is None or not getattr(loss, "_rtt_initialized", False):
        return None
    return loss._rtt_smoothed


def peer_address(quic):
    """The address `quic` sends to now (its validated path after a migration)."""
    paths = getattr(quic, "_network_paths", None)
    return paths[0].addr if paths else None


def peer_certificate_der(quic) -> bytes | None:
    """DER of the certificate the server presented (None on a resumed session): aioquic
    exposes it only on its TLS context, as a `cryptography` certificate."""
    cert = getattr(getattr(quic, "tls", None), "_peer_certificate", None)
    if cert is None:
        return None
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)


# --- a gateway's memory per connection (backend/quic_tuning.py says why) -------------------

class _FrameTable:
    """Stands in for aioquic's per-connection `{frame type: (bound handler, epochs)}`:
    the same lookup (KeyError for an unknown type), one shared table of method names."""

    __slots__ = ("_quic",)
    shared: dict[int, tuple[str, frozenset]] = {}

    def __init__(self, quic):
        self._quic = quic

    def __getitem__(self, frame_type: int):
        name, epochs = self.shared[frame_type]
        return getattr(self._quic, name), epochs


_FRAME_TABLE_ATTR = "_QuicConnection__frame_handlers"


def share_frame_table(quic) -> bool:
    """Replace a new connection's 11 KiB frame table by the shared one; leaves it alone
    (False) if the table is not the one expected."""
    table = getattr(quic, _FRAME_TABLE_ATTR, None)
    if not isinstance(table, dict):
        return False
    named = {}
    for frame_type, (handler, epochs) in table.items():
        func = getattr(handler, "__func__", None)
        if func is None or getattr(quic, func.__name__, None) != handler:
            return False
        named[frame_type] = (func.__name__, epochs)
    if not _FrameTable.shared:
        _FrameTable.shared.update(named)
    elif named != _FrameTable.shared:
        return False
    setattr(quic, _FRAME_TABLE_ATTR, _FrameTable(quic))
    return True


_shared_buffers: dict = {}  # epoch → the process's post-handshake TLS output buffer


def shrink_handshake_buffers(quic) -> None:
    """Call on HandshakeCompleted: replace the 16 KiB TLS output buffers by small ones shared
    by every connection (each is empty then: aioquic moves their bytes to the crypto streams
    after every TLS step, in the same synchronous call)."""
    buffers = getattr(quic, "_crypto_buffers", None)
    if not isinstance(buffers, dict):
        return
    for epoch, buf in list(buffers.items()):
        if buf.tell() == 0:
            buffers[epoch] = _shared_buffer(epoch)


def _shared_buffer(epoch):
    shared = _shared_buffers.get(epoch)
    if shared is None or shared.tell() != 0:  # never one holding another step's bytes
        shared = _shared_buffers[epoch] = Buffer(capacity=POST_HANDSHAKE_BUFFER)
    return shared


def drop_key_log_callbacks(quic) -> None:
    """Call on HandshakeCompleted: without a qlog, the key set-up/tear-down callbacks (qlog
    events only, ~3 KiB per connection) become aioquic's shared no-op."""
    if getattr(quic, "_quic_logger", True) is not None:
        return
    pairs = [*getattr(quic, "_cryptos", {}).values(),
             *getattr(quic, "_cryptos_initial", {}).values()]
    for pair in pairs:
        for ctx in (getattr(pair, "recv", None), getattr(pair, "send", None)):
            if hasattr(ctx, "_setup_cb") and hasattr(ctx, "_teardown_cb"):
                ctx._setup_cb = ctx._teardown_cb = NoCallback


class _SpentServerTls:
    """Stands in for a server connection's TLS context once its handshake completed: the
    answers aioquic still reads, and TLS 1.3 over QUIC has no message a client may send a
    server then (key updates are QUIC's, session tickets went out in the handshake's last
    step), so any is `unexpected_message`, as the real context in that state answers."""

    __slots__ = ("alpn_negotiated", "early_data_accepted", "session_resumed")
    state = State.SERVER_POST_HANDSHAKE

    def __init__(self, context):
        self.alpn_negotiated = context.alpn_negotiated
        self.early_data_accepted = context.early_data_accepted
        self.session_resumed = context.session_resumed

    def handle_message(self, data: bytes, output_buf) -> None:
        if data:
            raise AlertUnexpectedMessage("TLS message after the handshake")


def drop_tls_context(quic) -> bool:
    """Call on HandshakeCompleted of a server connection: drop its TLS context (key schedule,
    transcript hashes, key shares: ~3 KiB of heap and ~4 KiB of OpenSSL state outside it);
    False (left alone) for a client, or a context not in its post-handshake state."""
    context = getattr(quic, "tls", None)
    if (getattr(quic, "_is_client", True) or not getattr(quic, "_handshake_complete", False)
            or getattr(context, "state", None) is not State.SERVER_POST_HANDSHAKE
            or isinstance(context, _SpentServerTls)):
        return False
    quic.tls = _SpentServerTls(context)
    return True


def trim_new_connection(quic) -> None:
    """A new server connection's memory trims (before its first packet)."""
    share_frame_table(quic)


def shrink_queues(quic) -> int:
    """A server connection's FIFO deques as `ListQueue`s (760 → 72 bytes each): its events,
    its pending DATAGRAM frames and each current path's received challenges (the paths it
    makes later have deques of their own). Returns how many were swapped."""
    holders = [(quic, "_events"), (quic, "_datagrams_pending")]
    holders += [(path, "remote_challenges") for path in getattr(quic, "_network_paths", ())]
    swapped = 0
    for holder, name in holders:
        queue = getattr(holder, name, None)
        if isinstance(queue, deque) and queue.maxlen is None:
            setattr(holder, name, ListQueue(queue))
            swapped += 1
    return swapped


def trim_after_handshake(quic) -> None:
    """A server connection's memory trims once its handshake completed."""
    shrink_handshake_buffers(quic)
    drop_key_log_callbacks(quic)
    if drop_tls_context(quic):
        shrink_queues(quic)

