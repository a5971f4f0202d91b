"""gpsd JSON source: for installs where gpsd already owns the receiver.

`GpsdDecoder` is sans-IO (report lines in, Position out); `GpsdSource` is the asyncio edge:
connect to gpsd, send ?WATCH, read reports (the base class reconnects with backoff).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable

from ..readings import Position
from ..sources import REOPEN_MAX_S, REOPEN_MIN_S, Emit, ReopeningSource, SourceState
from .decimate import Decimator
from .sanity import MAX_SPEED_KMH, FixFilter

log = logging.getLogger(__name__)

GPSD_PORT = 2947
# Ask gpsd to stream JSON reports (TPV, SKY...) from all its devices.
WATCH = b'?WATCH={"enable":true,"json":true}\n'
# gpsd's SKY reports list every satellite; with four constellations they reach ~10 KB.
MAX_REPORT = 65536
# gpsd TPV status -> GGA-style quality (2 DGPS, 3 RTK fixed, 4 RTK float, 5/6 dead reckoning).
STATUS_TO_QUALITY = {2: 2, 3: 4, 4: 5, 5: 6, 6: 6}
# No TPV with a fix for this long turns the state to "no fix".
FIX_STALE_S = 3.0


class GpsdDecoder:
    """Counters: `reports`, `bad_json`, `overlong`, `no_fix` (TPV mode < 2), `bad_field`,
    `fixes`, plus the FixFilter's."""

    def __init__(self, max_speed_kmh: float = MAX_SPEED_KMH) -> None:
        self.counts: Counter[str] = Counter()
        self.last_fix: bool | None = None
        self._buf = bytearray()
        self._sky: tuple[int | None, float | None] = (None, None)
        self._filter = FixFilter(self.counts, max_speed_kmh)

    def feed(self, data: bytes, host_time_ms: int | None = None) -> list[Position]:
        self._buf += data
        out: list[Position] = []
        while (nl := self._buf.find(b"\n")) >= 0:
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            pos = self._report(line, host_time_ms)
            if pos is not None and self._filter.accept(pos):
                self.counts["fixes"] += 1
                out.append(pos)
        if len(self._buf) > MAX_REPORT:
            self.counts["overlong"] += 1
            self._buf.clear()
        return out

    def _report(self, line: bytes, host_time_ms: int | None) -> Position | None:
        if not line.strip():
            return None
        try:
            rep = json.loads(line)
        except ValueError:
            self.counts["bad_json"] += 1
            return None
        if not isinstance(rep, dict):
            self.counts["bad_json"] += 1
            return None
        self.counts["reports"] += 1
        try:
            if rep.get("class") == "SKY":
                self._sky = _sky(rep)
            elif rep.get("class") == "TPV":
                return self._tpv(rep, host_time_ms)
        except (ValueError, TypeError, KeyError, OverflowError):
            self.counts["bad_field"] += 1
        return None

    def _tpv(self, rep: dict, host_time_ms: int | None) -> Position | None:
        mode = rep.get("mode", 0)
        if not isinstance(mode, int) or mode < 2 or "lat" not in rep or "time" not in rep:
            self.counts["no_fix"] += 1
            self.last_fix = False
            return None
        when = dt.datetime.fromisoformat(rep["time"].replace("Z", "+00:00"))
        if when.tzinfo is None:
            raise ValueError("time without zone")
        ts_ms = round(when.timestamp() * 1000)
        lat, lon = _num(rep["lat"], -90, 90), _num(rep["lon"], -180, 180)
        alt = rep.get("altMSL", rep.get("alt"))
        speed, track = rep.get("speed"), rep.get("track")
        sats, hdop = self._sky
        self.last_fix = True
        return Position(
            ts_ms=ts_ms, lat=round(lat, 7), lon=round(lon, 7),
            alt_m=None if alt is None else _num(alt, -1000, 100_000),
            speed_kmh=None if speed is None else round(_num(speed, 0, 1000) * 3.6, 2),
            course_deg=None if track is None else _num(track, 0, 360),
            fix=STATUS_TO_QUALITY.get(rep.get("status"), 1), mode=mode, sats=sats, hdop=hdop,
            clock_offset_ms=None if host_time_ms is None else host_time_ms - ts_ms,
        )


def _num(value, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(value)
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ValueError(value)
    return float(value)


def _sky(rep: dict) -> tuple[int | None, float | None]:
    hdop = rep.get("hdop")
    used = rep.get("uSat")
    if used is None and isinstance(rep.get("satellites"), list):
        used = sum(1 for s in rep["satellites"] if isinstance(s, dict) and s.get("used"))
    return (used if isinstance(used, int) else None,
            None if hdop is None else _num(hdop, 0, 100))


class GpsdSource(ReopeningSource):
    """Positions from gpsd's JSON reports: connect, ?WATCH, read (the base class reconnects)."""

    name = "gps"
    open_state = SourceState.NO_FIX

    def __init__(self, host: str = "127.0.0.1", port: int = GPSD_PORT, *,
                 decimator: Decimator | None = None, max_speed_kmh: float = MAX_SPEED_KMH,
                 reopen_min_s: float = REOPEN_MIN_S, reopen_max_s: float = REOPEN_MAX_S,
                 stale_s: float = FIX_STALE_S, clock: Callable[[], float] = time.time) -> None:
        super().__init__(f"gps gpsd {host}:{port}", log, reopen_min_s=reopen_min_s,
                         reopen_max_s=reopen_max_s)
        self.host, self.port = host, port
        self.decoder = GpsdDecoder(max_speed_kmh)
        self.decimator = decimator
        self.stale_s = stale_s
        self._clock = clock

    def status(self) -> dict:
        return {"state": self.state, "gpsd": f"{self.host}:{self.port}",
                **self.counts, **self.decoder.counts}

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(WATCH)
            await writer.drain()
        except OSError:
            writer.close()
            raise
        return reader, writer

    async def _close(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        conn[1].close()

    async def _session(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                       emit: Emit) -> str:
        reader = conn[0]
        last_fix = 0.0
        while True:
            try:
                async with asyncio.timeout(self.stale_s):
                    data = await reader.read(MAX_REPORT)
            except TimeoutError:
                data = None
            if data == b"":
                return "gpsd connection closed"
            if data:
                self.heard()
            now = self._clock()
            fixes = self.decoder.feed(data, round(now * 1000)) if data else []
            for pos in fixes:
                if self.decimator is None or self.decimator.offer(pos):
                    self.counts["emitted"] += 1
                    emit(pos)
                else:
                    self.counts["decimated"] += 1
            if fixes:
                last_fix = now
                self.set_state(SourceState.FIX)
            elif self.decoder.last_fix is False or now - last_fix > self.stale_s:
                self.set_state(SourceState.NO_FIX)
