"""The agent's wake-up grid: periodic work wakes on shared multiples of one tick.

On an idle machine every wake-up of the process costs more than the work it does (a halted
virtual CPU woken through the hypervisor; docs/benchmarks.md, "Agent at nominal load"). So the
periodic work of the daemon (reading the CAN adapter and the GPS receiver while they talk, the
journal's group commit, the route check) sleeps until the next multiple of its period on the
loop's clock, not for its period from whenever it last ran: periods that are multiples of
`TICK_S` then fall due in the same turn of the loop, one wake-up for all of them.
`next_tick()` is the pure part; `sleep_to_tick()` and `readable()` are the asyncio edges.
"""

from __future__ import annotations

import asyncio
import math

# The grid's step: a CAN adapter and a GPS receiver that talk are read once per tick. At 2,000
# CAN frames/s that is ~200 frames (~5 KB of SLCAN lines, well inside a tty's buffer) per
# wake-up, 10 wake-ups/s instead of one per frame; a 10 Hz receiver's epoch is one read; no
# signal is recorded more often than every 100 ms (`min_interval_ms`), and the journal commits
# every 200 ms anyway. The other periods (commit 200 ms, route check 500 ms, housekeeping
# 10 s) are multiples of it.
TICK_S = 0.1


def next_tick(now: float, every_s: float = TICK_S) -> float:
    """The first multiple of `every_s` strictly after `now` (seconds of the loop's clock)."""
    return (math.floor(now / every_s) + 1) * every_s


async def sleep_to_tick(every_s: float = TICK_S) -> None:
    """Sleep until the next multiple of `every_s` on the running loop's clock."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    handle = loop.call_at(next_tick(loop.time(), every_s), _resolve, done)
    try:
        await done
    finally:
        handle.cancel()


async def readable(fd: int, timeout: float | None) -> bool:
    """Wait until `fd` is readable (or hung up: the read then tells why); False after
    `timeout` seconds."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, _resolve, ready)
    try:
        async with asyncio.timeout(timeout):
            await ready
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def spread_ms(since_ms: int, now_ms: int, n: int) -> list[int]:
    """Stamps for `n` items read at `now_ms` that arrived, in order, since the read at
    `since_ms`: spread evenly over (since_ms, now_ms], which puts periodic traffic near its
    arrival; never before the previous read nor after this one, never out of order. A clock
    that stepped back gives `now_ms` to all."""
    span = now_ms - since_ms
    if span <= 0:
        return [now_ms] * n
    return [since_ms + span * (i + 1) // n for i in range(n)]
