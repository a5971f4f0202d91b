"""The NMEA-over-TCP source against a fake receiver on a real 127.0.0.1 socket."""

import asyncio
import datetime as dt
import itertools
import json
import logging
import random
import socket
import struct
import time

import pytest

from agent.gps.tcp_source import TcpGpsSource
from hil.gps_sim import encode_fix, fixes

pytestmark = pytest.mark.timeout(60)

START = dt.datetime(2026, 11, 23, 12, 0, 0, tzinfo=dt.UTC)
FIELDS = ("ts_ms", "lat", "lon", "alt_m", "speed_kmh", "course_deg", "sats", "hdop")


def epochs(count: int) -> list[tuple[bytes, dict]]:
    """The simulator's GGA+RMC bytes for `count` 1 Hz epochs, with what each one encodes."""
    return [encode_fix(f) for f in itertools.islice(fixes("harbour", 0.0, 1.0, START), count)]


def record(pos) -> dict:
    return {key: getattr(pos, key) for key in FIELDS}


async def until(cond, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def send(writer: asyncio.StreamWriter, data: bytes, piece: int = 37) -> None:
    """Write like a router relaying a UART: in small pieces, lines split across reads."""
    for i in range(0, len(data), piece):
        writer.write(data[i : i + piece])
        await writer.drain()
        await asyncio.sleep(0.001)


class Receiver:
    """A fake NMEA-over-TCP server on 127.0.0.1; `stop()` ends it and its connections."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self._handlers: set[asyncio.Task] = set()

    async def start(self, handler) -> "Receiver":
        async def tracked(reader, writer):
            self._handlers.add(asyncio.current_task())
            try:
                await handler(reader, writer)
            except OSError:
                pass  # the source hung up first
            finally:
                writer.close()

        self.server = await asyncio.start_server(tracked, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.wait_for(asyncio.gather(*self._handlers, return_exceptions=True), 5)
        self._handlers.clear()
        await asyncio.wait_for(self.server.wait_closed(), 5)


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.wait([task], timeout=5)
    assert task.cancelled(), "the source ignored its cancellation"


async def test_fixes_arrive_with_the_values_sent():
    sent = epochs(8)

    async def receiver(reader, writer):
        await send(writer, b"".join(data for data, _ in sent))
        await asyncio.sleep(30)  # stay connected; cancelled when the server closes

    rx = await Receiver().start(receiver)
    port = rx.port
    got = []
    src = TcpGpsSource("127.0.0.1", port, stale_s=5.0)
    task = asyncio.create_task(src.run(got.append))
    try:
        await until(lambda: len(got) >= 7)
        assert [record(p) for p in got[:7]] == [rec for _, rec in sent[:7]]
        assert all(p.clock_offset_ms is not None for p in got)
        status = src.status()
        assert status["state"] == "fix" and status["tcp"] == f"127.0.0.1:{port}"
        assert status["opens"] == 1 and src.counts["open_failures"] == 0
        assert status["sentences"] >= 14 and status["emitted"] == len(got)
        json.dumps(status)
    finally:
        await stop(task)
        await rx.stop()


async def test_reconnects_when_the_server_goes_and_comes_back():
    sent = epochs(8)
    async def first(reader, writer):
        await send(writer, b"".join(data for data, _ in sent[:3]))
        writer.close()  # router rebooting: connection closed, then port refused

    async def second(reader, writer):
        await send(writer, b"".join(data for data, _ in sent[3:]))
        await asyncio.sleep(30)

    rx = await Receiver().start(first)
    got = []
    src = TcpGpsSource("127.0.0.1", rx.port, reopen_min_s=0.05, reopen_max_s=0.2)
    task = asyncio.create_task(src.run(got.append))
    try:
        await until(lambda: src.counts["lost"] == 1)
        await rx.stop()
        await until(lambda: src.counts["open_failures"] >= 2)
        assert src.state == "down"
        assert [record(p) for p in got] == [rec for _, rec in sent[:3]]  # flushed on close

        await rx.start(second)  # same port again
        await until(lambda: len(got) >= 7)
        assert [record(p) for p in got[:7]] == [rec for _, rec in sent[:7]]
        assert src.state == "fix" and src.counts["opens"] == 2
    finally:
        await stop(task)
        await rx.stop()


async def test_a_reset_connection_is_lost_and_reconnected(caplog):
    sent = epochs(6)
    connections = 0

    async def receiver(reader, writer):
        nonlocal connections
        connections += 1
        if connections > 1:
            await send(writer, b"".join(data for data, _ in sent[3:]))
            await asyncio.sleep(30)
            return
        await send(writer, b"".join(data for data, _ in sent[:3]) + b"$GPGGA,1200")
        await asyncio.sleep(0.1)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST, as a router dropping the session does

    rx = await Receiver().start(receiver)
    got = []
    src = TcpGpsSource("127.0.0.1", rx.port, reopen_min_s=0.05)
    caplog.set_level(logging.INFO, logger="agent.gps.tcp_source")
    task = asyncio.create_task(src.run(got.append))
    try:
        await until(lambda: len(got) >= 5)
        assert [record(p) for p in got[:5]] == [rec for _, rec in sent[:5]]
        assert src.counts["opens"] == 2 and src.counts["lost"] == 1
        assert src.decoder.counts["truncated"] == 1  # the line cut by the reset
        lost = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(lost) == 1 and "reset" in lost[0].lower()
    finally:
        await stop(task)
        await rx.stop()


async def test_a_silent_connection_counts_as_lost(caplog):
    sent = epochs(3)
    connections = 0

    async def receiver(reader, writer):
        nonlocal connections
        connections += 1
        if connections == 1:
            await send(writer, b"".join(data for data, _ in sent))
        await asyncio.sleep(30)  # half-open: accepted, then nothing

    rx = await Receiver().start(receiver)
    got = []
    src = TcpGpsSource("127.0.0.1", rx.port, reopen_min_s=0.05, stale_s=0.1, silence_s=0.4)
    caplog.set_level(logging.INFO, logger="agent.gps.tcp_source")
    task = asyncio.create_task(src.run(got.append))
    try:
        await until(lambda: src.counts["silent"] >= 2)
        assert src.counts["opens"] >= 2 and src.counts["lost"] >= 2
        assert [record(p) for p in got] == [rec for _, rec in sent]
        lost = [r.getMessage() for r in caplog.records if ": down" in r.getMessage()]
        assert lost and "no data for 0.4 s" in lost[0]
    finally:
        await stop(task)
        await rx.stop()


async def test_garbage_binary_and_overlong_lines_are_counted_and_skipped():
    sent = epochs(12)
    rng = random.Random(7)
    junk = [
        bytes(rng.randrange(256) for _ in range(3000)),  # line noise, binary
        b"$GPGGA," + b"1" * 500 + b"\r\n",  # over-long line
        b"$GPRMC,120000.00,A,53\x00\xff\r\n",  # binary byte inside a line
        sent[0][0].replace(b",A,", b",V,", 1),  # RMC altered in transit: bad checksum
        b"\xb5\x62\x01\x07\xff\xff" + b"\x00" * 40,  # claims to be a huge UBX frame
        b"$" + b"A" * 20_000,  # a runaway line without terminator
        b"\r\n" + b"\x00" * 5000 + b"\r\n",
    ]

    async def receiver(reader, writer):
        stream = bytearray()
        for (data, _), noise in zip(sent, junk + [b""] * len(sent), strict=False):
            stream += noise + data
        await send(writer, bytes(stream), piece=512)
        await asyncio.sleep(30)

    rx = await Receiver().start(receiver)
    got = []
    src = TcpGpsSource("127.0.0.1", rx.port)
    task = asyncio.create_task(src.run(got.append))
    try:
        # an epoch next to a damaged or cut line gives no fix (it may have lost a sentence);
        # the epochs after the last junk all come out: wait for them
        tail = [rec for _, rec in sent[len(junk) + 1:]]
        await until(lambda: [record(p) for p in got[-len(tail):]] == tail
                    and src.decoder.counts["noise_bytes"] > 5000)
        assert not task.done()
        assert src.counts["opens"] == 1 and src.counts["lost"] == 0
        # every fix that comes out is one that was sent, with the values sent
        records = [rec for _, rec in sent]
        assert all(record(p) in records for p in got)
        counts = src.decoder.counts
        assert counts["noise_bytes"] > 5000 and counts["overlong"] >= 2
        assert counts["truncated"] >= 1 and counts["bad_checksum"] >= 1
    finally:
        await stop(task)
        await rx.stop()


async def test_unreachable_is_no_device_logged_once(caplog):
    rx = await Receiver().start(lambda r, w: asyncio.sleep(0))
    port = rx.port
    await rx.stop()
    caplog.set_level(logging.INFO, logger="agent.gps.tcp_source")
    src = TcpGpsSource("127.0.0.1", port, reopen_min_s=0.01, reopen_max_s=0.02)
    task = asyncio.create_task(src.run(lambda r: None))
    try:
        await until(lambda: src.counts["open_failures"] >= 5)
    finally:
        await stop(task)
    assert src.state == "down" and src.counts["opens"] == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"tcp 127.0.0.1:{port}: down" in warnings[0].getMessage()
