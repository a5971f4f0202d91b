"""Sans-IO epoch assembly: validated sentences in, at most one Position per fix epoch out.

A receiver prints several sentences per epoch (RMC, VTG, GGA, GSA..., GLL); they share a UTC
time of day except the timeless ones (VTG, GSA). Like gpsd, we learn which sentence ends the
cycle and emit as soon as it arrives; a new time of day also closes the open epoch.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from ..readings import Position
from .sentence import Sentence

DAY_MS = 86_400_000
# A time of day this far below the previous one means UTC midnight passed, not a step back.
MIDNIGHT_WRAP_MS = DAY_MS // 2
# GPS week-rollover bugs report dates ~19.7 years back; no fleet fix predates this year.
MIN_VALID_YEAR = 2020
# Position sources in order of preference: GGA/GNS carry quality, sats and altitude.
_POSITION_KINDS = ("GGA", "GNS", "RMC", "GLL")
_EPOCH_1970 = dt.date(1970, 1, 1)


class EpochAssembler:
    """Counters: `epochs` (closed epochs), `no_fix` (void/quality 0/no position), `no_date`
    (no RMC/ZDA date seen yet), `bad_time` (date before MIN_VALID_YEAR)."""

    def __init__(self, counts: Counter[str] | None = None) -> None:
        self.counts: Counter[str] = counts if counts is not None else Counter()
        self.last_epoch_fix: bool | None = None  # did the last closed epoch have a fix?
        self._time: int | None = None
        self._host_ms: int | None = None
        self._parts: dict[str, Sentence] = {}
        self._pending: dict[str, Sentence] = {}  # timeless sentences after a closed epoch
        self._closed = True
        self._last_kind: str | None = None
        self._end_candidate: str | None = None
        self._cycle_end: str | None = None
        self._date: dt.date | None = None
        self._date_tod = 0

    def push(self, s: Sentence, host_time_ms: int | None = None) -> list[Position]:
        out: list[Position] = []
        if s.time_ms is not None and s.time_ms != self._time:
            self._close(out)
            if self._last_kind is not None:
                self._learn_cycle_end(self._last_kind)
            self._time, self._host_ms = s.time_ms, host_time_ms
            self._parts, self._pending, self._closed = self._pending, {}, False
        self._last_kind = s.kind
        if self._closed:
            if s.time_ms is None:
                _merge(self._pending, s)
            return out
        _merge(self._parts, s)
        if s.kind == self._cycle_end:
            self._close(out)
        return out

    def flush(self) -> list[Position]:
        """End of input: close the open epoch."""
        out: list[Position] = []
        self._close(out)
        return out

    def _learn_cycle_end(self, kind: str) -> None:
        # Adopt a new cycle end only when two epochs in a row agree, so one lost sentence
        # does not make us close epochs early.
        if kind == self._end_candidate:
            self._cycle_end = kind
        self._end_candidate = kind

    def _close(self, out: list[Position]) -> None:
        if self._closed:
            return
        self._closed = True
        parts = self._parts
        self.counts["epochs"] += 1
        for s in parts.values():
            if s.date is not None:
                self._date, self._date_tod = s.date, s.time_ms or self._time or 0
        pos = self._build(parts)
        self.last_epoch_fix = pos is not None
        if pos is not None:
            out.append(pos)

    def _build(self, parts: dict[str, Sentence]) -> Position | None:
        where = next((parts[k] for k in _POSITION_KINDS
                      if k in parts and parts[k].lat is not None), None)
        if where is None or any(s.valid is False for s in parts.values()):
            self.counts["no_fix"] += 1
            return None
        date = self._epoch_date()
        if date is None:
            self.counts["no_date"] += 1
            return None
        if date.year < MIN_VALID_YEAR:
            self.counts["bad_time"] += 1
            return None
        ts_ms = (date - _EPOCH_1970).days * DAY_MS + self._time

        def first(attr: str, kinds: tuple[str, ...]):
            for k in kinds:
                if k in parts and (v := getattr(parts[k], attr)) is not None:
                    return v
            return None

        return Position(
            ts_ms=ts_ms,
            lat=where.lat,
            lon=where.lon,
            alt_m=first("alt_m", ("GGA", "GNS")),
            speed_kmh=first("speed_kmh", ("RMC", "VTG")),
            course_deg=first("course_deg", ("RMC", "VTG")),
            fix=first("quality", ("GGA", "GNS", "RMC")) or 1,
            mode=first("mode", ("GSA",)),
            sats=first("sats", ("GGA", "GNS")),
            hdop=first("hdop", ("GGA", "GNS", "GSA")),
            clock_offset_ms=None if self._host_ms is None else self._host_ms - ts_ms,
        )

    def _epoch_date(self) -> dt.date | None:
        if self._date is None:
            return None
        if self._time < self._date_tod - MIDNIGHT_WRAP_MS:
            return self._date + dt.timedelta(days=1)
        return self._date


def _merge(parts: dict[str, Sentence], s: Sentence) -> None:
    """Keep the first sentence of each kind, but let a combined GN one replace a
    single-constellation one (GPGSA before GNGSA...)."""
    old = parts.get(s.kind)
    if old is None or (s.talker == "GN" and old.talker != "GN"):
        parts[s.kind] = s
