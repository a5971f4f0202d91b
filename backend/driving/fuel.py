"""Fuel: consumption per trip (L/100 km) from the fuel rate or the tank level, refuels and
sudden drops (theft, a leak) from the level with its noise filtered, and idle fuel.

Pure and order-free like events.py: readings in any order, with duplicates, and the same
answer. The level sensor sloshes (a few % of the tank, more when braking or cornering), so
steps are measured between the medians of the level `STEP_WINDOW_MS` before and after each
sample, never between two raw samples.
"""

from __future__ import annotations

import bisect
import statistics

from ..queries import MAX_PLAUSIBLE_KMH, haversine_m
from .events import DEFAULT_SIGNALS, Signals, _number, clean_frames, clean_positions

# Each side of a step is the median of this much level before / after a sample.
STEP_WINDOW_MS = 15 * 60_000
MIN_SIDE_SAMPLES = 5  # fewer samples on a side say nothing about a step
# The level is first reduced to one median per minute: a uniform grid, so a side's median
# weighs every minute alike however densely it was sampled (1 Hz driving, a parked agent's
# minute), and a 1 Hz day is 1 440 values. Steps are looked for once per STEP_EVERY_MS.
BUCKET_MS = 60_000
STEP_EVERY_MS = 60_000
# A rise of at least this share of the tank is a refuel; a fall at least this large that the
# fuel burnt meanwhile does not explain is a drop (theft or leak). A truck burns ~1 % of a
# 400 L tank in 15 minutes; the level's noise after the median is well under 1 %.
REFUEL_MIN_PCT = 5.0
DROP_MIN_PCT = 5.0
# Two steps closer than this are one event (the pump paused, a drain moved to a second tank).
EVENT_MERGE_MS = 20 * 60_000
MOVING_KMH = 3.0
# A stop longer than this (or a gap in positions) ends a trip.
TRIP_BREAK_MS = 5 * 60_000
# A fuel rate sample counts for at most this long (a gap is not burning fuel at the last rate).
RATE_MAX_GAP_MS = 60_000


