"""Serial NMEA source: pyserial and asyncio at the edge, the sans-IO pieces inside.

Opens the device (the base class reopens it with backoff when it vanishes, as USB receivers
do on re-enumeration), optionally detects the baud rate, and feeds bytes to an NmeaStream
(decoder, decimator, fix state; shared with the TCP source). Bad input is counted, never
raised.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import time
from collections.abc import Callable

import serial

from ..sources import REOPEN_MAX_S, REOPEN_MIN_S, Emit
from ..ticks import TICK_S, readable, sleep_to_tick
from .autobaud import BAUD_RATES, choose_baud
from .decimate import Decimator
from .sanity import MAX_SPEED_KMH
from .stream import NmeaByteSource

log = logging.getLogger(__name__)

# No fix for this long (receiver silent or lost lock) turns the state to "no fix".
FIX_STALE_S = 3.0
# Time listened at each rate when detecting: receivers talk at least once a second.
PROBE_S = 1.5
# With baud = "auto": bytes but no checksummed line for this long means the rate changed
# (another receiver plugged in, or it was reconfigured), so detect again.
REPROBE_S = 10.0
# One read's upper bound; at 115200 baud this is ~0.35 s of output.
READ_SIZE = 4096
# Pause after a spurious wake-up (readable, zero bytes, no hang-up) so we never spin.
SPURIOUS_WAKEUP_S = 0.05
# While the receiver talks, read on the grid of the agent's wake-ups (agent/ticks.py) instead
# of waking whenever bytes arrive: a 10 Hz receiver's epoch is one read, in the same wake-up as
# the CAN read; a fix reaches the journal at most this much later (its time is the receiver's).
GRID_S = TICK_S


def hung_up(fd: int) -> bool:
    """True if the tty's other end is gone (pty master closed, USB device removed)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL)
               for _, ev in poller.poll(0))


class SerialGpsSource(NmeaByteSource):
    """NMEA from a serial device: open (auto-baud), read, reopen with backoff."""

    open_errors = (serial.SerialException, OSError, ValueError)
    session_errors = (serial.SerialException, OSError)

    def __init__(self, device: str, baud: int | str = 9600, *, require_checksum: bool = True,
                 decimator: Decimator | None = None, max_speed_kmh: float = MAX_SPEED_KMH,
                 reopen_min_s: float = REOPEN_MIN_S, reopen_max_s: float = REOPEN_MAX_S,
                 stale_s: float = FIX_STALE_S, probe_s: float = PROBE_S,
                 reprobe_s: float = REPROBE_S, clock: Callable[[], float] = time.time) -> None:
        super().__init__(device, log, require_checksum=require_checksum, decimator=decimator,
                         max_speed_kmh=max_speed_kmh, stale_s=stale_s, clock=clock,
                         reopen_min_s=reopen_min_s, reopen_max_s=reopen_max_s)
        self.device = device
        self.baud = baud
        self.probe_s, self.reprobe_s = probe_s, reprobe_s
        self._rate: int | None = baud if isinstance(baud, int) else None

    def status(self) -> dict:
        return {"state": self.state, "device": self.device, "baud": self._rate,
                **self.counts, **self.decoder.counts}

    async def _open(self) -> serial.Serial:
        return serial.Serial(self.device, self._rate or BAUD_RATES[0], timeout=0)

    async def _close(self, port: serial.Serial) -> None:
        port.close()

    async def _session(self, port: serial.Serial, emit: Emit) -> str:
        """Read until the device fails (raises) or auto-baud must run again."""
        try:
            return await self._read_port(port, emit)
        finally:
            self._stream.flush(emit)

    async def _read_port(self, port: serial.Serial, emit: Emit) -> str:
        auto = self.baud == "auto"
        if auto and self._rate is None:
            chosen = await self._probe(port)
            if chosen is None:
                self.counts["autobaud_failures"] += 1
                return "no baud rate found"
            self.heard()
            rate, sample = chosen
            self._rate = rate
            log.info("gps %s: detected %d baud", self.device, rate)
            self._stream.feed(sample, emit)
        good, good_since = self.decoder.good_lines, time.monotonic()
        data: bytes | None = None
        while True:
            data = await self._read(port, self.stale_s, on_grid=data is not None)
            if data is None or not self._stream.feed(data, emit):
                self._stream.idle()
            if data:
                self.heard()
            if self.decoder.good_lines != good:
                good, good_since = self.decoder.good_lines, time.monotonic()
            elif auto and time.monotonic() - good_since > self.reprobe_s:
                log.info("gps %s: no valid sentence at %s baud, detecting again",
                         self.device, self._rate)
                self.counts["reprobes"] += 1
                self._rate = None
                return "detecting the baud rate again"

    async def _probe(self, port: serial.Serial) -> tuple[int, bytes] | None:
        samples: dict[int, bytes] = {}
        for rate in BAUD_RATES:
            if port.baudrate != rate:
                port.baudrate = rate
                port.reset_input_buffer()  # bytes read at the old rate are garbage now
            sample = bytearray()
            deadline = time.monotonic() + self.probe_s
            while (left := deadline - time.monotonic()) > 0:
                data = await self._read(port, left)
                if data:
                    sample += data
                if choose_baud({rate: bytes(sample)}) is not None:
                    return rate, bytes(sample)
            samples[rate] = bytes(sample)
        rate = choose_baud(samples)
        return None if rate is None else (rate, samples[rate])

    async def _read(self, port: serial.Serial, timeout: float,
                    on_grid: bool = False) -> bytes | None:
        """Bytes available within `timeout` s (maybe b"" after a spurious wake-up), None if
        nothing came; raises when the device is gone (pty closed, USB unplugged).

        `on_grid` (the receiver talks): read at the next `GRID_S` tick, in the wake-up the CAN
        read and the commit share, not when the bytes arrive; if none came by then, wait for
        them and read at the tick after, so a receiver sending on its own period (10 Hz, 1 Hz)
        is read on the grid from its second epoch on. Else (the first read, or after a
        silence) read as soon as bytes arrive."""
        fd = port.fileno()
        if on_grid:
            await sleep_to_tick(GRID_S)
            if data := _read_now(fd):
                return data
            if not await readable(fd, timeout):
                return None
            await sleep_to_tick(GRID_S)
            return _read_now(fd)
        if not await readable(fd, timeout):
            return None
        data = _read_now(fd)
        if not data:
            await asyncio.sleep(SPURIOUS_WAKEUP_S)
        return data


def _read_now(fd: int) -> bytes:
    """What the tty holds now (b"" if nothing); raises when its other end is gone.

    os.read, not port.read: pyserial treats any zero-byte read as a disconnect, but a raw-mode
    tty (VMIN=0) also wakes up with nothing to read; only a hang-up is fatal."""
    try:
        data = os.read(fd, READ_SIZE)
    except BlockingIOError:
        return b""
    if not data and hung_up(fd):
        raise serial.SerialException("device closed")
    return data
