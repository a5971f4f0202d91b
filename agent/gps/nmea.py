"""Sans-IO NMEA decoder: raw bytes in, one Position per fix epoch out."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pynmea2

from ..readings import Position

# NMEA 0183 caps a sentence at 82 characters; real receivers exceed it a little with
# multi-constellation fields, so allow some slack before calling a line garbage.
MAX_LINE = 120
KNOTS_TO_KMH = 1.852


class NmeaDecoder:
    """Feed bytes, get fixes. Joins GGA (position, quality) and RMC (date, speed, course)
    of the same UTC time into one Position. Never raises on input; counts what it rejects."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._epoch_time: dt.time | None = None
        self._gga = None
        self._rmc = None
        self.counts: Counter[str] = Counter()

    def feed(self, data: bytes, host_time_ms: int | None = None) -> list[Position]:
        self._buf += data
        out: list[Position] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > MAX_LINE:
                    self.counts["overlong"] += 1
                    self._buf.clear()
                break
            raw = bytes(self._buf[:nl]).strip()
            del self._buf[: nl + 1]
            fix = self._line(raw, host_time_ms)
            if fix is not None:
                out.append(fix)
        return out

    def _line(self, raw: bytes, host_time_ms: int | None) -> Position | None:
        if not raw:
            return None
        start = raw.rfind(b"$")
        if start < 0 or len(raw) - start > MAX_LINE:
            self.counts["garbage"] += 1
            return None
        try:
            text = raw[start:].decode("ascii")
            msg = pynmea2.parse(text, check=True)
        except (UnicodeDecodeError, pynmea2.ParseError, ValueError, AttributeError, TypeError):
            self.counts["bad_sentence"] += 1
            return None
        if "*" not in text:
            self.counts["no_checksum"] += 1
            return None
        self.counts["sentences"] += 1
        kind = msg.sentence_type
        if kind not in ("GGA", "RMC"):
            return None
        t = getattr(msg, "timestamp", None)
        if not isinstance(t, dt.time):
            self.counts["bad_sentence"] += 1
            return None
        if t != self._epoch_time:
            self._epoch_time, self._gga, self._rmc = t, None, None
        if kind == "GGA":
            self._gga = msg
        else:
            self._rmc = msg
        if self._gga is None or self._rmc is None:
            return None
        return self._emit(host_time_ms)

    def _emit(self, host_time_ms: int | None) -> Position | None:
        gga, rmc = self._gga, self._rmc
        self._gga = self._rmc = None
        try:
            quality = int(gga.gps_qual or 0)
            if quality == 0 or rmc.status != "A" or not gga.lat or not rmc.datestamp:
                self.counts["no_fix"] += 1
                return None
            when = dt.datetime.combine(rmc.datestamp, gga.timestamp).replace(tzinfo=dt.UTC)
            ts_ms = round(when.timestamp() * 1000)
            pos = Position(
                ts_ms=ts_ms,
                lat=round(gga.latitude, 7),
                lon=round(gga.longitude, 7),
                alt_m=float(gga.altitude) if gga.altitude not in (None, "") else None,
                speed_kmh=round(float(rmc.spd_over_grnd) * KNOTS_TO_KMH, 2)
                if rmc.spd_over_grnd not in (None, "") else None,
                course_deg=float(rmc.true_course) if rmc.true_course not in (None, "") else None,
                fix=quality,
                sats=int(gga.num_sats) if gga.num_sats else None,
                hdop=float(gga.horizontal_dil) if gga.horizontal_dil else None,
                clock_offset_ms=None if host_time_ms is None else host_time_ms - ts_ms,
            )
        except (ValueError, TypeError, AttributeError):
            self.counts["bad_field"] += 1
            return None
        self.counts["fixes"] += 1
        return pos
