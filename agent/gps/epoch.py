"""Sans-IO epoch assembly: validated sentences in, at most one Position per fix epoch out.

A receiver prints several sentences per epoch (RMC, VTG, GGA, GSA..., GLL); they share a UTC
time of day except the timeless ones (VTG, GSA). Like gpsd, we learn which sentence ends the
cycle and emit as soon as it arrives; a new time of day also closes the open epoch.

Dates: the receiver's (RMC/ZDA, corrected for week rollover) always wins once known. An epoch
before any receiver date is dated from the host clock when the caller says that clock is
synchronised; otherwise it is held (up to MAX_HELD epochs) until the receiver's first date.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import NamedTuple

from ..readings import Position
from .rollover import RolloverResolver
from .sentence import Sentence

DAY_MS = 86_400_000
# A time of day this far below the previous one means UTC midnight passed, not a step back.
MIDNIGHT_WRAP_MS = DAY_MS // 2
# Dateless epochs held for a receiver's first date: 20 s at 1 Hz, 2 s at 10 Hz. Receivers
# that send RMC or ZDA do so within one epoch; one that never does only fills this.
MAX_HELD = 20
# Position sources in order of preference: GGA/GNS carry quality, sats and altitude.
_POSITION_KINDS = ("GGA", "GNS", "RMC", "GLL")
# Kinds that always carry a time of day when they report anything.
_TIMED_KINDS = frozenset({"GGA", "GNS", "RMC", "GLL", "ZDA"})
_EPOCH_1970 = dt.date(1970, 1, 1)


class _Epoch(NamedTuple):
    time_ms: int
    host_ms: int | None
    parts: dict[str, Sentence]


class EpochAssembler:
    """Counters: `epochs` (closed epochs), `no_fix` (void/quality 0/no position), `no_date`
    (dropped without any date: held too long, or still held at the end), `held` (epochs that
    waited for a date), `host_dated` (dated from the synchronised host clock),
    `rollover_corrected` (receiver dates moved forward by 1024 weeks), `incomplete_epoch`
    (closed without a position because one of its sentences was lost)."""

    def __init__(self, counts: Counter[str] | None = None,
                 pivot: dt.date | None = None) -> None:
        self.counts: Counter[str] = counts if counts is not None else Counter()
        self.last_epoch_fix: bool | None = None  # did the last closed epoch have a fix?
        self.rollover = RolloverResolver(self.counts, pivot)
        self._time: int | None = None
        self._host_ms: int | None = None
        self._host_synced = False
        self._parts: dict[str, Sentence] = {}
        self._pending: dict[str, Sentence] = {}  # timeless sentences after a closed epoch
        self._closed = True
        self._last_kind: str | None = None
        self._end_candidate: str | None = None
        self._cycle_end: str | None = None
        self._date: dt.date | None = None
        self._date_tod = 0
        self._held: list[_Epoch] = []
        self._incomplete = False  # the open epoch lost a sentence (checksum, cut line)
        self._next_incomplete = False  # and so does the next one to open

    def push(self, s: Sentence, host_time_ms: int | None = None,
             host_synced: bool = False) -> list[Position]:
        """`host_synced`: the host clock behind `host_time_ms` is NTP-synchronised."""
        out: list[Position] = []
        if s.time_ms is None and s.kind in _TIMED_KINDS:
            # an empty "no fix" report (`$GPRMC,,V,...`) belongs to no epoch
            if s.valid is False and self._closed:
                self.last_epoch_fix = False
            return out
        if s.time_ms is not None and s.time_ms != self._time:
            self._close(out)
            if self._last_kind is not None:
                self._learn_cycle_end(self._last_kind)
            self._time, self._host_ms = s.time_ms, host_time_ms
            self._host_synced = host_synced and host_time_ms is not None
            if self._host_synced:
                self.rollover.host_date(_EPOCH_1970 + dt.timedelta(days=host_time_ms // DAY_MS))
            self._parts, self._pending, self._closed = self._pending, {}, False
            self._incomplete, self._next_incomplete = self._next_incomplete, False
        self._last_kind = s.kind
        if self._closed:
            if s.time_ms is None:
                _merge(self._pending, s)
            return out
        _merge(self._parts, s)
        if s.kind == self._cycle_end:
            self._close(out)
        return out

    def lost(self) -> None:
        """A sentence failed its checksum or was cut: the epoch it belonged to yields no
        position, directly or through what its absence changes (a void status or a quality
        of 0 no longer seen). It belongs to the open epoch, or to the next one once the
        open one reached its cycle end; with the cycle end not yet known, to either."""
        if not self._closed:
            self._incomplete = True
        if self._closed or self._cycle_end is None:
            self._next_incomplete = True

    def flush(self) -> list[Position]:
        """End of input: close the open epoch; epochs still waiting for a date are lost."""
        out: list[Position] = []
        self._close(out)
        self.counts["no_date"] += len(self._held)
        self._held.clear()
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
        epoch = _Epoch(self._time, self._host_ms, self._parts)
        self.counts["epochs"] += 1
        for s in epoch.parts.values():
            if s.date is not None:
                self._date = self.rollover.resolve(s.date)
                self._date_tod = s.time_ms if s.time_ms is not None else epoch.time_ms
        if self._date is not None and self._held:
            self._release_held(out)
        if self._incomplete:
            self.counts["incomplete_epoch"] += 1
            self.last_epoch_fix = None  # unknown: a sentence of it is lost
            return
        where = _where(epoch.parts)
        self.last_epoch_fix = where is not None
        if where is None:
            self.counts["no_fix"] += 1
            return
        if self._date is not None:
            out.append(_build(epoch, where, self._epoch_date(epoch.time_ms)))
        elif self._host_synced:
            self.counts["host_dated"] += 1
            out.append(_build(epoch, where, _host_date(epoch.time_ms, epoch.host_ms)))
        else:
            self._hold(epoch)

    def _hold(self, epoch: _Epoch) -> None:
        self.counts["held"] += 1
        self._held.append(epoch)
        if len(self._held) > MAX_HELD:
            del self._held[0]
            self.counts["no_date"] += 1

    def _release_held(self, out: list[Position]) -> None:
        """Date the held epochs backwards from the first receiver date (across midnight)."""
        dates, date, tod = [], self._date, self._date_tod
        for epoch in reversed(self._held):
            if epoch.time_ms > tod + MIDNIGHT_WRAP_MS:
                date -= dt.timedelta(days=1)
            tod = epoch.time_ms
            dates.append(date)
        for epoch, date in zip(self._held, reversed(dates), strict=True):
            out.append(_build(epoch, _where(epoch.parts), date))
        self._held.clear()

    def _epoch_date(self, time_ms: int) -> dt.date:
        if time_ms < self._date_tod - MIDNIGHT_WRAP_MS:
            return self._date + dt.timedelta(days=1)
        return self._date


def _where(parts: dict[str, Sentence]) -> Sentence | None:
    """The epoch's position sentence, or None if it has none or any sentence says void."""
    where = next((parts[k] for k in _POSITION_KINDS
                  if k in parts and parts[k].lat is not None), None)
    if where is None or any(s.valid is False for s in parts.values()):
        return None
    return where


def _host_date(time_ms: int, host_ms: int) -> dt.date:
    """The UTC date that puts GNSS time of day `time_ms` nearest the host clock."""
    day = host_ms // DAY_MS
    best = min((day - 1, day, day + 1), key=lambda d: abs(d * DAY_MS + time_ms - host_ms))
    return _EPOCH_1970 + dt.timedelta(days=best)


def _build(epoch: _Epoch, where: Sentence, date: dt.date) -> Position:
    parts = epoch.parts
    ts_ms = (date - _EPOCH_1970).days * DAY_MS + epoch.time_ms

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
        clock_offset_ms=None if epoch.host_ms is None else epoch.host_ms - ts_ms,
    )


def _merge(parts: dict[str, Sentence], s: Sentence) -> None:
    """Keep the first sentence of each kind, but let a combined GN one replace a
    single-constellation one (GPGSA before GNGSA...)."""
    old = parts.get(s.kind)
    if old is None or (s.talker == "GN" and old.talker != "GN"):
        parts[s.kind] = s
