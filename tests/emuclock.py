"""An asyncio event loop on an emulated clock, for tests of long real-time behaviour.

`EmulatedClockLoop` is the standard selector loop whose `time()` is a counter. The counter moves
only when nothing can happen in the loop any more: no callback ready, no socket readable, no
executor job running, and no datagram that one of the loop's own sockets sent still on its way
to another of them. Then it jumps straight to the next timer. So the code under test (aioquic,
the agent's uplink, the gateway, SQLite on worker threads) runs unchanged, and minutes of
timers (idle timeouts, keepalives, backoff, liveness ticks) pass in seconds.

What keeps a jump honest:
- Executor jobs (`run_in_executor`: the journal's SQLite thread, getaddrinfo; and the store's
  own SQLite threads, which announce theirs through `outside_job`) take no emulated time:
  the loop waits for them in real time before it moves the clock.
- Loopback datagrams: Linux usually delivers one within the sendto() call, but under load its
  softirq work can be deferred to ksoftirqd, so "nothing readable now" does not mean "nothing
  in flight". Every datagram socket of the loop is wrapped to count datagrams sent and
  received; while the counts differ the loop waits in real time (up to SETTLE_S after the last
  send) before it moves the clock. A datagram that never arrives (sent to a socket closed
  meanwhile) is written off after SETTLE_S and counted in `written_off`.

Wrapping the socket hooks `_make_datagram_transport`, a private method of asyncio's selector
loop (stable since 3.4), and `wrap_datagram_socket`, which the gateway's UDP edge calls for
the socket it reads with `add_reader`; `looptime` (PyPI) compacts time the same way but cannot
see datagrams in flight on loopback, and lets the clock run at real speed while a thread
works, which is the wrong way round for a commit that must take no emulated time.
"""

from __future__ import annotations

import asyncio
import time
import weakref

# Real seconds a datagram sent on loopback may take to arrive before it is written off. Loopback
# delivery takes microseconds; this is headroom for a loaded CI machine.
SETTLE_S = 0.25
# Real seconds between checks while an executor job runs (its result also wakes the loop).
JOB_POLL_S = 0.5
# Where the emulated clock starts: arbitrary, positive, the same in every run.
START_S = 10_000.0


class _CountingSocket:
    """A datagram socket that tells its loop what it sent and received."""

    def __init__(self, sock, loop: EmulatedClockLoop):
        self._sock = sock
        self._loop = loop

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def sendto(self, data, *args):
        n = self._sock.sendto(data, *args)
        self._loop._sent()
        return n

    def send(self, data, *args):
        n = self._sock.send(data, *args)
        self._loop._sent()
        return n

    def recvfrom(self, *args):
        try:
            got = self._sock.recvfrom(*args)
        except ConnectionRefusedError:  # ICMP port unreachable: a datagram that went nowhere
            self._loop._arrived()
            raise
        self._loop._arrived()
        return got


class EmulatedClockLoop(asyncio.SelectorEventLoop):
    def __init__(self, start: float = START_S) -> None:
        super().__init__()
        self._now = start
        self._jobs: weakref.WeakSet[asyncio.Future] = weakref.WeakSet()
        self._in_flight = 0
        self._last_send = 0.0
        self._real_select = self._selector.select
        self._selector.select = self._select
        self.jumps = 0  # how often the clock moved
        self.written_off = 0  # datagrams that never arrived

    def time(self) -> float:
        return self._now

    def run_in_executor(self, executor, func, *args):
        future = super().run_in_executor(executor, func, *args)
        self._jobs.add(future)
        return future

    def outside_job(self, future: asyncio.Future) -> None:
        """A future another thread resolves (the SQLite store's own worker thread,
        backend/store/store_thread.py): waited for like an executor job."""
        self._jobs.add(future)

    def _make_datagram_transport(self, sock, *args, **kwargs):
        return super()._make_datagram_transport(_CountingSocket(sock, self), *args, **kwargs)

    def wrap_datagram_socket(self, sock):
        """The hook for datagram sockets read outside a transport (the gateway's UDP edge,
        backend/gateway_edge.py): counted like the transports' own."""
        return _CountingSocket(sock, self)

    def _sent(self) -> None:
        self._in_flight += 1
        self._last_send = time.monotonic()

    def _arrived(self) -> None:
        self._in_flight = max(0, self._in_flight - 1)

    def _select(self, timeout: float | None):
        ready = self._real_select(0)
        if ready or timeout == 0:
            return ready
        while True:  # the outside may still act: wait for it in real time
            if any(not job.done() for job in self._jobs):
                ready = self._real_select(JOB_POLL_S)
            elif self._in_flight:
                left = self._last_send + SETTLE_S - time.monotonic()
                if left <= 0:
                    self.written_off += self._in_flight
                    self._in_flight = 0
                    continue
                ready = self._real_select(left)
            else:
                break
            if ready:
                return ready
        if timeout is None:  # no timer at all: only the outside can wake us
            return self._real_select(None)
        self._now += timeout  # the next timer is due now
        self.jumps += 1
        return []


def run(coro, start: float = START_S):
    """Run `coro` to completion on a fresh `EmulatedClockLoop`; returns (result, loop)."""
    loop_box: list[EmulatedClockLoop] = []

    def factory() -> EmulatedClockLoop:
        loop_box.append(EmulatedClockLoop(start))
        return loop_box[0]

    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(coro)
    return result, loop_box[0]
