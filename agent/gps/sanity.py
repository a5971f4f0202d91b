"""Sans-IO plausibility filter for consecutive fixes: time must move forward and the
vehicle cannot teleport. Shared by the NMEA and gpsd paths."""

from __future__ import annotations

import math
from collections import Counter

from ..readings import Position

# Default top speed for the jump test; well above any road vehicle, below GNSS glitches.
MAX_SPEED_KMH = 300.0
# Allowance on top of speed x time for GNSS noise and multipath between two fixes.
JUMP_SLACK_M = 200.0
# After this many rejections in a row, trust the new data: the old anchor was the outlier
# (or the receiver's clock was wrong before and has now been corrected).
REANCHOR_AFTER = 5
EARTH_RADIUS_M = 6_371_008.8


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


class FixFilter:
    """`accept(pos)` is False for a fix not after the last accepted one (`time_backwards`) or
    implying a speed above `max_speed_kmh` (`jump`); `reanchored` counts recoveries."""

    def __init__(self, counts: Counter[str] | None = None,
                 max_speed_kmh: float = MAX_SPEED_KMH) -> None:
        self.counts: Counter[str] = counts if counts is not None else Counter()
        self.max_speed_kmh = max_speed_kmh
        self._last: Position | None = None
        self._rejected = 0

    def accept(self, pos: Position) -> bool:
        last = self._last
        reason = None
        if last is not None:
            dt_ms = pos.ts_ms - last.ts_ms
            if dt_ms <= 0:
                reason = "time_backwards"
            else:
                reach = self.max_speed_kmh / 3.6 * dt_ms / 1000 + JUMP_SLACK_M
                if distance_m(last.lat, last.lon, pos.lat, pos.lon) > reach:
                    reason = "jump"
        if reason is not None:
            self.counts[reason] += 1
            self._rejected += 1
            if self._rejected < REANCHOR_AFTER:
                return False
            self.counts["reanchored"] += 1
        self._rejected = 0
        self._last = pos
        return True
