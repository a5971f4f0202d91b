"""Sans-IO NMEA decoder: raw bytes in, one plausible Position per fix epoch out.

Pipeline: LineAssembler (framing, binary noise) -> check_line/parse_sentence (checksum,
fields) -> EpochAssembler (one reading per epoch) -> FixFilter (time order, jumps).
Never raises on input; every rejected thing increments a counter in `counts`.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from ..readings import Position
from .epoch import EpochAssembler
from .framing import LOST, LineAssembler
from .sanity import MAX_SPEED_KMH, FixFilter
from .sentence import Reject, check_line, parse_sentence

# Rejects that mean a sentence of the receiver's epoch is lost (not merely one we do not use):
# that epoch gives no position, since what the lost sentence said (a void status, a quality
# of 0) could have refused it.
LOSSES = frozenset({"bad_checksum", "no_checksum", "bad_sentence", "bad_field"})


class NmeaDecoder:
    """Feed bytes, get fixes. `counts` holds `sentences` (used and valid), `fixes` and one
    counter per reject reason (see docs/gps.md). `plausibility=False` skips the FixFilter
    (what the receiver's epochs alone say); `pivot` is the week-rollover pivot date."""

    def __init__(self, *, require_checksum: bool = True,
                 max_speed_kmh: float = MAX_SPEED_KMH, plausibility: bool = True,
                 pivot: dt.date | None = None) -> None:
        self.counts: Counter[str] = Counter()
        self.require_checksum = require_checksum
        self.good_lines = 0  # lines that passed framing and checksum, whatever their type
        self._lines = LineAssembler(self.counts)
        self._epochs = EpochAssembler(self.counts, pivot)
        self._filter = FixFilter(self.counts, max_speed_kmh) if plausibility else None

    @property
    def last_epoch_fix(self) -> bool | None:
        """Whether the most recent complete epoch had a fix (None before the first one)."""
        return self._epochs.last_epoch_fix

    def feed(self, data: bytes, host_time_ms: int | None = None,
             host_synced: bool = False) -> list[Position]:
        """`host_synced`: `host_time_ms` comes from an NTP-synchronised clock, so epochs
        before the receiver's first date may take their date from it."""
        out: list[Position] = []
        counts = self.counts
        for line in self._lines.feed(data):
            if line == LOST:
                self._epochs.lost()
                continue
            try:
                text = check_line(line, self.require_checksum)
                self.good_lines += 1
                sentence = parse_sentence(text)
            except Reject as why:
                counts[why.args[0]] += 1
                if why.args[0] in LOSSES:
                    self._epochs.lost()
                continue
            counts["sentences"] += 1
            for pos in self._epochs.push(sentence, host_time_ms, host_synced):
                self._keep(pos, out)
        return out

    def flush(self) -> list[Position]:
        """End of input (file end, device gone): close the open line and epoch."""
        self._lines.flush()
        out: list[Position] = []
        for pos in self._epochs.flush():
            self._keep(pos, out)
        return out

    def _keep(self, pos: Position, out: list[Position]) -> None:
        if self._filter is None or self._filter.accept(pos):
            self.counts["fixes"] += 1
            out.append(pos)
