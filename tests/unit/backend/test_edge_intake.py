"""The order of the gateway edge's work past its knee (backend/edge_intake.py), sans-IO: new
connections' Initials wait for the established datagrams of their wakeup, handshakes take at
most a share of a loop that is behind, and no Initial waits longer than its bound."""

from __future__ import annotations

import pytest

from backend.edge_intake import (
    DATAGRAMS_PER_CONNECTION,
    HANDSHAKE_BURST_S,
    HANDSHAKE_SHARE,
    INTAKE_CAPACITY,
    INTAKE_MAX_WAIT_S,
    HandshakeIntake,
    RefusalCache,
)


def _taken(intake: HandshakeIntake, now: float, behind: bool, cost: float = 0.0) -> list:
    out = []
    while (items := intake.take(now, behind)) is not None:
        out.append(items)
        intake.spent(cost)
    return out


def test_a_gateway_not_behind_handshakes_every_waiting_initial_in_arrival_order():
    intake = HandshakeIntake()
    for i in range(5):
        assert intake.offer(f"initial {i}", f"cid {i}", 10.0) is None
    assert _taken(intake, 10.0, behind=False, cost=0.5) == [[f"initial {i}"] for i in range(5)]
    assert intake.handshakes == 5 and len(intake) == 0


def test_behind_handshakes_take_at_most_their_share_of_the_loop():
    """Each handshake costs 10 ms: a loop that is behind for 2 s spends at most
    HANDSHAKE_SHARE of it (plus the saved-up burst) on them; the rest wait."""
    intake = HandshakeIntake(capacity=1000, max_wait=100.0)
    for i in range(500):
        intake.offer(i, i, 0.0)
    taken, now = 0, 0.0
    while now < 2.0:  # a wakeup every 10 ms
        taken += len(_taken(intake, now, behind=True, cost=0.010))
        now += 0.010
    budget = (2.0 * HANDSHAKE_SHARE + HANDSHAKE_BURST_S) / 0.010
    assert budget - 2 <= taken <= budget + 2, (taken, budget)
    # caught up: everything left is taken at once
    assert len(_taken(intake, now, behind=False, cost=0.010)) == 500 - taken


def test_the_credit_a_run_of_handshakes_left_in_debt_comes_back_at_the_share_rate():
    intake = HandshakeIntake()
    intake.offer("a", "a", 0.0)
    intake.offer("b", "b", 0.0)
    assert intake.take(0.0, behind=True) == ["a"]
    intake.spent(0.030)  # past the burst: in debt by HANDSHAKE_BURST_S at most
    debt = min(HANDSHAKE_BURST_S, 0.030 - HANDSHAKE_BURST_S)
    assert intake.take(0.0, behind=True) is None
    back = debt / HANDSHAKE_SHARE
    assert intake.ready_at(0.0) == pytest.approx(back)
    assert intake.take(back * 0.9, behind=True) is None
    assert intake.take(back * 1.1, behind=True) == ["b"]


def test_an_initial_waits_at_most_its_bound_then_is_answered_busy():
    intake = HandshakeIntake(share=0.01)  # a debt repaid only after the bound
    intake.offer("old", "old", 1.0)
    intake.offer("new", "new", 1.5)
    intake.spent(1.0)  # no credit: nothing is taken while behind
    assert intake.take(1.2, behind=True) is None
    assert intake.ready_at(1.2) == pytest.approx(1.0 + INTAKE_MAX_WAIT_S)
    assert intake.expired(1.0 + INTAKE_MAX_WAIT_S) == []  # not longer than the bound yet
    assert intake.expired(1.01 + INTAKE_MAX_WAIT_S) == [["old"]]
    assert intake.expired_count == 1 and len(intake) == 1


def test_a_full_intake_pushes_out_its_oldest():
    intake = HandshakeIntake()
    for i in range(INTAKE_CAPACITY):
        assert intake.offer(i, i, 0.0) is None
    assert intake.offer("one more", "k", 0.1) == [0]
    assert len(intake) == INTAKE_CAPACITY and intake.pushed_out == 1
    assert 0 not in intake and "k" in intake


def test_a_waiting_connections_datagrams_go_with_it_in_order_and_bounded():
    """The rest of a client's first flight (a ClientHello in two Initials, 0-RTT packets)
    and its retransmitted Initial wait with its opening Initial, never as a connection of
    their own."""
    intake = HandshakeIntake()
    intake.offer("initial", "cid", 0.0)
    for i in range(DATAGRAMS_PER_CONNECTION + 2):
        assert intake.offer(f"more {i}", "cid", 0.1) is None
    assert len(intake) == 1 and intake.repeated == 3
    assert intake.take(0.2, behind=False) == (
        ["initial"] + [f"more {i}" for i in range(DATAGRAMS_PER_CONNECTION - 1)])
    assert intake.longest_wait == pytest.approx(0.2)


def test_a_retransmitted_initial_is_refused_with_the_same_bytes_and_the_cache_is_bounded():
    cache = RefusalCache(kept=2)
    made: list[int] = []

    def make(n: int):
        return lambda: (made.append(n), bytes([n]))[1]

    assert cache.get("a", make(1)) == b"\x01"
    assert cache.refused("a") == b"\x01" and cache.get("a", make(9)) == b"\x01"
    assert cache.reused == 2 and made == [1]
    cache.get("b", make(2))
    cache.get("c", make(3))  # "a" is the oldest: forgotten
    assert cache.refused("a") is None and cache.refused("c") == b"\x03"
