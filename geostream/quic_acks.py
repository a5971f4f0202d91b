"""QUIC ACKs that ride with data: the shape of the uplink at 1 Hz (docs/protocol.md §2).

A vehicle at 1 Hz sends one batch a second and gets one `ack` back. Out of the box aioquic
turns that exchange into four datagrams: the batch, an ACK-only datagram from the gateway,
the `ack`, an ACK-only datagram from the vehicle. aioquic writes an ACK frame only once its
delay has expired (never earlier, even into a packet it is building anyway), and it
acknowledges after 1 ms while advertising 25 ms. Two adjustments make it two datagrams, one
each way, which halves the per-packet work (header protection, AEAD, loss recovery, timers,
system calls) that limits a gateway in Python (docs/benchmarks.md, Reach):

- `ack_with_data`: when stream data is about to be sent, a pending ACK is made due now, so it
  shares the datagram (the gateway's ACK rides with the `ack`, the vehicle's with its next
  batch);
- `advertise_max_ack_delay` and `delay_acks_up_to`: an endpoint that sends at a known pace
  (the agent: a batch every `send_interval`) advertises a `max_ack_delay` that long and waits
  that long, so its ACK of the gateway's `ack` rides in the next batch instead of a datagram of
  its own. RFC 9000 §18.2 allows up to 2^14 ms; the peer adds it to its probe timeout (RFC 9002
  §6.2.1), so a lost `ack` is re-sent about that much later; the batch itself is not delayed.

aioquic has no public setting for either, so these touch its private attributes when they
exist and leave the connection alone otherwise (tests/integration/net/test_ack_shape.py counts
datagrams).
"""

from __future__ import annotations

from aioquic.buffer import Buffer
from aioquic.quic.packet import pull_quic_transport_parameters, push_quic_transport_parameters
from aioquic.tls import Epoch

# RFC 9000 §18.2: max_ack_delay values of 2^14 ms or more are invalid.
MAX_ACK_DELAY_LIMIT_MS = 2**14 - 1
# The agent's next paced batch leaves within one send interval plus a journal commit (~0.2 s)
# of the previous one: wait that long for it, with margin.
ACK_DELAY_PER_INTERVAL = 1.5
# Room for aioquic's transport parameters (~100 bytes) with margin.
_PARAMS_BUFFER = 1024


def ack_delay_for(send_interval_s: float) -> float | None:
    """The ACK delay of an agent pacing its batches at send_interval_s (None when unpaced:
    nothing predictable to ride in)."""
    if send_interval_s <= 0:
        return None
    return min(MAX_ACK_DELAY_LIMIT_MS / 1000, ACK_DELAY_PER_INTERVAL * send_interval_s)


def ack_with_data(quic) -> None:
    """Let the next packet carry any pending 1-RTT ACK (call before sending stream data)."""
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
