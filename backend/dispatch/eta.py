"""Per-stop ETAs along a route from where the vehicle is now: road travel times, waits for
windows and service times. Pure: the position, `now_ms`, the remaining stops and a travel-time
source in; one `RouteEta` out, which says its basis.

Each stop's ETA has a spread (± seconds) that grows with the driving before it: the travel
times are free-flow speeds from the road classes, not yet speeds learned from the fleet's own
history, so the further ahead, the less certain. A stop whose service would begin after its
last window closes is `late` (what a late-risk alert is raised on).
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Job

# Spread of an ETA as a share of the driving time before the stop. Road free-flow times are
# typically within ±15 % of what urban traffic allows; straight line × detour much less sure.
ROAD_SPREAD = 0.15
STRAIGHT_LINE_SPREAD = 0.35
# The spread never goes below this: GNSS, parking and walking to the door.
MIN_SPREAD_S = 60


@dataclass(frozen=True)
class StopEta:
    job_id: str
    arrival_ms: int  # at the stop
    begin_ms: int  # service begins (after waiting for the window)
    departure_ms: int
    wait_s: int
    spread_s: int  # ± on arrival
    late: bool  # service would begin after the stop's last window


@dataclass(frozen=True)
class RouteEta:
    computed_ms: int
    basis: str
    stops: tuple[StopEta, ...]

    @property
    def late(self) -> tuple[str, ...]:
        return tuple(s.job_id for s in self.stops if s.late)


def route_eta(lat: float, lon: float, now_ms: int, stops: list[Job], travel,
              busy_until_ms: int | None = None) -> RouteEta:
    """ETAs of `stops` (in visiting order) for a vehicle at (lat, lon) at `now_ms`.

    `busy_until_ms`: when the vehicle is still serving a stop, the time it will leave it
    (driving starts then, not now)."""
    if not stops:
        return RouteEta(now_ms, travel.basis, ())
    points = [(lon, lat)] + [(j.place.point.lon, j.place.point.lat) for j in stops]
    m = travel.matrix(points)
    legs = [float(m.seconds[i, i + 1]) for i in range(len(stops))]
    return etas_along(now_ms, stops, legs, m.basis, busy_until_ms)


def etas_along(now_ms: int, stops: list[Job], legs: list[float], basis: str,
               busy_until_ms: int | None = None) -> RouteEta:
    """The arithmetic of `route_eta` on known legs: `legs[i]` is the driving time (s) to
    `stops[i]` from the position (i = 0) or from the stop before it."""
    share = STRAIGHT_LINE_SPREAD if "straight line" in basis else ROAD_SPREAD
    t = max(now_ms, busy_until_ms or now_ms)
    driven = 0.0
    out = []
    for job, leg in zip(stops, legs, strict=True):
        driven += leg
        arrival = t + round(leg * 1000)
        begin = arrival
        late = False
        if job.windows:
            fit = [w for w in job.windows if w.end_ms >= arrival]
            if fit:
                begin = max(arrival, fit[0].start_ms)
            else:
                late = True
        departure = begin + job.service_s * 1000
        out.append(StopEta(job.id, arrival, begin, departure, (begin - arrival) // 1000,
                           max(MIN_SPREAD_S, round(driven * share)), late))
        t = departure
    return RouteEta(now_ms, basis, tuple(out))
