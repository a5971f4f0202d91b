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

from ..sources import REOPEN_MAX_S, REOPEN_MIN_S, Emit
from .decimate import Decimator
from .sanity import MAX_SPEED_KMH
from .serial_source import FIX_STALE_S, READ_SIZE
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

    open_errors = (OSError, TimeoutError)

    def __init__(self, host: str, port: int, *, require_checksum: bool = True,
                 decimator: Decimator | None = None, max_speed_kmh: float = MAX_SPEED_KMH,
                 reopen_min_s: float = REOPEN_MIN_S, reopen_max_s: float = REOPEN_MAX_S,
                 stale_s: float = FIX_STALE_S, silence_s: float = SILENCE_S,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(f"tcp {host}:{port}", log, require_checksum=require_checksum,
                         decimator=decimator, max_speed_kmh=max_speed_kmh, stale_s=stale_s,
                         clock=clock, reopen_min_s=reopen_min_s, reopen_max_s=reopen_max_s)
        self.host, self.port = host, port
        self.silence_s = silence_s
        self.connect_timeout_s = connect_timeout_s

    def status(self) -> dict:
        return {"state": self.state, "tcp": f"{self.host}:{self.port}",
                **self.counts, **self.decoder.counts}

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                return await asyncio.open_connection(self.host, self.port)
        except TimeoutError:
            raise TimeoutError("connect timed out") from None

    async def _close(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        conn[1].close()

    async def _session(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                       emit: Emit) -> str:
        """Read until the peer closes, resets or falls silent; returns why it ended."""
        try:
            return await self._read_peer(conn[0], emit)
        finally:
            self._stream.flush(emit)

    async def _read_peer(self, reader: asyncio.StreamReader, emit: Emit) -> str:
        last_data = time.monotonic()
        while True:
            left = last_data + self.silence_s - time.monotonic()
            if left <= 0:
                self.counts["silent"] += 1
                return f"no data for {self.silence_s:g} s"
            try:
                async with asyncio.timeout(min(left, self.stale_s)):
                    data = await reader.read(READ_SIZE)
            except TimeoutError:
                self._stream.idle()
                continue
            except OSError as exc:  # reset by peer, host unreachable
                return str(exc) or type(exc).__name__
            if not data:
                return "connection closed by peer"
            self.heard()
            last_data = time.monotonic()
            if not self._stream.feed(data, emit):
                self._stream.idle()
