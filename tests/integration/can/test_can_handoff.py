"""Frames from the reader thread to the loop in batches: order, loss, bound, wake-ups; on
python-can's virtual bus and on SLCAN over a real pty (agent.can.slcan)."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time

import can
import pytest

from agent.can.dbcload import load_dbc
from agent.can.decoder import CanDecoder
from agent.can.handoff import Batcher, Handoff
from agent.can.select import Selector
from agent.can.slcan import SlcanBus
from agent.can.source import CanBusSource, CanPipeline, _reader
from hil.can_gen import open_pty, write_lawicel
from tests.integration.can.can_helpers import TRUCK

EEC1 = 0x0CF00400


def eec1(seq: int) -> can.Message:
    """An EEC1 frame whose EngSpeed carries `seq` (raw, so the value is seq * 0.125 rpm)."""
    return can.Message(arbitration_id=EEC1, is_extended_id=True,
                       data=bytes([0, 0, 0, seq & 0xFF, seq >> 8, 0, 0, 0]))


def seq_of(msg: can.Message) -> int:
    return msg.data[3] | (msg.data[4] << 8)


def test_batcher_window_pause_and_size():
    b = Batcher(window_s=0.02, poll_s=0.005, batch_frames=3)
    assert not b.due(0.0)
    b.add((1, "a"), now=10.0)
    assert not b.due(10.019) and b.due(10.02)
    assert b.pause(10.0) == 0.005 and b.pause(10.018) == pytest.approx(0.002)
    assert b.pause(10.03) == 0.0
    b.add((2, "b"), now=10.001)
    b.add((3, "c"), now=10.002)
    assert b.due(10.002)  # full before the window ends
    assert b.take() == [(1, "a"), (2, "b"), (3, "c")] and not b.due(99.0)
    b.add((4, "d"), now=10.013)  # due on the window's grid, not a window after the frame
    assert not b.due(10.019) and b.due(10.02)


async def test_handoff_keeps_order_loses_nothing_across_threads():
    h = Handoff(asyncio.get_running_loop(), limit=10**6)
    total = 20_000
    rng = random.Random(5)

    def producer():
        n = 0
        while n < total:
            k = min(total - n, rng.randrange(1, 300))
            h.put(list(range(n, n + k)))
            n += k
            if rng.random() < 0.3:
                time.sleep(0.001)

    thread = threading.Thread(target=producer)
    thread.start()
    got: list[int] = []
    async with asyncio.timeout(30):
        while len(got) < total:
            await h.wait(1.0)
            for batch in h.take(2000):
                got += batch
    thread.join(5)
    assert got == list(range(total))
    assert h.dropped == 0 and h.waiting == 0
    assert 1 <= h.wakeups <= len(got)


async def test_handoff_wakes_the_loop_once_for_batches_it_has_not_taken():
    h = Handoff(asyncio.get_running_loop())
    thread = threading.Thread(target=lambda: [h.put([i]) for i in range(50)])
    thread.start()
    thread.join(5)  # the loop has not run: all 50 batches wait behind one wake-up
    assert h.wakeups == 1 and h.waiting == 50
    await h.wait(1.0)
    assert [b[0] for b in h.take(10)] == list(range(10))
    assert h.waiting == 40
    await h.wait(1.0)  # returns at once: batches still wait
    assert [b[0] for b in h.take(1000)] == list(range(10, 50))
    h.put([50])
    assert h.wakeups == 2


async def test_handoff_bound_drops_the_newest_and_counts_them_exactly():
    h = Handoff(asyncio.get_running_loop(), limit=1000)
    for start in range(0, 2500, 250):  # the loop stalls: 2,500 frames arrive
        h.put(list(range(start, start + 250)))
    assert h.waiting == 1000 and h.dropped == 1500
    got = [x for batch in h.take(10**6) for x in batch]
    assert got == list(range(1000))
    h.put([7, 8])  # room again once the loop caught up
    assert [x for batch in h.take(10) for x in batch] == [7, 8] and h.dropped == 1500


async def collect(h: Handoff, n: int, timeout: float) -> list:
    got = []
    async with asyncio.timeout(timeout):
        while len(got) < n:
            await h.wait(0.5)
            for batch in h.take(2000):
                got += batch
    return got


async def test_reader_on_virtual_bus_hands_over_bursts_in_order():
    total = 10_000
    with can.Bus(interface="virtual", channel="fleet-handoff") as rx, \
            can.Bus(interface="virtual", channel="fleet-handoff") as tx:
        h = Handoff(asyncio.get_running_loop())
        stop = threading.Event()
        reader = threading.Thread(target=_reader, args=(rx, h, stop), daemon=True)
        reader.start()
        try:
            sender = threading.Thread(target=lambda: [tx.send(eec1(i)) for i in range(total)])
            sender.start()
            got = await collect(h, total, 60)
            sender.join(5)
        finally:
            stop.set()
            reader.join(5)
    assert [seq_of(m) for _, m in got] == list(range(total))
    stamps = [ts for ts, _ in got]
    assert stamps == sorted(stamps) and abs(stamps[-1] - time.time() * 1000) < 30_000
    assert h.dropped == 0
    assert h.wakeups < total / 4  # batches, not a wake-up per frame


def truck_source(interface: str, channel: str) -> CanBusSource:
    pipe = CanPipeline("truck", CanDecoder([load_dbc(TRUCK)], {"EEC1": {"EngSpeed": "rpm"}}),
                       Selector())
    return CanBusSource("can:truck", pipe, interface, channel, {"sleep_after_open": 0}
                        if interface == "slcan" else {})


async def run_until(src: CanBusSource, out: list, n: int, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while len(out) < n:
            await asyncio.sleep(0.01)


async def test_source_on_virtual_bus_records_every_frame_in_order():
    total = 5000
    src = truck_source("virtual", "fleet-handoff-src")
    out = []
    task = asyncio.create_task(src.run(out.append))
    try:
        async with asyncio.timeout(5):
            while src.state != "up":
                await asyncio.sleep(0.01)
        with can.Bus(interface="virtual", channel="fleet-handoff-src") as tx:
            for i in range(total):
                tx.send(eec1(i))
            await run_until(src, out, total, 60)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [r.values["rpm"] for r in out] == [i * 0.125 for i in range(total)]
    assert src.status()["dropped"] == 0 and src.status()["frames"] == total


def write_frames(master: int, frames, rng: random.Random) -> None:
    """As an SLCAN adapter: whole lines, some split across writes (each part written whole:
    a bare `os.write` of a part to the pty when its buffer was full wrote only some of it, and
    1 run in 8 lost a frame to the torn line)."""
    for msg in frames:
        if rng.random() < 0.1:
            from agent.can.logs import to_lawicel

            write_lawicel(master, msg, cut=rng.randrange(1, len(to_lawicel(msg))))
        else:
            write_lawicel(master, msg)
        if rng.random() < 0.02:
            time.sleep(0.002)


async def test_source_on_slcan_pty_records_every_frame_in_order():
    total = 3000
    master, path = open_pty()
    src = truck_source("slcan", path)
    out = []
    task = asyncio.create_task(src.run(out.append))
    try:
        async with asyncio.timeout(10):
            while src.state != "up":
                await asyncio.sleep(0.01)
        os.write(master, b"\a" + b"#" * 600 + b"\r")  # an error bell and a run of noise
        writer = threading.Thread(
            target=write_frames, args=(master, [eec1(i) for i in range(total)],
                                       random.Random(3)))
        writer.start()
        await run_until(src, out, total, 60)
        writer.join(10)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        os.close(master)
    assert [r.values["rpm"] for r in out] == [i * 0.125 for i in range(total)]
    assert src.status()["dropped"] == 0


async def test_slcan_reader_with_a_stalled_loop_keeps_the_oldest_and_counts_the_rest():
    total, limit = 2000, 500
    master, path = open_pty()
    bus = SlcanBus(path, bitrate=500000, sleep_after_open=0)
    h = Handoff(asyncio.get_running_loop(), limit=limit)
    stop = threading.Event()
    reader = threading.Thread(target=_reader, args=(bus, h, stop), daemon=True)
    reader.start()
    try:
        write_frames(master, [eec1(i) for i in range(total)], random.Random(4))
        deadline = time.monotonic() + 30  # the loop takes nothing until the reader has all
        while h.waiting + h.dropped < total and time.monotonic() < deadline:
            time.sleep(0.01)
        assert h.waiting == limit and h.dropped == total - limit
        got = [m for batch in h.take(10**6) for _, m in batch]
        assert [seq_of(m) for m in got] == list(range(limit))
    finally:
        stop.set()
        reader.join(5)
        bus.shutdown()
        os.close(master)


def test_slcan_device_gone_is_a_can_error():
    master, path = open_pty()
    bus = SlcanBus(path, bitrate=500000, sleep_after_open=0)
    try:
        write_lawicel(master, eec1(9))
        assert seq_of(bus.recv(2.0)) == 9
        assert bus.recv(0) is None
        os.close(master)
        with pytest.raises(can.CanOperationError):
            bus.recv(1.0)
    finally:
        try:
            bus.shutdown()
        except can.CanOperationError:  # its "close channel" command has nowhere to go
            bus.serialPortOrig.close()
