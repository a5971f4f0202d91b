"""What every NMEA byte transport shares: bytes in -> decoded, decimated fixes emitted.

The serial and TCP sources only move bytes and manage their connection; both hand what they
read to one `NmeaStream`, which runs NmeaDecoder (framing, checksums, epochs, sanity), the
Decimator, and the "fix" / "no fix" part of the source state.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from ..readings import Position
from ..sources import Emit, ReopeningSource, SourceState
from ..statelog import StateLog
from .decimate import Decimator
from .hostclock import host_clock_synchronised
from .nmea import NmeaDecoder

FIX, NO_FIX = SourceState.FIX, SourceState.NO_FIX

# How often the kernel is asked whether the host clock is synchronised; it changes rarely.
SYNC_CHECK_S = 60.0


class NmeaStream:
    """Counters: the decoder's in `decoder.counts`; `decimated` and `emitted` in `counts`."""

    def __init__(self, decoder: NmeaDecoder, decimator: Decimator | None,
                 counts: Counter[str], state: StateLog, stale_s: float,
                 clock: Callable[[], float],
                 synced: Callable[[], bool] = host_clock_synchronised) -> None:
        self.decoder = decoder
        self._synced = synced
        self._synced_at = -SYNC_CHECK_S
        self._host_synced = False
        self.decimator = decimator
        self.counts = counts
        self.stale_s = stale_s
        self._state = state
        self._clock = clock
        self._last_fix_s = 0.0

    def feed(self, data: bytes, emit: Emit) -> bool:
        """Decode and emit; True if a fix came out."""
        now = self._clock()
        if now - self._synced_at >= SYNC_CHECK_S:
            self._synced_at, self._host_synced = now, self._synced()
        fixes = self.decoder.feed(data, host_time_ms=round(now * 1000),
                                  host_synced=self._host_synced)
        for pos in fixes:
            self._out(pos, emit)
        if fixes:
            self._last_fix_s = self._clock()
            self._state.set(FIX)
        elif self.decoder.last_epoch_fix is False:
            self._state.set(NO_FIX, "receiver reports no fix")
        return bool(fixes)

    def idle(self) -> None:
        """No fix in this read (or nothing read): after `stale_s` without one, "no fix"."""
        if self._clock() - self._last_fix_s > self.stale_s:
            self._state.set(NO_FIX, "no fix recently")

    def flush(self, emit: Emit) -> None:
        """The transport ended: close the open line and epoch, emit what they held."""
        for pos in self.decoder.flush():
            self._out(pos, emit)

    def _out(self, pos: Position, emit: Emit) -> None:
        if self.decimator is not None and not self.decimator.offer(pos):
            self.counts["decimated"] += 1
            return
        self.counts["emitted"] += 1
        emit(pos)


class NmeaByteSource(ReopeningSource):
    """Base of the sources that carry NMEA bytes (serial, TCP): the reopen loop (the base
    class), and one NmeaStream for what they read."""

    name = "gps"
    open_state = SourceState.NO_FIX

    def __init__(self, label: str, log: logging.Logger, *, require_checksum: bool,
                 decimator: Decimator | None, max_speed_kmh: float, stale_s: float,
                 clock: Callable[[], float], reopen_min_s: float,
                 reopen_max_s: float) -> None:
        super().__init__(f"gps {label}", log, reopen_min_s=reopen_min_s,
                         reopen_max_s=reopen_max_s)
        self.stale_s = stale_s
        self._stream = NmeaStream(
            NmeaDecoder(require_checksum=require_checksum, max_speed_kmh=max_speed_kmh),
            decimator, self.counts, self._state, stale_s, clock)

    @property
    def decoder(self) -> NmeaDecoder:
        return self._stream.decoder

    @property
    def decimator(self) -> Decimator | None:
        return self._stream.decimator
