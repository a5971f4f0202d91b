"""The load generator's one timer (loadtest/edge.py `ClientEdge._wake`), sans-IO on an emulated
loop: the wheel lets every due owner go before any of them wakes, so an owner whose wake raises
must not strand the owners after it (their deadlines are gone from the wheel and their own
bookkeeping thinks them filed), and must not be stranded itself; the error is logged with the
owner's name and counted. A connection whose keepalive cannot leave is not filed in the past
(woken again in every wakeup)."""

import collections
import logging
import types

from loadtest.edge import KEEPALIVE_RETRY_S, OWNER_RETRY_S, TICK_S, ClientEdge, EdgeLink


class Loop:
    """What the edge uses of an event loop, on a clock the test moves."""

    def __init__(self, now: float = 1000.0):
        self.now = now
        self.timers: list = []

    def time(self) -> float:
        return self.now

    def call_at(self, when, cb, *args):
        handle = types.SimpleNamespace(when=when, cb=cb, cancel=lambda: None,
                                       cancelled=lambda: False)
        self.timers.append(handle)
        return handle

    def call_soon(self, cb, *args):
        return types.SimpleNamespace(cancel=lambda: None)


class Owner:
    def __init__(self, name: str, fails: bool = False):
        self.name, self.fails, self.woken = name, fails, []

    def wake(self, now: float) -> None:
        self.woken.append(now)
        if self.fails:
            raise RuntimeError(f"{self.name} broke")


def edge_with(owners: list[Owner], at: float, loop: Loop) -> ClientEdge:
    edge = ClientEdge(types.SimpleNamespace(), 8, loop)
    for owner in owners:
        edge.timers.set(owner, at)
    edge.arm()
    return edge


def test_an_owner_that_raises_in_its_wake_does_not_strand_the_others(caplog):
    loop = Loop()
    owners = [Owner("v1"), Owner("v2", fails=True), Owner("v3"), Owner("v4")]
    edge = edge_with(owners, 1000.5, loop)
    loop.now = 1000.5 + TICK_S
    with caplog.at_level(logging.WARNING, logger="loadtest.edge"):
        edge._wake()  # on main the exception left the loop here, v2's followers unwoken
    assert [len(o.woken) for o in owners] == [1, 1, 1, 1]
    assert edge.errors == {"wake raised RuntimeError": 1}
    assert "v2: wake raised RuntimeError: v2 broke" in caplog.text
    # the one that raised is woken again, not left out of the wheel; the others are not
    assert edge.timers.at(owners[1]) == loop.now + OWNER_RETRY_S
    assert [edge.timers.at(o) for o in (owners[0], owners[2], owners[3])] == [None] * 3
    assert edge._wake_at is not None and edge._wake_at <= loop.now + OWNER_RETRY_S + TICK_S


def test_an_owner_that_keeps_raising_is_retried_once_a_retry_interval_not_in_a_loop():
    loop = Loop()
    bad, good = Owner("v9", fails=True), Owner("v8")
    edge = edge_with([bad, good], 1000.5, loop)
    for _ in range(5):
        loop.now = edge._wake_at
        edge._wake()
    # five wakeups, each a retry interval apart: the good one woke once, the bad one each time
    assert len(good.woken) == 1
    assert len(bad.woken) == 5
    assert bad.woken[-1] - bad.woken[0] >= 4 * OWNER_RETRY_S
    assert edge.errors == {"wake raised RuntimeError": 5}


class SilentConn:
    """A QUIC connection that has nothing it may send (its congestion window is full)."""

    host_cid = b"12345678"

    def __init__(self, configuration=None, session_ticket_handler=None):
        self._events = collections.deque()
        self.pings = 0

    def get_timer(self):
        return None

    def send_ping(self, uid: int) -> None:
        self.pings += 1

    def datagrams_to_send(self, now: float) -> list:
        return []


def test_a_keepalive_that_cannot_leave_is_tried_again_later_not_in_every_wakeup():
    loop = Loop(now=1000.0)
    lib = types.SimpleNamespace(QuicConnection=SilentConn, ack_with_data=lambda conn: None,
                                recovery_counts=lambda conn: None)
    edge = ClientEdge(lib, 8, loop)
    link = EdgeLink(edge, None, ("127.0.0.1", 4433), on_stream_data=lambda *a: None)
    link._last_send = 980.0  # its last datagram left 20 s ago: a keepalive is overdue
    edge.timers.set(link, 995.0)
    edge.arm()
    edge._wake()
    assert link.conn.pings == 1
    # nothing left: the PING waits in the connection; its next try is KEEPALIVE_RETRY_S away
    # (on main it was filed at the overdue deadline, and every wakeup woke it again)
    assert edge.timers.at(link) == loop.now + KEEPALIVE_RETRY_S
    assert edge._wake_at > loop.now


def test_the_edge_describes_its_one_timer_for_the_vehicles_not_drained():
    loop = Loop()
    edge = edge_with([Owner("v1"), Owner("v2")], 1000.5, loop)
    assert edge.describe(1000.0).startswith(
        "edge: armed in 0.5 s (live); wheel 2 owners, earliest in 0.5 s; last fired never")
    loop.now = 1003.0  # the process was 2.5 s behind
    edge._wake()
    line = edge.describe(1003.0)
    assert "armed in - (none); wheel 0 owners, earliest in -; last fired 0.0 s ago" in line
    assert line.endswith("due over 1 s ago: none")
    edge.timers.set(Owner("v5"), 1001.0)
    assert edge.describe(1003.0).endswith("due over 1 s ago: v5 (Owner) in -2.0 s")
    assert edge.lag.percentile(100) == 2491.0  # late past the slot's end (1000.51)
    # a deadline filed when it was overdue already: the lag is the loop's, from the arming
    edge.timers.set(Owner("v3"), 990.0)
    edge.arm()
    loop.now = 1003.2
    edge._wake()
    assert sorted(edge.lag.counts) == [200, 2490]
