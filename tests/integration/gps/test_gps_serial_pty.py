"""The real SerialGpsSource on pseudo-terminals: reading, device loss, re-enumeration."""

import asyncio
import logging
import os
import time
import tty

import pytest

from agent.gps import SerialGpsSource
from agent.gps.decimate import Decimator

pytestmark = pytest.mark.timeout(60)


def open_pty():
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


def epochs(nmea, start: int, count: int, speed_kn: float = 20.0) -> bytes:
    out = b""
    for s in range(start, start + count):
        lat = f"{4807.0 + s * 0.002:.4f}"
        t = f"1015{s:02d}.00"
        out += nmea(f"GPRMC,{t},A,{lat},N,01131.0000,E,{speed_kn:.1f},10.0,010626,,,A")
        out += nmea(f"GPGGA,{t},{lat},N,01131.0000,E,1,08,0.9,545.4,M,46.9,M,,")
    return out


async def pump(master: int, data: bytes) -> None:
    """Write like a receiver: in small pieces, never blocking the event loop."""
    view = memoryview(data)
    deadline = time.monotonic() + 10
    while view and time.monotonic() < deadline:
        try:
            n = os.write(master, view[:256])
        except BlockingIOError:
            n = 0
        view = view[n:]
        await asyncio.sleep(0.002)
    assert not view, "pty writer stalled"