def level_series(frames: list[tuple[int, dict]], signal: str = DEFAULT_SIGNALS.fuel_level
                 ) -> list[tuple[int, float]]:
    """The level (%) as one median per BUCKET_MS (at the bucket's first sample time)."""
    buckets: dict[int, tuple[int, list[float]]] = {}
    for t, s in clean_frames(frames):
        v = _number(s.get(signal))
        if v is not None and 0 <= v <= 100:
            buckets.setdefault(t // BUCKET_MS, (t, []))[1].append(v)
    return [(t, statistics.median(vs)) for _, (t, vs) in sorted(buckets.items())]


def rate_series(frames: list[tuple[int, dict]], sig: Signals = DEFAULT_SIGNALS
                ) -> list[tuple[int, float]]:
    """(time, L/h) of the fuel rate in clean, time-ordered frames."""
    return [(t, r) for t, s in frames if (r := _number(s.get(sig.fuel_rate))) is not None
            and 0 <= r <= 1000]


def burnt_l(rates: list[tuple[int, float]], start_ms: int, end_ms: int) -> float | None:
    """Litres burnt in [start, end) by the fuel rate series (L/h), None when it is empty."""
    if not rates:
        return None
    total = 0.0
    lo = max(0, bisect.bisect_right(rates, (start_ms,)) - 1)
    for i in range(lo, len(rates)):
        t1, r = rates[i]
        if t1 >= end_ms:
            break
        t2 = rates[i + 1][0] if i + 1 < len(rates) else t1
        a, b = max(t1, start_ms), min(t2, end_ms, t1 + RATE_MAX_GAP_MS)
        if b > a:
            total += r * (b - a) / 3_600_000
    return total


def level_events(frames: list[tuple[int, dict]], tank_l: float,
                 sig: Signals = DEFAULT_SIGNALS) -> list[dict]:
    """Refuels and drops: where the median level after a sample differs from the median
    before by the thresholds. Each event: its time (the steepest step), litres, level before
    and after, and for a drop the litres the engine burnt meanwhile (subtracted)."""
    frames = clean_frames(frames)
    levels = level_series(frames, sig.fuel_level)
    rates = rate_series(frames, sig)
    times = [t for t, _ in levels]
    steps = []
    next_ms = None
    for i, (t, _) in enumerate(levels):
        if next_ms is not None and t < next_ms:
            continue
        next_ms = t + STEP_EVERY_MS
        lo = bisect.bisect_left(times, t - STEP_WINDOW_MS)
        hi = bisect.bisect_right(times, t + STEP_WINDOW_MS)
        before = [v for _, v in levels[lo:i]]
        after = [v for _, v in levels[i:hi]]
        if len(before) < MIN_SIDE_SAMPLES or len(after) < MIN_SIDE_SAMPLES:
            continue
        b, a = statistics.median(before), statistics.median(after)
        steps.append((t, b, a))
    events: list[dict] = []
    for t, b, a in steps:
        delta = a - b
        if delta >= REFUEL_MIN_PCT:
            kind, size = "refuel", delta
        elif delta <= -DROP_MIN_PCT:
            burnt = burnt_l(rates, t - STEP_WINDOW_MS, t + STEP_WINDOW_MS) or 0.0
            size = -delta - burnt / tank_l * 100
            if size < DROP_MIN_PCT:
                continue
            kind = "drop"
        else:
            continue
        last = events[-1] if events else None
        if last and last["kind"] == kind and t - last["end_ms"] <= EVENT_MERGE_MS:
            last["end_ms"] = t
            if size > last["pct"]:
                last.update(time_ms=t, pct=round(size, 1), level_before=round(b, 1),
                            level_after=round(a, 1), litres=round(size * tank_l / 100, 1))
            continue
        events.append({"kind": kind, "time_ms": t, "start_ms": t, "end_ms": t,
                       "pct": round(size, 1), "litres": round(size * tank_l / 100, 1),
                       "level_before": round(b, 1), "level_after": round(a, 1)})
    return events


def trips(positions: list[dict]) -> list[tuple[int, int, float]]:
    """(start, end, km) of each trip: moving positions, broken by a stop or a gap longer than
    TRIP_BREAK_MS."""
    out = []
    cur: list[dict] = []
    last_moving = None

    def flush():
        if len(cur) >= 2:
            km = 0.0
            for a, b in zip(cur, cur[1:], strict=False):
                d = haversine_m(a["lat"], a["lon"], b["lat"], b["lon"])
                dt = b["time_ms"] - a["time_ms"]
                if dt > 0 and d / dt * 3600 <= MAX_PLAUSIBLE_KMH:
                    km += d / 1000
            out.append((cur[0]["time_ms"], cur[-1]["time_ms"], km))
        cur.clear()

    for p in clean_positions(positions):
        moving = p["speed_kmh"] >= MOVING_KMH
        if cur and (p["time_ms"] - cur[-1]["time_ms"] > TRIP_BREAK_MS or
                    (last_moving is not None and p["time_ms"] - last_moving > TRIP_BREAK_MS)):
            flush()
        if moving:
            cur.append(p)
            last_moving = p["time_ms"]
        elif cur:
            cur.append(p)
    flush()
    # a trip ends at its last moving position
    return [(s, e, km) for s, e, km in out]


def trip_consumption(positions: list[dict], frames: list[tuple[int, dict]], tank_l: float,
                     sig: Signals = DEFAULT_SIGNALS) -> list[dict]:
    """Per trip: km, litres and L/100 km, from the fuel rate when the bus has one (`source`
    rate), else from the median level at the trip's start and end (`source` level; refuels
    during the trip added back)."""
    frames = clean_frames(frames)
    levels = level_series(frames, sig.fuel_level)
    rates = rate_series(frames, sig)
    refuels = None
    out = []
    for start, end, km in trips(positions):
        litres, source = burnt_l(rates, start, end), "rate"
        if litres is None:
            if refuels is None:
                refuels = [e for e in level_events(frames, tank_l, sig)
                           if e["kind"] == "refuel"]
            source = "level"
            at_start = _level_near(levels, start)
            at_end = _level_near(levels, end)
            if at_start is None or at_end is None:
                litres, source = None, "none"
            else:
                added = sum(e["litres"] for e in refuels if start <= e["time_ms"] <= end)
                litres = max(0.0, (at_start - at_end) * tank_l / 100 + added)
        out.append({"start_ms": start, "end_ms": end, "km": round(km, 2),
                    "litres": None if litres is None else round(litres, 2),
                    "l_per_100km": None if litres is None or km < 1 else
                    round(litres / km * 100, 1), "source": source})
    return out


def _level_near(levels: list[tuple[int, float]], t: int) -> float | None:
    """The median level within 5 minutes of `t`."""
    near = [v for s, v in levels if abs(s - t) <= TRIP_BREAK_MS]
    return statistics.median(near) if len(near) >= 3 else None


def summary(trips_: list[dict], idle: list[dict], level: list[dict], by: str) -> list[dict]:
    """Per `by` = "day" (vehicle and UTC day) or "vehicle": km, litres (of the trips whose
    consumption is known), L/100 km, idle litres, refuelled and dropped litres. By vehicle,
    the fleet ranking: lowest L/100 km first, `rank` 1.., vehicles without a figure last."""
    def key(vehicle: str, t: int) -> tuple:
        return (vehicle, t // 86_400_000 * 86_400_000) if by == "day" else (vehicle,)

    rows: dict[tuple, dict] = {}

    def row(k: tuple) -> dict:
        return rows.setdefault(k, {"vehicle": k[0], **({"day_ms": k[1]} if by == "day" else {}),
                                   "km": 0.0, "litres": 0.0, "km_measured": 0.0,
                                   "idle_l": 0.0, "refuel_l": 0.0, "drop_l": 0.0,
                                   "refuels": 0, "drops": 0, "sources": set()})

    for t in trips_:
        r = row(key(t["vehicle"], t["start_ms"]))
        r["km"] += t["km"]
        if t["litres"] is not None:
            r["litres"] += t["litres"]
            r["km_measured"] += t["km"]
            r["sources"].add(t["source"])
    for e in idle:
        r = row(key(e["vehicle"], e["start_ms"]))
        r["idle_l"] += e.get("fuel_l") or 0.0
    for e in level:
        r = row(key(e["vehicle"], e["time_ms"]))
        r[f"{e['kind']}_l"] += e["litres"]
        r[f"{e['kind']}s"] += 1
    out = []
    for r in rows.values():
        measured = r.pop("km_measured")
        r["l_per_100km"] = round(r["litres"] / measured * 100, 1) if measured >= 1 else None
        r["source"] = "+".join(sorted(r.pop("sources"))) or "none"
        for k in ("km", "litres", "idle_l", "refuel_l", "drop_l"):
            r[k] = round(r[k], 1)
        out.append(r)
    if by == "day":
        return sorted(out, key=lambda r: (r["day_ms"], r["vehicle"]))
    out.sort(key=lambda r: (r["l_per_100km"] is None, r["l_per_100km"] or 0, r["vehicle"]))
    for i, r in enumerate(out):
        r["rank"] = i + 1 if r["l_per_100km"] is not None else None
    return out
