"""An SLCAN adapter read on the event loop, on the wake-up grid (agent/ticks.py): a frame
arriving alone is read at once, a stream once per tick, in order and complete; over a real pty,
on the emulated clock (tests/emuclock.py) so the bounds are exact."""

from __future__ import annotations

import asyncio
import os
import select

import pytest

from agent.ticks import TICK_S, sleep_to_tick
from hil.can_gen import open_pty, write_lawicel
from tests import emuclock
from tests.integration.can.test_can_handoff import eec1, truck_source


def visible(reader: int) -> None:
    """Block (in real time: the emulated clock stands still) until what was written to the
    pty's master can be read on its slave side: the kernel moves it there asynchronously."""
    assert select.select([reader], [], [], 10)[0], "the pty did not pass the bytes on"


async def _lone_frame_then_a_stream() -> tuple[float, list[tuple[float, float]], list, dict]:
    loop = asyncio.get_running_loop()
    master, path = open_pty()
    peek = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # select() on it, never read
    src = truck_source("slcan", path)
    out: list[tuple[float, object]] = []
    got = asyncio.Event()

    def emit(reading) -> None:
        out.append((loop.time(), reading))
        got.set()

    task = asyncio.create_task(src.run(emit))
    try:
        async with asyncio.timeout(60):
            while src.state != "up":
                await asyncio.sleep(0.01)
            await sleep_to_tick()  # just after a tick: a frame left for the next one waits ~TICK_S
            write_lawicel(master, eec1(0))
            visible(peek)
            written = loop.time()
            await got.wait()
            lone = out[0][0] - written
            # a stream: bursts every 30 ms (emulated), each visible before the clock moves on
            sent: list[tuple[float, float]] = []  # (written at, seq)
            for burst in range(1, 9):
                for i in range(25):
                    write_lawicel(master, eec1(burst * 100 + i))
                visible(peek)
                sent += [(loop.time(), burst * 100 + i) for i in range(25)]
                await asyncio.sleep(0.03)
            while len(out) < 1 + len(sent):
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        os.close(peek)
        os.close(master)
    return lone, sent, out, src.status()


def test_slcan_lone_frame_is_read_at_once_and_a_stream_once_per_tick():
    (lone, sent, out, status), _ = emuclock.run(_lone_frame_then_a_stream())
    assert lone < TICK_S / 2  # read when the port became readable, not at the next tick
    rpm = [r.values["rpm"] for _, r in out]
    assert rpm == [0.0] + [seq * 0.125 for _, seq in sent]  # all of them, in order
    stream = out[1:]
    delays = [at - written for (at, _), (written, _) in zip(stream, sent, strict=True)]
    assert max(delays) <= TICK_S + 1e-6 and min(delays) >= 0  # within one tick of arriving
    # after the first burst (read when the port became readable) reads fall on ticks
    read_at = sorted({round(at, 6) for at, _ in stream})
    on_ticks = [t for t in read_at if abs(t / TICK_S - round(t / TICK_S)) < 1e-6]
    assert len(on_ticks) >= len(read_at) - 1 and len(read_at) < 8  # fewer reads than bursts
    assert status["frames"] == 1 + len(sent) and status.get("dropped", 0) == 0