async def until(cond, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_reads_fixes_from_a_pty(nmea):
    master, slave, path = open_pty()
    got = []
    src = SerialGpsSource(path, 9600)
    task = asyncio.create_task(src.run(got.append))
    try:
        await until(lambda: src.state == "no fix")
        await pump(master, b"\xb5\x62garbage\x00" + epochs(nmea, 0, 6))
        await until(lambda: len(got) >= 5)
        assert src.state == "fix"
        assert [p.ts_ms % 60_000 for p in got[:5]] == [0, 1000, 2000, 3000, 4000]
        assert all(p.clock_offset_ms is not None for p in got)
        status = src.status()
        assert status["state"] == "fix" and status["fixes"] >= 5 and status["opens"] == 1
    finally:
        await stop(task)
        os.close(master)
        os.close(slave)


async def test_survives_unplug_and_re_enumeration(nmea, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="agent.gps")
    link = tmp_path / "ttyGPS"
    m1, s1, p1 = open_pty()
    os.symlink(p1, link)
    got = []
    src = SerialGpsSource(str(link), 9600, reopen_min_s=0.05, reopen_max_s=0.2)
    task = asyncio.create_task(src.run(got.append))
    try:
        await until(lambda: src.state == "no fix")
        await pump(m1, epochs(nmea, 0, 5))
        await until(lambda: len(got) >= 4)
        os.close(m1)  # unplug: the device goes, and udev removes its symlink
        os.close(s1)
        os.unlink(link)
        await until(lambda: src.state == "down")
        await until(lambda: src.counts["open_failures"] >= 3)  # keeps retrying, quietly
        m2, s2, p2 = open_pty()  # the receiver comes back as a new device node
        os.symlink(p2, link)
        await until(lambda: src.state == "no fix")
        await pump(m2, epochs(nmea, 10, 5))
        await until(lambda: any(p.ts_ms % 60_000 >= 13_000 for p in got))
        assert src.state == "fix"
        assert src.counts["opens"] == 2 and src.counts["lost"] == 1
        seconds = [p.ts_ms % 60_000 // 1000 for p in got]
        assert seconds == sorted(seconds) and 10 in seconds and 0 in seconds
        lost = [r for r in caplog.records if ": down" in r.getMessage()]
        assert len(lost) == 1  # logged once per state change, not once per retry
        os.close(m2)
        os.close(s2)
    finally:
        await stop(task)


async def test_a_device_that_never_opens_is_logged_once_with_the_reason(tmp_path, caplog):
    # the first "down" is logged even without a change: without it an agent refused the port (a
    # unit without DeviceAllow= for it, a missing group) would say nothing in its journal
    caplog.set_level(logging.INFO, logger="agent.gps")
    src = SerialGpsSource(str(tmp_path / "ttyNONE"), 9600, reopen_min_s=0.05, reopen_max_s=0.1)
    task = asyncio.create_task(src.run(lambda reading: None))
    try:
        await until(lambda: src.counts["open_failures"] >= 3)
    finally:
        await stop(task)
    said = [r.getMessage() for r in caplog.records if ": down" in r.getMessage()]
    assert len(said) == 1 and "ttyNONE" in said[0] and "No such file" in said[0], said


async def test_auto_baud_settles_and_decodes(nmea):
    master, slave, path = open_pty()
    got = []
    src = SerialGpsSource(path, "auto", probe_s=0.5)
    task = asyncio.create_task(src.run(got.append))
    try:
        await until(lambda: src.state == "no fix")
        await pump(master, epochs(nmea, 0, 6))
        await until(lambda: len(got) >= 4)
        assert src.status()["baud"] == 9600  # on a pty every rate works: the first one wins
    finally:
        await stop(task)
        os.close(master)
        os.close(slave)


async def test_fix_goes_stale_and_decimation_applies(nmea):
    master, slave, path = open_pty()
    got = []
    parked = Decimator(min_interval_s_parked=3.0, parked_speed_kmh=5.0)
    src = SerialGpsSource(path, 9600, stale_s=0.3, decimator=parked)
    task = asyncio.create_task(src.run(got.append))
    try:
        await until(lambda: src.state == "no fix")
        await pump(master, epochs(nmea, 0, 8, speed_kn=0.0))
        await until(lambda: src.decoder.counts["fixes"] >= 7)
        assert src.state == "fix"
        assert [p.ts_ms % 60_000 for p in got] == [0, 3000, 6000]
        assert src.counts["decimated"] == src.decoder.counts["fixes"] - 3
        await until(lambda: src.state == "no fix", timeout=3)  # receiver went quiet
    finally:
        await stop(task)
        os.close(master)
        os.close(slave)


def test_hang_up_detection_tells_a_spurious_wake_up_from_an_unplug():
    from agent.gps.serial_source import hung_up

    master, slave, _ = open_pty()
    try:
        assert not hung_up(slave)  # idle but connected: a zero-byte read is not fatal
        os.close(master)
        assert hung_up(slave)
    finally:
        os.close(slave)


async def test_auto_baud_detects_again_when_only_garbage_arrives(nmea):
    master, slave, path = open_pty()
    got = []
    src = SerialGpsSource(path, "auto", probe_s=0.3, reprobe_s=0.5)
    task = asyncio.create_task(src.run(got.append))
    try:
        await until(lambda: src.state == "no fix")
        await pump(master, epochs(nmea, 0, 4))
        await until(lambda: len(got) >= 3)
        deadline = time.monotonic() + 1.5  # a receiver now talking at another rate
        while time.monotonic() < deadline:
            await pump(master, bytes(range(128, 256)))
            await asyncio.sleep(0.05)
        await until(lambda: src.counts["reprobes"] >= 1)
        await until(lambda: src.counts["opens"] >= 2)
        before = len(got)
        await pump(master, epochs(nmea, 10, 5))
        await until(lambda: len(got) > before)
        assert src.status()["baud"] in (4800, 9600, 38400, 115200)  # any works on a pty
    finally:
        await stop(task)
        os.close(master)
        os.close(slave)


async def _epochs_on_the_grid(nmea) -> tuple[list[float], list[float]]:
    """A 10 Hz receiver writing each epoch 30 ms after a tick of the agent's grid (emulated
    clock): (written at, emitted at) per fix."""
    import select

    from agent.ticks import TICK_S, sleep_to_tick

    loop = asyncio.get_running_loop()
    master, slave, path = open_pty()
    emitted: list[float] = []
    src = SerialGpsSource(path, 9600)
    task = asyncio.create_task(src.run(lambda pos: emitted.append(loop.time())))
    written: list[float] = []
    try:
        await until(lambda: src.state == "no fix")
        for s in range(12):
            await sleep_to_tick()
            await asyncio.sleep(0.03)
            os.write(master, epochs(nmea, s, 1))
            # the kernel passes the bytes to the slave side asynchronously: wait in real time
            # (the emulated clock stands still) until the source could read them
            assert select.select([slave], [], [], 10)[0]
            written.append(loop.time())
        await sleep_to_tick(TICK_S)
        await sleep_to_tick(TICK_S)
        await until(lambda: len(emitted) >= 11)
    finally:
        await stop(task)
        os.close(master)
        os.close(slave)
    return written, emitted


def test_a_talking_receiver_is_read_on_the_grid_within_a_tick(nmea):
    """After the first read (when the port became readable) every read is on a tick, and
    each fix is emitted within one tick of the write that completed it (the first two epochs
    close only when the next begins, until the decoder learnt the receiver's cycle)."""
    from agent.ticks import TICK_S
    from tests import emuclock

    (written, emitted), _ = emuclock.run(_epochs_on_the_grid(nmea))
    assert len(emitted) >= 11
    delays = [e - max(w for w in written if w <= e + 1e-9) for e in emitted]
    assert all(d <= TICK_S + 1e-6 for d in delays), delays
    off_grid = [e for e in emitted[1:] if abs(e / TICK_S - round(e / TICK_S)) > 1e-6]
    assert off_grid == [], off_grid
