"""The order of the gateway edge's work past its knee (docs/protocol.md §1, overload), sans-IO.

A gateway that is behind has datagrams of its connected vehicles waiting in its socket; a new
connection's Initial costs it a TLS handshake (its first flight: ~0.3 ms of qh3's native core,
the Python around it as much again), ~3 established datagrams' worth. Answered at once in the
read, as they arrived, the handshakes of a reconnect wave or of liveness probes took up to
half the loop while established vehicles' batches and ACKs waited behind them (docs/benchmarks.md,
"The gateway's order of work past its knee, session 18").

- `HandshakeIntake`: the Initials that open connections, read with the rest but handshaken
  after the established datagrams of the same wakeup; while the socket still holds datagrams
  after a wakeup (the gateway is behind) handshakes get at most `HANDSHAKE_SHARE` of the
  loop's time; an Initial that waited `INTAKE_MAX_WAIT_S` (or was pushed out of a full
  intake) is answered `busy`.
- `RefusalCache`: the refusal packet of a connection attempt, kept so that the client's
  retransmitted Initial (same connection IDs: its Initial timer fired before the answer came,
  the usual case when the gateway is seconds behind) is answered with the same bytes instead of
  a new key derivation and encryption (~0.1 ms each).

Pure: the edge says when (`now`), whether it is behind, and how long each handshake took.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable
from typing import Any

# Initials waiting for their handshake at once (each ≤ 1,500 bytes: ~100 KB). The load
# tester's ramp keeps 64 connects in flight; a wave larger than this is behind by definition.
INTAKE_CAPACITY = 64
# The longest an Initial waits in the intake before it is answered `busy`: about a client's
# first Initial timeout (3 × the 333 ms initial RTT of RFC 9002 §6.2.2), after which it sends
# the Initial again into a gateway that could not start its handshake in that time.
INTAKE_MAX_WAIT_S = 1.0
# The share of the loop's time handshakes may take while datagrams wait in the socket after a
# wakeup: the rest is the connected vehicles' (their batches, ACKs, commits' acks).
HANDSHAKE_SHARE = 0.25
# The handshake time a gateway may spend in one go when it has saved it up (and the debt a
# run of handshakes may leave): a few handshakes, one slice of a loop stall.
HANDSHAKE_BURST_S = 0.02
# Datagrams one waiting connection holds in the intake (its client's first flight: a
# ClientHello in two Initials, 0-RTT packets; retransmissions): the rest are dropped.
DATAGRAMS_PER_CONNECTION = 8
# Refusals kept for retransmitted Initials (~100 bytes each).
REFUSALS_KEPT = 1024


class _Waiting:
    """One connection in the intake: the edge's items (its datagrams, the opening Initial
    first), its key, when the first arrived."""

    __slots__ = ("items", "key", "arrived")

    def __init__(self, item: Any, key: Hashable, arrived: float) -> None:
        self.items, self.key, self.arrived = [item], key, arrived


class HandshakeIntake:
    """New connections' Initials between the read that found them and their handshake, served
    after the established datagrams of the same wakeup (`offer`, then `take` / `expired`).

    While the gateway is behind (`take(now, behind=True)`: datagrams still wait in its socket)
    handshakes take at most `share` of the time: a credit accrues at `share` seconds per second
    (at most `burst`), each handshake's measured time is charged (`spent`), and one is taken
    only while the credit is positive. When the gateway is not behind every waiting Initial is
    taken. An Initial waits at most `max_wait` (`expired`), and at most `capacity` wait (`offer`
    returns the oldest it pushed out): both are answered `busy` by the edge. The datagrams
    of a connection already waiting (the rest of its client's first flight, a retransmitted
    Initial) wait with it, at most `DATAGRAMS_PER_CONNECTION`, and are handed out together.
    Items are lists: a connection's datagrams, in the order they came."""

    __slots__ = ("capacity", "max_wait", "share", "burst", "_queue", "_keys", "_credit", "_at",
                 "handshakes", "longest_wait", "expired_count", "pushed_out", "repeated")

    def __init__(self, capacity: int = INTAKE_CAPACITY, max_wait: float = INTAKE_MAX_WAIT_S,
                 share: float = HANDSHAKE_SHARE, burst: float = HANDSHAKE_BURST_S) -> None:
        self.capacity, self.max_wait, self.share, self.burst = capacity, max_wait, share, burst
        self._queue: collections.deque[_Waiting] = collections.deque()
        self._keys: dict[Hashable, _Waiting] = {}  # the connections waiting, by key
        self._credit = burst
        self._at: float | None = None  # when the credit was last brought up to date
        self.handshakes = 0  # Initials taken (handshaken, or answered by the admission)
        self.longest_wait = 0.0  # the longest an Initial taken had waited (seconds)
        self.expired_count = 0  # answered busy after `max_wait`
        self.pushed_out = 0  # answered busy: the intake was full
        self.repeated = 0  # datagrams of a waiting connection beyond its bound: dropped

    def __len__(self) -> int:
        return len(self._queue)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._keys

    def offer(self, item: Any, key: Hashable, now: float) -> list | None:
        """`item`, a datagram of connection `key` (a new one: its opening Initial), arrived
        at `now`: it waits. Returns the items of the connection pushed out of a full intake
        (the oldest), if any."""
        waiting = self._keys.get(key)
        if waiting is not None:
            if len(waiting.items) < DATAGRAMS_PER_CONNECTION:
                waiting.items.append(item)
            else:
                self.repeated += 1
            return None
        waiting = self._keys[key] = _Waiting(item, key, now)
        self._queue.append(waiting)
        if len(self._queue) > self.capacity:
            self.pushed_out += 1
            return self._pop().items
        return None

    def expired(self, now: float) -> list[list]:
        """The connections (their items) that waited longer than `max_wait` by `now`, no
        longer waiting."""
        out = []
        queue, horizon = self._queue, now - self.max_wait
        while queue and queue[0].arrived < horizon:
            out.append(self._pop().items)
        self.expired_count += len(out)
        return out

    def take(self, now: float, behind: bool) -> list | None:
        """The next connection's items to handshake at `now`, if one may be now (`behind`:
        datagrams still wait in the socket); report its time with `spent`."""
        if not self._queue:
            return None
        self._accrue(now)
        if behind and self._credit <= 0.0:
            return None
        self.handshakes += 1
        waiting = self._pop()
        self.longest_wait = max(self.longest_wait, now - waiting.arrived)
        return waiting.items

    def spent(self, seconds: float) -> None:
        """The handshake just taken took `seconds` of the loop."""
        self._credit = max(-self.burst, self._credit - seconds)

    def ready_at(self, now: float) -> float | None:
        """When an item left waiting may be taken or expires (None: none waits)."""
        if not self._queue:
            return None
        self._accrue(now)
        expiry = self._queue[0].arrived + self.max_wait
        if self._credit > 0.0:
            return now
        return min(expiry, now + -self._credit / self.share)

    def _accrue(self, now: float) -> None:
        if self._at is not None and now > self._at:
            self._credit = min(self.burst, self._credit + (now - self._at) * self.share)
        if self._at is None or now > self._at:
            self._at = now

    def _pop(self) -> _Waiting:
        waiting = self._queue.popleft()
        del self._keys[waiting.key]
        return waiting


class RefusalCache:
    """The refusal packet made for a connection attempt, by its key (the client's connection
    IDs and the reason), the newest `kept` of them: a client's retransmitted Initial is refused
    with the same bytes (an identical packet again, which the client's QUIC stack takes as a
    duplicate if it had the first)."""

    __slots__ = ("kept", "_packets", "reused")

    def __init__(self, kept: int = REFUSALS_KEPT) -> None:
        self.kept = kept
        self._packets: dict[Hashable, bytes] = {}  # insertion-ordered: the oldest first
        self.reused = 0

    def refused(self, key: Hashable) -> bytes | None:
        """The refusal already sent for `key`, if it is kept (counted as reused)."""
        packet = self._packets.get(key)
        if packet is not None:
            self.reused += 1
        return packet

    def get(self, key: Hashable, make: Callable[[], bytes]) -> bytes:
        packet = self._packets.get(key)
        if packet is not None:
            self.reused += 1
            return packet
        packet = self._packets[key] = make()
        if len(self._packets) > self.kept:
            del self._packets[next(iter(self._packets))]
        return packet
