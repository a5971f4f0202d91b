"""Sans-IO decimation: decide which fixes reach the journal, on GNSS time (no host clock).

A fix passes when, since the last passed fix: the parked/moving interval has elapsed, the
vehicle moved `min_distance_m`, turned `min_heading_change_deg` while moving, or switched
between parked and moving. The first fix always passes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..readings import Position
from .sanity import distance_m


@dataclass
class Decimator:
    # defaults as the issue puts it: 1 Hz while parked, full rate while moving
    min_interval_s_parked: float = 1.0
    min_interval_s_moving: float = 0.0
    min_distance_m: float = 0.0  # 0 disables the distance rule
    min_heading_change_deg: float = 15.0  # 0 disables the heading rule
    parked_speed_kmh: float = 3.0

    def __post_init__(self) -> None:
        self._last: Position | None = None
        self._last_moving = False

    def moving(self, pos: Position) -> bool:
        return pos.speed_kmh is not None and pos.speed_kmh >= self.parked_speed_kmh

    def offer(self, pos: Position, now_ms: int | None = None) -> bool:
        """True if `pos` should be emitted. `now_ms` defaults to the fix's own GNSS time."""
        now = pos.ts_ms if now_ms is None else now_ms
        moving = self.moving(pos)
        last = self._last
        if last is None or now < last.ts_ms or moving != self._last_moving:
            return self._take(pos, now, moving)
        elapsed_s = (now - last.ts_ms) / 1000
        interval = self.min_interval_s_moving if moving else self.min_interval_s_parked
        if elapsed_s >= interval:
            return self._take(pos, now, moving)
        if (self.min_distance_m > 0
                and distance_m(last.lat, last.lon, pos.lat, pos.lon) >= self.min_distance_m):
            return self._take(pos, now, moving)
        if (moving and self.min_heading_change_deg > 0 and pos.course_deg is not None
                and last.course_deg is not None
                and _turn(last.course_deg, pos.course_deg) >= self.min_heading_change_deg):
            return self._take(pos, now, moving)
        return False

    def _take(self, pos: Position, now: int, moving: bool) -> bool:
        # remember the decision time as the fix's timestamp so intervals use one clock
        self._last = pos if now == pos.ts_ms else replace(pos, ts_ms=now)
        self._last_moving = moving
        return True


def _turn(a: float, b: float) -> float:
    """Smallest angle between two headings, in degrees."""
    d = abs(a - b) % 360
    return 360 - d if d > 180 else d
