"""tests/emuclock.py: the emulated clock jumps over idle time, never over work or datagrams."""

from __future__ import annotations

import asyncio
import socket
import time

from tests import emuclock


def test_idle_time_passes_at_once_and_timers_keep_their_order():
    async def main():
        loop, fired = asyncio.get_running_loop(), []
        t0 = loop.time()
        for delay in (600.0, 0.5, 240.0):
            loop.call_later(delay, lambda d=delay: fired.append((d, loop.time() - t0)))
        await asyncio.sleep(601)
        return fired

    real = time.monotonic()
    fired, loop = emuclock.run(main())
    assert time.monotonic() - real < 60  # 601 emulated seconds, not real ones
    assert fired == [(0.5, 0.5), (240.0, 240.0), (600.0, 600.0)]
    assert loop.time() == emuclock.START_S + 601


def test_executor_jobs_take_no_emulated_time():
    async def main():
        loop = asyncio.get_running_loop()
        ticks: list[float] = []
        loop.call_later(0.01, lambda: ticks.append(loop.time()))
        t0 = loop.time()
        await loop.run_in_executor(None, time.sleep, 0.3)  # a slow fsync, say
        return loop.time() - t0, list(ticks)  # (the runner goes on after main returns)

    (spent, ticks), _ = emuclock.run(main())
    assert spent == 0.0 and ticks == [], "the clock moved while a thread worked"


class _Echo(asyncio.DatagramProtocol):
    def __init__(self, log: list):
        self.log = log

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.log.append((data, asyncio.get_running_loop().time()))


def test_datagrams_arrive_before_the_clock_moves_and_lost_ones_are_written_off():
    async def main():
        loop = asyncio.get_running_loop()
        got: list = []
        rx, _ = await loop.create_datagram_endpoint(lambda: _Echo(got),
                                                    local_addr=("127.0.0.1", 0))
        tx, _ = await loop.create_datagram_endpoint(lambda: _Echo([]),
                                                    local_addr=("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            nobody = s.getsockname()  # closed at once: a datagram to it is never read
        t0 = loop.time()
        for i in range(200):
            tx.sendto(b"%d" % i, rx.get_extra_info("sockname"))
        tx.sendto(b"lost", nobody)
        await asyncio.sleep(30)  # the clock may jump only once everything has arrived
        rx.close()
        tx.close()
        return [d for d, _ in got], {at - t0 for _, at in got}

    (data, times), loop = emuclock.run(main())
    assert data == [b"%d" % i for i in range(200)]
    assert times == {0.0}, "a datagram was overtaken by a jump of the clock"
    assert loop.written_off == 1
