"""Serial NMEA source: pyserial at the edge, NmeaDecoder inside."""

from __future__ import annotations

import asyncio
import logging
import os
import select
import time

import serial

from ..sources import Emit
from .nmea import NmeaDecoder

log = logging.getLogger(__name__)

REOPEN_MIN_S = 0.5
REOPEN_MAX_S = 10.0


def _hung_up(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in poller.poll(0))


class SerialGpsSource:
    name = "gps"

    def __init__(self, device: str, baud: int = 9600):
        self.device = device
        self.baud = baud
        self.decoder = NmeaDecoder()
        self.state = "no device"

    def status(self) -> dict:
        return {"state": self.state, "device": self.device, **self.decoder.counts}

    def _set_state(self, state: str) -> None:
        if state != self.state:
            log.info("gps %s: %s", self.device, state)
            self.state = state

    async def run(self, emit: Emit) -> None:
        delay = REOPEN_MIN_S
        while True:
            try:
                port = serial.Serial(self.device, self.baud, timeout=0)
            except (serial.SerialException, OSError) as exc:
                self._set_state("no device")
                log.debug("cannot open %s: %s", self.device, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, REOPEN_MAX_S)
                continue
            delay = REOPEN_MIN_S
            self._set_state("no fix")
            try:
                await self._read(port, emit)
            except (serial.SerialException, OSError) as exc:
                log.warning("gps %s lost: %s", self.device, exc)
                self._set_state("no device")
            finally:
                port.close()

    async def _read(self, port: serial.Serial, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(port.fileno(), readable.set)
        try:
            while True:
                await readable.wait()
                readable.clear()
                try:
                    data = os.read(port.fileno(), 4096)
                except BlockingIOError:
                    continue
                if not data:
                    # raw mode (VMIN=0) reads 0 bytes on a spurious wake-up too: only a
                    # hang-up (pty master closed, USB gone) ends the port
                    if _hung_up(port.fileno()):
                        raise serial.SerialException("device closed")
                    await asyncio.sleep(0.05)
                for fix in self.decoder.feed(data, host_time_ms=time.time_ns() // 1_000_000):
                    self._set_state("fix")
                    emit(fix)
        finally:
            loop.remove_reader(port.fileno())
