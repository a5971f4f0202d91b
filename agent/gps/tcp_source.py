"""NMEA 0183 over TCP: receivers and routers that serve their GNSS output on a TCP port.

Cellular routers (Teltonika, Digi), ser2net in front of a UART and "GPS to TCP" phone apps
send the same byte stream a serial receiver would. This source connects as a client (with
the serial source's backoff), treats a connection silent for `silence_s` as lost, and feeds
everything it reads to the same NmeaStream as the serial source. It never writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from geostream.backoff import Backoff

from ..sources import Emit
from .decimate import Decimator
from .sanity import MAX_SPEED_KMH
from .serial_source import FIX_STALE_S, READ_SIZE, REOPEN_MAX_S, REOPEN_MIN_S
from .state import NO_DEVICE, NO_FIX
from .stream import NmeaByteSource

log = logging.getLogger(__name__)

# Receivers talk at least once a second; 5 s of nothing means a dead peer or a half-open
# connection (router rebooted, cellular NAT dropped it) that TCP alone may not notice for hours.
SILENCE_S = 5.0
# An unreachable host can leave a SYN unanswered for minutes; give up sooner and retry.
CONNECT_TIMEOUT_S = 5.0
# asyncio.timeout, not wait_for: before Python 3.12, wait_for can swallow a cancellation that
# arrives as the read completes, and the source would then ignore the daemon's shutdown.


class TcpGpsSource(NmeaByteSource):
    """NMEA from a TCP server: connect, read, drop a silent connection, reconnect."""

    def __init__(self, host: str, port: int, *, require_checksum: bool = True,
                 decimator: Decimator | None = None, max_speed_kmh: float = MAX_SPEED_KMH,
                 reopen_min_s: float = REOPEN_MIN_S, reopen_max_s: float = REOPEN_MAX_S,
                 stale_s: float = FIX_STALE_S, silence_s: float = SILENCE_S,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(f"tcp {host}:{port}", log, require_checksum=require_checksum,
                         decimator=decimator, max_speed_kmh=max_speed_kmh, stale_s=stale_s,
                         clock=clock)
        self.host, self.port = host, port
        self.reopen_min_s, self.reopen_max_s = reopen_min_s, reopen_max_s
        self.silence_s = silence_s
        self.connect_timeout_s = connect_timeout_s

    def status(self) -> dict:
        return {"state": self.state, "tcp": f"{self.host}:{self.port}",
                **self.counts, **self.decoder.counts}

    async def run(self, emit: Emit) -> None:
        backoff = Backoff(self.reopen_min_s, self.reopen_max_s)
        while True:
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    reader, writer = await asyncio.open_connection(self.host, self.port)
            except (OSError, TimeoutError) as exc:
                self.counts["connect_failures"] += 1
                self._state.set(NO_DEVICE, str(exc) or "connect timed out")
                await asyncio.sleep(backoff.next())
                continue
            self.counts["connects"] += 1
            self._state.set(NO_FIX, "connected")
            try:
                got_data, reason = await self._session(reader, emit)
            finally:
                writer.close()
            self.counts["disconnects"] += 1
            self._stream.flush(emit)
            self._state.set(NO_DEVICE, reason)
            # a peer that accepts and hangs up at once must not make us spin
            if got_data:
                backoff.reset()
            await asyncio.sleep(backoff.next())

    async def _session(self, reader: asyncio.StreamReader, emit: Emit) -> tuple[bool, str]:
        """Read until the peer closes, resets or falls silent; returns (any data came, why
        the connection ended)."""
        got = False
        heard = time.monotonic()
        while True:
            left = heard + self.silence_s - time.monotonic()
            if left <= 0:
                self.counts["silent"] += 1
                return got, f"no data for {self.silence_s:g} s"
            try:
                async with asyncio.timeout(min(left, self.stale_s)):
                    data = await reader.read(READ_SIZE)
            except TimeoutError:
                self._stream.idle()
                continue
            except OSError as exc:  # reset by peer, host unreachable
                return got, str(exc) or type(exc).__name__
            if not data:
                return got, "connection closed by peer"
            got, heard = True, time.monotonic()
            if not self._stream.feed(data, emit):
                self._stream.idle()
