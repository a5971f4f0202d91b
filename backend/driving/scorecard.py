"""Weekly scorecards per driver and per vehicle, comparable across the fleet: events are
counted per 100 km driven, so a long-haul driver is not punished for driving more.

score = 100 − Σ weight × (events per 100 km) − IDLE_WEIGHT × (idle minutes per 100 km),
clamped to [0, 100]; none under MIN_KM in the week (too little driving to say anything).
Pure: attributed events and distances in, rows out.
"""

from __future__ import annotations

import bisect
from datetime import UTC, datetime, timedelta

from ..queries import MAX_PLAUSIBLE_KMH, haversine_m
from .events import MAX_GAP_MS, who

WEEK_MS = 7 * 86_400_000
# Points per event per 100 km. A harsh brake weighs most (it says the driver saw the danger
# late), an overspeed episode as much; a hard start least.
WEIGHTS = {"harsh_brake": 5.0, "overspeed": 5.0, "harsh_corner": 4.0, "harsh_accel": 3.0}
IDLE_WEIGHT = 0.5  # points per idle minute per 100 km
MIN_KM = 20.0
UNKNOWN = ""  # the driver of a stretch nobody identified


def week_start(ms: int) -> int:
    """Monday 00:00 UTC of the ISO week containing `ms`."""
    d = datetime.fromtimestamp(ms / 1000, UTC)
    monday = (d - timedelta(days=d.weekday())).replace(hour=0, minute=0, second=0,
                                                       microsecond=0)
    return int(monday.timestamp() * 1000)


def km_stretches(positions: list[dict], cuts: list[int]) -> list[tuple[int | None, float]]:
    """Distance along clean, time-ordered positions per stretch between the sorted times
    `cuts` (where the driver may change): [(the stretch's first cut, None before the first;
    km)], each step counted in the stretch of its end; gaps longer than MAX_GAP_MS×20 count
    straight."""
    km: list[float | None] = [None] * (len(cuts) + 1)  # None: no step counted there
    prev = None
    for p in positions:
        if prev is not None:
            d = haversine_m(prev["lat"], prev["lon"], p["lat"], p["lon"])
            dt = p["time_ms"] - prev["time_ms"]
            if dt > 0 and (dt > MAX_GAP_MS * 20 or d / dt * 3600 <= MAX_PLAUSIBLE_KMH):
                i = bisect.bisect_right(cuts, p["time_ms"])
                km[i] = (km[i] or 0.0) + d / 1000
            elif dt > 0:
                continue  # a jump: keep the last good point
        prev = p
    return [(None if i == 0 else cuts[i - 1], k) for i, k in enumerate(km) if k is not None]


def km_of_drivers(stretches: list[tuple[int | None, float]], changes: list[tuple[int, str]]
                  ) -> dict[str, float]:
    """km_stretches() split by who drove: the driver at each stretch's start (the changes'
    times are among the cuts, so nobody changes inside a stretch)."""
    out: dict[str, float] = {}
    for cut, km in stretches:
        key = (None if cut is None else who(changes, cut)) or UNKNOWN
        out[key] = out.get(key, 0.0) + km
    return out


def km_by_driver(positions: list[dict], changes: list[tuple[int, str]]) -> dict[str, float]:
    """Distance along clean, time-ordered positions, split by who drove (driver changes from
    events.driver_at or the driver app)."""
    return km_of_drivers(km_stretches(positions, sorted({t for t, _ in changes})), changes)


def trip_starts(positions: list[dict], gap_ms: int) -> list[int]:
    """The times where clean, time-ordered positions resume after more than `gap_ms`: where a
    driver may have changed (a shift begins with a trip)."""
    return [b["time_ms"] for a, b in zip([None, *positions], positions, strict=False)
            if a is None or b["time_ms"] - a["time_ms"] > gap_ms]


def combine(app: list[tuple[int, str | None]], can: list[tuple[int, str]]
            ) -> list[tuple[int, str]]:
    """One list of driver changes from the driver app's (time, driver or None) at trip starts
    and the CAN driver identification's changes: the app's driver where it names one (a login
    is who the dispatcher assigned), else the CAN id in force."""
    out: list[tuple[int, str]] = []
    logged = [(t, d or "") for t, d in sorted(app)]  # "": nobody logged in for that trip
    for t in sorted({t for t, _ in app} | {t for t, _ in can}):
        d = who(logged, t) or who(can, t)
        if d and (not out or out[-1][1] != d):
            out.append((t, d))
    return out


def attribute(events: list[dict], changes: list[tuple[int, str]]) -> list[dict]:
    """Each event with the driver at its start."""
    return [{**e, "driver": who(changes, e["start_ms"]) or UNKNOWN} for e in events]


def score(counts: dict[str, float], km: float) -> float | None:
    if km < MIN_KM:
        return None
    per100 = 100.0 / km
    penalty = sum(w * counts.get(k, 0) * per100 for k, w in WEIGHTS.items())
    penalty += IDLE_WEIGHT * counts.get("idle_min", 0.0) * per100
    return round(max(0.0, min(100.0, 100.0 - penalty)), 1)


def scorecards(events: list[dict], km: list[tuple[int, str, str, float]], by: str
               ) -> list[dict]:
    """Rows per (week, `by` = "driver" | "vehicle"): km, events of each kind (and per 100 km),
    idle minutes, the score; `events` carry vehicle, driver, start_ms, kind (idle: `peak`
    minutes); `km` is (week start, vehicle, driver, km). Best score first within a week."""
    rows: dict[tuple[int, str], dict] = {}

    def row(week: int, key: str) -> dict:
        return rows.setdefault((week, key), {"week_ms": week, by: key, "km": 0.0,
                                             "harsh_accel": 0, "harsh_brake": 0,
                                             "harsh_corner": 0, "overspeed": 0, "idle": 0,
                                             "idle_min": 0.0})

    for week, vehicle, driver, d in km:
        row(week, vehicle if by == "vehicle" else driver)["km"] += d
    for e in events:
        r = row(week_start(e["start_ms"]), e[by])
        r[e["kind"]] += 1
        if e["kind"] == "idle":
            r["idle_min"] += e["peak"]
    out = []
    for r in rows.values():
        r["km"] = round(r["km"], 1)
        r["idle_min"] = round(r["idle_min"], 1)
        r["score"] = score(r, r["km"])
        r["per_100_km"] = None if r["km"] < MIN_KM else {
            k: round(r[k] * 100 / r["km"], 2) for k in (*WEIGHTS, "idle_min")}
        out.append(r)
    return sorted(out, key=lambda r: (r["week_ms"], r["score"] is None, -(r["score"] or 0),
                                      r[by]))


def split_days(start_ms: int, end_ms: int, day_ms: int = 86_400_000) -> list[tuple[int, int]]:
    """[start, end) cut at UTC midnights: a day's readings at a time bound the memory."""
    out = []
    t = start_ms
    while t < end_ms:
        nxt = min(end_ms, (t // day_ms + 1) * day_ms)
        out.append((t, nxt))
        t = nxt
    return out
