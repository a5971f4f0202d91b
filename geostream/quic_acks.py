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

Neither QUIC library has a public setting for either: the hooks are the seam's
(`ack_with_data`, `advertise_max_ack_delay`, `delay_acks_up_to` in geostream/quic/), this
module the policy (tests/integration/net/test_ack_shape.py counts datagrams).
"""

from __future__ import annotations

# RFC 9000 §18.2: max_ack_delay values of 2^14 ms or more are invalid.
MAX_ACK_DELAY_LIMIT_MS = 2**14 - 1
# The agent's next paced batch leaves within one send interval plus a journal commit (~0.2 s)
# of the previous one: wait that long for it, with margin.
ACK_DELAY_PER_INTERVAL = 1.5
# The least probe timeout of a vehicle (as TCP's minimum RTO, RFC 6298 §2.4): a gateway that
# is behind reads its socket queue seconds late, past the vehicle's srtt + 4·rttvar + its
# max_ack_delay, and each probe then is a copy of a batch already queued there, one more
# decrypt, ACK and syscall for a gateway that has too much to do (docs/benchmarks.md, "ACKs and
# probe timeouts past the knee"). A batch lost on the radio waits for it before it is sent
# again: one send interval at 1 Hz, while the next batch waits for the ack anyway.
PROBE_TIMEOUT_FLOOR_S = 1.0


def ack_delay_for(send_interval_s: float) -> float | None:
    """The ACK delay of an agent pacing its batches at send_interval_s (None when unpaced:
    nothing predictable to ride in)."""
    if send_interval_s <= 0:
        return None
    return min(MAX_ACK_DELAY_LIMIT_MS / 1000, ACK_DELAY_PER_INTERVAL * send_interval_s)

