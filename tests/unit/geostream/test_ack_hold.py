"""The gateway's ACK hold under a slow commit, and honest RTT estimates on both sides
(backend/quic_tuning.py `ACK_DELAY_S`, geostream/quic_acks.py, the seam's `ack_with_data`).

A batch's commit that takes longer than the gateway's ACK hold costs a datagram of its own:
the QUIC ACK leaves alone, the geostream `ack` after it. The gateway holds (and advertises) an
ACK delay long enough for a commit that is behind, so one datagram carries both; and the ACK
frame's ack_delay field says how long the ACK waited, so neither side mistakes a slow commit or
a vehicle's one-second wait for its next batch for round trip (RFC 9002 §5.3).

Sans-IO, a vehicle's and a gateway's connection of one library on an emulated clock
(tests/unit/geostream/test_probe_floor.py `Pair`), each datagram carried by the test.
"""

from __future__ import annotations

import pytest

from backend.quic_tuning import ACK_DELAY_S
from geostream.quic import LIBRARIES
from geostream.quic_acks import PROBE_TIMEOUT_FLOOR_S, ack_delay_for
from tests.unit.geostream.test_probe_floor import RTT_S, Pair

SEND_INTERVAL_S = 1.0  # the agent's default pacing
SLOW_COMMIT_S = 0.3  # a commit behind (p50 at 8,000 vehicles × 1 Hz was 305 ms)
WARM_UP = 4  # exchanges before counting: qh3's path-MTU probes go in the first ones
COUNTED = 8


class Exchange(Pair):
    """The agent's and the gateway's side of the 1 Hz uplink: a batch (a pending ACK riding
    in it), a commit of `commit_s` during which the gateway's timers run, its `ack` (its
    pending ACK riding in it), and quiet until the next batch, each side's timers firing."""

    def __init__(self, name: str, pki, gateway_ack_delay_s: float) -> None:
        super().__init__(name, pki, gateway_ack_delay_s=gateway_ack_delay_s,
                         agent_ack_delay_s=ack_delay_for(SEND_INTERVAL_S))
        self.sent = {"agent": 0, "gateway": 0}

    def deliver(self, sender, datagrams) -> None:
        side = "agent" if sender is self.client else "gateway"
        self.sent[side] += len(datagrams)
        receiver, addr = ((self.server, ("127.0.0.1", 50000)) if sender is self.client
                          else (self.client, ("127.0.0.1", 4433)))
        self.now += RTT_S / 2
        for data, _ in datagrams:
            receiver.receive_datagram(data, addr, now=self.now)
        self.drain()

    def after_timer(self, conn) -> None:
        """What `conn` sends once its timer fired goes to the peer (counted), no more."""
        self.deliver(conn, conn.datagrams_to_send(now=self.now))

    def run_timers_until(self, end: float) -> None:
        self.timers_until(end, 50)

    def one(self, commit_s: float) -> None:
        start = self.now
        self.client.send_stream_data(self.stream, b"b" * 200)
        self.lib.ack_with_data(self.client)
        self.deliver(self.client, self.client.datagrams_to_send(now=self.now))
        self.run_timers_until(self.now + commit_s)
        self.server.send_stream_data(self.stream, b"ack")
        self.lib.ack_with_data(self.server)
        self.deliver(self.server, self.server.datagrams_to_send(now=self.now))
        self.run_timers_until(start + SEND_INTERVAL_S)

    def counted(self, commit_s: float) -> dict[str, float]:
        for _ in range(WARM_UP):
            self.one(commit_s)
        self.sent = {"agent": 0, "gateway": 0}
        for _ in range(COUNTED):
            self.one(commit_s)
        return {side: n / COUNTED for side, n in self.sent.items()}


@pytest.mark.parametrize("name", sorted(LIBRARIES))
def test_a_gateway_behind_by_a_slow_commit_sends_one_datagram_per_batch(name, pki):
    """A 300 ms commit: the gateway's QUIC ACK waits for the `ack` and rides in it. With the
    100 ms hold of before it left alone first: two datagrams per batch."""
    assert ACK_DELAY_S > SLOW_COMMIT_S
    per_batch = Exchange(name, pki, ACK_DELAY_S).counted(SLOW_COMMIT_S)
    assert per_batch == {"agent": 1, "gateway": 1}, per_batch
    before = Exchange(name, pki, 0.1).counted(SLOW_COMMIT_S)
    assert before["gateway"] == 2, before  # what the test tells apart


@pytest.mark.parametrize("name", sorted(LIBRARIES))
def test_held_acks_leave_the_round_trip_estimates_honest(name, pki):
    """The gateway's ACK waits 300 ms for a commit and the vehicle's a second for its next
    batch, each riding with data: each side's smoothed RTT stays the path's (20 ms), as the
    ACK frames' ack_delay fields say how long they waited (qh3's said ~1 ms before: the
    vehicle's RTT became 0.17-0.19 s, the gateway's ~1 s)."""
    pair = Exchange(name, pki, ACK_DELAY_S)
    pair.counted(SLOW_COMMIT_S)
    agent_rtt, gateway_rtt = (pair.lib.smoothed_rtt(pair.client),
                              pair.lib.smoothed_rtt(pair.server))
    assert agent_rtt == pytest.approx(RTT_S, abs=0.005), agent_rtt
    assert gateway_rtt == pytest.approx(RTT_S, abs=0.005), gateway_rtt


@pytest.mark.parametrize("name", sorted(LIBRARIES))
def test_the_gateways_ack_delay_does_not_move_a_vehicles_first_probe(name, pki):
    """On the path of a healthy link (20 ms) the vehicle's first probe of a batch the gateway
    does not answer still leaves at the probe-timeout floor (qh3 counts the advertised delay
    about twice in its probe timeout: 2 × ACK_DELAY_S + srtt + 4·rttvar stays under it)."""
    pair = Exchange(name, pki, ACK_DELAY_S)
    pair.counted(SLOW_COMMIT_S)
    pair.lib.floor_probe_timeout(pair.client, PROBE_TIMEOUT_FLOOR_S)
    pair.client.send_stream_data(pair.stream, b"b" * 200)
    pair.lib.ack_with_data(pair.client)
    pair.client.datagrams_to_send(now=pair.now)  # queued at the gateway: no answer
    sent = pair.sends_until(2 * PROBE_TIMEOUT_FLOOR_S)
    assert sent and sent[0] == pytest.approx(PROBE_TIMEOUT_FLOOR_S, abs=0.01), sent
