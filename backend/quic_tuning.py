"""Measured adjustments of the QUIC library for a gateway holding thousands of connections
(the library-specific parts are hooks of the seam, geostream/quic/).

- **Socket buffers.** All vehicles share the gateway's one UDP socket. Linux's default receive
  buffer (212 KB, ~90 full-size datagrams) overflows whenever the process is off the CPU for a
  few hundred ms with a few hundred vehicles sending: the load tester saw 7,500 of ~35,000
  datagrams dropped (`RcvbufErrors` in /proc/net/snmp) with 300 vehicles at 1 Hz, and every
  loss costs a retransmission and a loss-recovery timer. `SOCKET_BUFFER_BYTES` is asked for;
  the kernel caps it at `net.core.rmem_max` / `wmem_max` (docs/operations.md).
- **ACK delay.** aioquic acknowledges an ack-eliciting packet after 1 ms (`K_GRANULARITY`),
  and writes an ACK frame only once that delay expired, never into a packet it builds anyway.
  A batch's commit takes longer than 1 ms, so every batch cost an ACK-only datagram and a
  timer before the geostream `ack` left. The gateway waits up to `ACK_DELAY_S` (and says so in
  its `max_ack_delay`), and its `ack` carries the pending ACK (geostream/quic_acks.py): one
  datagram per batch instead of two while commits finish within `ACK_DELAY_S`.
- **Handshake buffers.** aioquic gives every connection three 16 KiB TLS output buffers (one per
  epoch) and keeps them for the connection's life: 48 KiB of the ~100 KiB of Python heap a
  gateway connection holds (bench/bench_conn_memory.py, tracemalloc). After the handshake the
  TLS layer writes nothing but the session ticket (a few hundred bytes, written as the
  handshake completes), so the gateway swaps them for `POST_HANDSHAKE_BUFFER` bytes each,
  shared by all connections of the process: aioquic empties them into the connection's crypto
  streams right after every TLS step (`_push_crypto_data`), in the same synchronous call, so
  between steps they hold nothing of any connection (3 KiB less per connection than one set
  each).
- **Frame table.** Every aioquic connection builds its own table of ~30 frame types → (bound
  handler, frozenset of epochs): 11 KiB per connection (7 KiB of identical frozensets), the
  largest single item of its heap. The seam's `share_frame_table` puts in its place a small
  object that looks the handler up by name in one table per process.
- **Key callbacks.** Each epoch's keys carry four `functools.partial` callbacks into the
  connection that only write qlog events (~3 KiB per connection); without a qlog they do
  nothing, and `drop_key_log_callbacks` swaps them for aioquic's shared no-op.

The last three are aioquic's (`trim_new_connection`, `trim_after_handshake` of its adapter);
qh3's native core keeps its state outside the Python heap and needs none of them.
"""

from __future__ import annotations

import logging
import socket

log = logging.getLogger(__name__)

# 4 MiB: a second of 4,000 full-size datagrams; Debian's rmem_max/wmem_max default is 208 KiB.
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
# A group commit on SQLite (fsync) or PostgreSQL takes 5-50 ms, and 0.1-0.4 s on a gateway that
# is behind (p50 305 ms at 8,000 vehicles × 1 Hz): the ACK waits for the commit's `ack` that
# long instead of leaving alone. The vehicle's probe timeout includes it (qh3's about twice:
# 2 × 0.4 s + srtt + 4·rttvar), which stays under the 1 s floor of its probe timeout
# (geostream/quic_acks.py PROBE_TIMEOUT_FLOOR_S) while srtt + 4·rttvar < 0.2 s; RFC 9000 §18.2
# allows up to 16 s. docs/protocol.md §1 (ACK timing) has the price.
ACK_DELAY_S = 0.400


def enlarge_socket_buffers(server) -> int:
    """Grow the receive and send buffers of a QUIC server's UDP socket; returns the
    receive buffer the kernel granted (it reports twice the usable size)."""
    transport = getattr(server, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return 0
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER_BYTES)
        except OSError as exc:
            log.warning("cannot grow the UDP socket buffer: %s", exc)
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    if granted < SOCKET_BUFFER_BYTES:
        log.info("UDP receive buffer %d bytes (raise net.core.rmem_max for more)", granted // 2)
    return granted


def delay_acks(lib, quic) -> None:
    """Let a new server connection of QUIC library `lib` hold its ACKs up to ACK_DELAY_S
    (advertised) so they share datagrams with the geostream acks (before its first packet)."""
    lib.advertise_max_ack_delay(quic, ACK_DELAY_S)
    lib.delay_acks_up_to(quic, ACK_DELAY_S)
